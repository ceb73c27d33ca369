"""The sandbox open platform: a gateway that checks what the real one checks, in every environment.

    python3 -m deploy_bridge.services.sandbox_server --port 8080 --app-id ID --key-id KID \\
        --platform-private-key PEM --app-public-key PEM --abilities DIR --state FILE

Serves the v2 form protocol (`/gateway.do`) and the v3 protocol (`/v3/...`) over plain HTTP inside
the env's network; the env's HTTPS gateway puts it at https://openapi.APP.ENV.localhost:8443. Checks the
app id, the timestamp, the RSA2 signature, that a signed ability package grants the method, and the
required parameters; answers in the real shapes, signed with the platform key, so that the official
SDKs verify the answers with signature checking on. Trades live in a JSON state file.
Members log in through `POST /_sandbox/auth-code` (`{"user_id": "2088…"}` → a single-use auth code that
lives 5 minutes), which `alipay.system.oauth.token` trades for the member's user_id and tokens.

Runs in the sandbox image: standard library, cryptography (Debian's 38) and codegen's catalog and
ability checks only.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import random
import re
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from codegen.abilities import granted_methods, load_abilities
from codegen.catalog import Api, load_catalog

TIMESTAMP_WINDOW = dt.timedelta(minutes=30)


class GatewayError(Exception):
    """A refused call, in the platform's terms (v2 code/msg/sub_code/sub_msg; v3 status + code)."""

    def __init__(self, code: str, msg: str, sub_code: str, sub_msg: str, status: int = 400) -> None:
        super().__init__(f"{code} {sub_code}: {sub_msg}")
        self.code, self.msg, self.sub_code, self.sub_msg, self.status = code, msg, sub_code, sub_msg, status


def missing_arguments(sub_code: str, sub_msg: str) -> GatewayError:
    return GatewayError("40001", "Missing Required Arguments", sub_code, sub_msg)


def invalid_arguments(sub_code: str, sub_msg: str, status: int = 400) -> GatewayError:
    return GatewayError("40002", "Invalid Arguments", sub_code, sub_msg, status)


def business_failed(sub_code: str, sub_msg: str) -> GatewayError:
    return GatewayError("40004", "Business Failed", sub_code, sub_msg, 400)


def insufficient_permissions(method: str) -> GatewayError:
    return GatewayError("40006", "Insufficient Permissions", "isv.insufficient-isv-permissions",
                        f"ISV权限不足，建议在开发者中心检查签约是否已经生效 ({method} is not granted by a signed package)",
                        403)


# ------------------------------------------------------------------ keys and signatures
def rsa2_sign(private_key, content: bytes) -> str:
    return base64.b64encode(private_key.sign(content, padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa2_verify(public_key, content: bytes, signature: str) -> bool:
    try:
        public_key.verify(base64.b64decode(signature), content, padding.PKCS1v15(), hashes.SHA256())
        return True
    except (InvalidSignature, ValueError):
        return False


def v2_sign_contents(params: dict[str, str]) -> list[bytes]:
    """The strings an SDK may have signed: all but `sign`, sorted; SDKs differ on empty values."""
    items = sorted((k, v) for k, v in params.items() if k != "sign")
    with_empty = "&".join(f"{k}={v}" for k, v in items)
    without_empty = "&".join(f"{k}={v}" for k, v in items if v != "")
    return [with_empty.encode()] if with_empty == without_empty else [without_empty.encode(), with_empty.encode()]


# ------------------------------------------------------------------ trades
class Trades:
    """Trades by out_trade_no, persisted (atomically) so that they survive restarts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        try:
            self.data: dict[str, dict[str, Any]] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.data = {}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, ensure_ascii=False, indent=1))
        os.replace(tmp, self.path)

    def find(self, biz: dict[str, Any]) -> dict[str, Any]:
        if biz.get("out_trade_no") in self.data:
            return self.data[biz["out_trade_no"]]
        for trade in self.data.values():
            if biz.get("trade_no") and trade["trade_no"] == biz["trade_no"]:
                return trade
        raise business_failed("ACQ.TRADE_NOT_EXIST", "交易不存在")

    def open(self, biz: dict[str, Any], status: str) -> dict[str, Any]:
        existing = self.data.get(biz["out_trade_no"])
        if existing is not None:
            if existing["status"] != "WAIT_BUYER_PAY" or status != "WAIT_BUYER_PAY":
                raise business_failed("ACQ.TRADE_HAS_SUCCESS" if existing["status"] == "TRADE_SUCCESS"
                                      else "ACQ.TRADE_HAS_CLOSE", f"交易已存在，状态 {existing['status']}")
            return existing
        now = dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        trade = {"out_trade_no": biz["out_trade_no"],
                 "trade_no": dt.datetime.now().strftime("%Y%m%d") + "2200" + f"{random.randrange(10**13):013d}",
                 "total_amount": _amount(biz["total_amount"]), "subject": biz.get("subject", ""),
                 "status": status, "refunded": "0.00", "created": now,
                 "gmt_payment": now if status == "TRADE_SUCCESS" else None}
        self.data[trade["out_trade_no"]] = trade
        return trade


def _amount(value: Any) -> str:
    try:
        cents = round(float(value) * 100)
    except (TypeError, ValueError):
        raise invalid_arguments("isv.invalid-parameter", f"金额格式错误: {value!r}") from None
    if cents <= 0:
        raise invalid_arguments("isv.invalid-parameter", f"金额必须大于 0: {value!r}")
    return f"{cents / 100:.2f}"


BUYER = {"buyer_logon_id": "159****5620", "buyer_user_id": "2088101117955611"}


def business(api: Api, biz: dict[str, Any], trades: Trades, tokens: Tokens | None = None) -> dict[str, Any]:
    """The answer fields of one granted, well-formed call."""
    method = api.method
    if method == "alipay.system.oauth.token" and tokens is not None:
        return tokens.exchange(biz)
    with trades.lock:
        if method in ("alipay.trade.precreate", "alipay.trade.create", "alipay.trade.wap.pay",
                      "alipay.trade.page.pay", "alipay.trade.app.pay"):
            trade = trades.open(biz, "WAIT_BUYER_PAY")
            trades.save()
            out = {"out_trade_no": trade["out_trade_no"], "trade_no": trade["trade_no"]}
            if method == "alipay.trade.precreate":
                out = {"out_trade_no": trade["out_trade_no"],
                       "qr_code": f"https://qr.sandbox.minicloud.localhost/{trade['trade_no']}"}
            return out
        if method == "alipay.trade.pay":
            trade = trades.open(biz, "TRADE_SUCCESS")
            trades.save()
            return {"trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"], **BUYER,
                    "total_amount": trade["total_amount"], "receipt_amount": trade["total_amount"],
                    "gmt_payment": trade["gmt_payment"]}
        if method == "alipay.trade.query":
            trade = trades.find(biz)
            return {"trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"],
                    "trade_status": trade["status"], "total_amount": trade["total_amount"], **BUYER}
        if method == "alipay.trade.refund":
            trade = trades.find(biz)
            if trade["status"] != "TRADE_SUCCESS":
                raise business_failed("ACQ.TRADE_STATUS_ERROR", f"交易状态不合法: {trade['status']}")
            amount = _amount(biz["refund_amount"])
            refunded = float(trade["refunded"]) + float(amount)
            if refunded > float(trade["total_amount"]) + 1e-9:
                raise business_failed("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
            trade["refunded"] = f"{refunded:.2f}"
            trades.save()
            return {"trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"], **BUYER,
                    "fund_change": "Y", "refund_fee": trade["refunded"]}
        if method == "alipay.trade.close":
            trade = trades.find(biz)
            if trade["status"] != "WAIT_BUYER_PAY":
                raise business_failed("ACQ.TRADE_STATUS_ERROR", f"交易状态不合法: {trade['status']}")
            trade["status"] = "TRADE_CLOSED"
            trades.save()
            return {"trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"]}
        if method == "alipay.trade.cancel":
            trade = trades.find(biz)
            action = "close" if trade["status"] == "WAIT_BUYER_PAY" else "refund"
            if trade["status"] == "TRADE_SUCCESS":
                trade["refunded"] = trade["total_amount"]
            trade["status"] = "TRADE_CLOSED"
            trades.save()
            return {"trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"], "retry_flag": "N",
                    "action": action}
    if method == "alipay.security.risk.content.detect":
        found = [w for w in ("违禁", "prohibited") if w in str(biz.get("content", ""))]
        return {"action": "REJECTED" if found else "PASSED", "keywords": found, "unique_id": uuid.uuid4().hex}
    # the other catalog APIs answer with the documented example fields
    return {f.name: (json.loads(f.example) if f.type == "array" and f.example else f.example) for f in api.response}


# ------------------------------------------------------------------ members' auth codes and tokens
USER_ID_SHAPE = re.compile(r"2088\d{12}")
AUTH_CODE_TTL = 300  # seconds an auth code lives (as my.getAuthCode's do)
ACCESS_TOKEN_TTL = 1296000  # 15 days
REFRESH_TOKEN_TTL = 2592000  # 30 days


class Tokens:
    """Auth codes (issued by POST /_sandbox/auth-code, single use, AUTH_CODE_TTL seconds) and the access
    and refresh tokens that alipay.system.oauth.token trades them for. In memory: a code outlives no
    restart, as a member would simply log in again. `clock` (unix seconds) is injectable for tests."""

    def __init__(self, app_id: str, clock: Callable[[], float] = time.time) -> None:
        self.app_id = app_id
        self.clock = clock
        self.lock = threading.Lock()
        self.codes: dict[str, tuple[str, float]] = {}  # code -> (user_id, expires at)
        self.refresh: dict[str, tuple[str, float]] = {}  # refresh token -> (user_id, expires at)

    def issue_code(self, user_id: str) -> str:
        now = self.clock()
        code = uuid.uuid4().hex
        with self.lock:
            self._forget_expired(now)
            self.codes[code] = (user_id, now + AUTH_CODE_TTL)
        return code

    def _forget_expired(self, now: float) -> None:
        for table in (self.codes, self.refresh):
            for key in [k for k, (_, expires) in table.items() if expires <= now]:
                del table[key]

    def exchange(self, params: dict[str, Any]) -> dict[str, Any]:
        """The answer of alipay.system.oauth.token for `authorization_code` + code, or `refresh_token`."""
        grant = params.get("grant_type")
        now = self.clock()
        with self.lock:
            if grant == "authorization_code":
                user_id, expires = self.codes.pop(str(params.get("code") or ""), ("", 0.0))
                if not user_id or expires <= now:  # unknown, used or expired: Alipay says the same
                    raise invalid_arguments("isv.code-invalid", "授权码code无效")
            elif grant == "refresh_token":
                user_id, expires = self.refresh.pop(str(params.get("refresh_token") or ""), ("", 0.0))
                if not user_id:
                    raise invalid_arguments("isv.refresh-token-invalid", "刷新令牌refresh_token无效")
                if expires <= now:
                    raise invalid_arguments("isv.refresh-token-time-out", "刷新令牌refresh_token过期")
            else:
                raise invalid_arguments("isv.grant-type-invalid", f"grant_type参数不正确: {grant!r}")
            refresh_token = "authusrB" + uuid.uuid4().hex
            self.refresh[refresh_token] = (user_id, now + REFRESH_TOKEN_TTL)
        open_id = "0" + hashlib.sha256(f"{self.app_id}/{user_id}".encode()).hexdigest()[:46]
        return {"user_id": user_id, "open_id": open_id, "access_token": "authusrB" + uuid.uuid4().hex,
                "expires_in": ACCESS_TOKEN_TTL, "refresh_token": refresh_token, "re_expires_in": REFRESH_TOKEN_TTL,
                "auth_start": dt.datetime.fromtimestamp(now).strftime("%Y-%m-%d %H:%M:%S")}


# ------------------------------------------------------------------ the gateway
_grants_lock = threading.Lock()


@dataclass
class Platform:
    app_id: str
    key_id: str
    private_key: Any
    public_pem: bytes
    app_public_key: Any
    abilities_dir: Path
    trades: Trades
    env: str = "ENV"
    tokens: Tokens | None = None  # made from app_id when not given
    _granted: set[str] | None = None
    _stamp: tuple | None = None

    def __post_init__(self) -> None:
        if self.tokens is None:
            self.tokens = Tokens(self.app_id)

    def granted(self) -> set[str]:
        """Methods granted by valid packages; re-read when the folder changes (grant/verify edit it)."""
        with _grants_lock:
            return self._read_grants()

    def _read_grants(self) -> set[str]:
        files = sorted(self.abilities_dir.glob("*.json")) if self.abilities_dir.is_dir() else []
        stamp = tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files)
        if stamp != self._stamp:
            abilities, errors = load_abilities(self.abilities_dir, {self.key_id: self.public_pem}, self.app_id)
            for err in errors:
                log(f"ability package refused: {Path(err.file).name}: {err.kind}: {err.message}")
            before, self._granted, self._stamp = self._granted, granted_methods(abilities), stamp
            if before is not None and before != self._granted:  # the log's last word follows the grants
                log(f"granted now: {self.describe_grants()}")
        return self._granted or set()

    def describe_grants(self) -> str:
        return ", ".join(sorted(self._granted or ())) or \
            f"nothing yet (minicloud abilities grant {self.env} PACKAGE)"

    def check_call(self, api: Api, given: dict[str, Any]) -> None:
        if api.method not in self.granted():
            raise insufficient_permissions(api.method)
        missing = load_catalog().missing_params(api.method, given)
        if missing:
            raise missing_arguments("isv.missing-parameter", f"缺少必选参数: {', '.join(missing)}")
        for name, value in given.items():
            param = api.param(name)
            if param and param.max_length and isinstance(value, str) and len(value) > param.max_length:
                raise invalid_arguments("isv.invalid-parameter", f"参数 {name} 超长 (最大 {param.max_length})")


def log(line: str) -> None:
    print(f"{dt.datetime.now(dt.UTC).strftime('%H:%M:%S')} {line}", flush=True)


class Handler(BaseHTTPRequestHandler):
    platform: Platform  # set on the subclass made by serve()
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # one line per call is ours
        pass

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
              content_type: str = "application/json;charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    # ---- routing
    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, verb: str) -> None:
        path = urllib.parse.urlsplit(self.path).path
        try:
            if path == "/gateway.do":
                self._v2(verb)
            elif path.startswith("/v3/"):
                self._v3(verb)
            elif path == "/_sandbox/health":
                self._send(200, b'{"ok":true}')
            elif path == "/_sandbox/info":
                self._send(200, json.dumps({"app_id": self.platform.app_id, "key_id": self.platform.key_id,
                                            "granted": sorted(self.platform.granted())}).encode())
            elif path == "/_sandbox/pay" and verb == "POST":
                self._pay()
            elif path == "/_sandbox/auth-code" and verb == "POST":
                self._auth_code()
            else:
                self._send(404, b'{"error":"not found"}')
        except Exception as err:  # noqa: BLE001 - a bug here must answer 500, not kill the gateway
            log(f"internal error on {verb} {path}: {type(err).__name__}: {err}")
            self._send(500, json.dumps({"error": str(err)}).encode())

    # ---- v2: the form protocol
    def _v2(self, verb: str) -> None:
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query, keep_blank_values=True))
        form = {}
        if verb == "POST":
            form = dict(urllib.parse.parse_qsl(self._body().decode("utf-8"), keep_blank_values=True))
        params = {**query, **form}
        method = params.get("method", "")
        key = (method.replace(".", "_") + "_response") if method else "error_response"
        biz: dict[str, Any] = {}
        try:
            api = self._v2_check(params, method)
            if api.biz_content:
                try:
                    biz = json.loads(params.get("biz_content") or "{}")
                except ValueError:
                    raise invalid_arguments("isv.invalid-biz-content", "biz_content 不是合法的 JSON") from None
            else:
                biz = {p.name: params[p.name] for p in api.params if p.name in params}
            self.platform.check_call(api, biz)
            content = {"code": "10000", "msg": "Success",
                       **business(api, biz, self.platform.trades, self.platform.tokens)}
        except GatewayError as err:
            content = {"code": err.code, "msg": err.msg, "sub_code": err.sub_code, "sub_msg": err.sub_msg}
        text = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
        sign = rsa2_sign(self.platform.private_key, text.encode("utf-8"))
        body = f'{{"{key}":{text},"sign":"{sign}"}}'.encode()
        log(f"v2 {method or '-'} app_id={params.get('app_id', '-')} code={content['code']} "
            f"sub_code={content.get('sub_code', '-')} out_trade_no={biz.get('out_trade_no', '-')}")
        self._send(200, body)

    def _v2_check(self, params: dict[str, str], method: str) -> Api:
        for required in ("app_id", "method", "sign_type", "sign", "timestamp", "charset", "version"):
            if not params.get(required):
                raise missing_arguments(f"isv.missing-{required.replace('_', '-')}", f"缺少参数 {required}")
        if params["app_id"] != self.platform.app_id:
            raise invalid_arguments("isv.invalid-app-id", f"无效的AppID参数: {params['app_id']}")
        api = load_catalog().api(method)
        if api is None:
            raise invalid_arguments("isv.invalid-method", f"不存在的方法名: {method}")
        if params["sign_type"] != "RSA2":
            raise invalid_arguments("isv.invalid-signature-type", f"签名类型不支持: {params['sign_type']}")
        try:
            sent = dt.datetime.strptime(params["timestamp"], "%Y-%m-%d %H:%M:%S")
        except ValueError:
            raise invalid_arguments("isv.invalid-timestamp", "时间戳格式应为 yyyy-MM-dd HH:mm:ss") from None
        if abs(sent - dt.datetime.now()) > TIMESTAMP_WINDOW:
            raise invalid_arguments("isv.invalid-timestamp", f"非法的时间戳参数: {params['timestamp']}")
        if not any(rsa2_verify(self.platform.app_public_key, c, params["sign"]) for c in v2_sign_contents(params)):
            raise invalid_arguments("isv.invalid-signature", "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配")
        return api

    # ---- v3: the JSON protocol
    def _v3(self, verb: str) -> None:
        body = self._body().decode("utf-8") if verb == "POST" else ""
        split = urllib.parse.urlsplit(self.path)
        api = load_catalog().api_by_v3_path(split.path)
        method = api.method if api else split.path
        try:
            if api is None:
                raise GatewayError("40004", "not found", "invalid-path", f"no API at {split.path}", 404)
            self._v3_authenticate(verb, body)
            if verb == "GET":
                given: dict[str, Any] = dict(urllib.parse.parse_qsl(split.query))
            else:
                try:
                    given = json.loads(body or "{}")
                except ValueError:
                    raise invalid_arguments("invalid-body", "请求体不是合法的 JSON") from None
            self.platform.check_call(api, given)
            status, content = 200, business(api, given, self.platform.trades, self.platform.tokens)
            code = "10000"
        except GatewayError as err:
            status, code = err.status, err.sub_code
            content = {"code": err.sub_code, "message": err.sub_msg, "links": []}
            given = {}
        text = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
        timestamp, nonce = str(int(time.time() * 1000)), uuid.uuid4().hex
        signature = rsa2_sign(self.platform.private_key, f"{timestamp}\n{nonce}\n{text}\n".encode())
        log(f"v3 {method} code={code} out_trade_no={given.get('out_trade_no', '-')}")
        self._send(status, text.encode(), {"alipay-timestamp": timestamp, "alipay-nonce": nonce,
                                           "alipay-signature": signature, "alipay-trace-id": uuid.uuid4().hex})

    def _v3_authenticate(self, verb: str, body: str) -> None:
        header = self.headers.get("authorization", "")
        scheme, _, rest = header.partition(" ")
        if scheme != "ALIPAY-SHA256withRSA" or ",sign=" not in rest:
            raise invalid_arguments("invalid-signature", "缺少或无法解析 authorization 头", 401)
        auth, _, signature = rest.rpartition(",sign=")
        fields = dict(part.split("=", 1) for part in auth.split(",") if "=" in part)
        if fields.get("app_id") != self.platform.app_id:
            raise invalid_arguments("invalid-app-id", f"无效的AppID参数: {fields.get('app_id')}", 401)
        try:
            sent = int(fields.get("timestamp", ""))
        except ValueError:
            raise invalid_arguments("invalid-timestamp", "timestamp 应为毫秒时间戳", 401) from None
        if abs(sent / 1000 - time.time()) > TIMESTAMP_WINDOW.total_seconds():
            raise invalid_arguments("invalid-timestamp", "非法的时间戳参数", 401)
        content = f"{auth}\n{verb}\n{self.path}\n{body}\n"
        token = self.headers.get("alipay-app-auth-token")
        if token:
            content += f"{token}\n"
        if not rsa2_verify(self.platform.app_public_key, content.encode("utf-8"), signature):
            raise invalid_arguments("invalid-signature", "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配", 401)

    # ---- the simulated member's login (what my.getAuthCode hands the mini program)
    def _auth_code(self) -> None:
        try:
            body = json.loads(self._body() or b"{}")
        except ValueError:
            body = None
        user_id = body.get("user_id") if isinstance(body, dict) else None
        if not isinstance(user_id, str) or not USER_ID_SHAPE.fullmatch(user_id):
            self._send(400, json.dumps({"error": f"user_id must be 16 digits starting with 2088, not {user_id!r}"},
                                       ensure_ascii=False).encode())
            return
        code = self.platform.tokens.issue_code(user_id)
        log(f"auth code issued for user_id={user_id}")
        self._send(200, json.dumps({"auth_code": code, "expires_in": AUTH_CODE_TTL}).encode())

    # ---- the simulated buyer
    def _pay(self) -> None:
        try:
            out_trade_no = json.loads(self._body() or b"{}").get("out_trade_no")
        except ValueError:
            out_trade_no = None
        trades = self.platform.trades
        with trades.lock:
            trade = trades.data.get(out_trade_no or "")
            if trade is None:
                self._send(404, json.dumps({"error": f"no trade {out_trade_no}"}).encode())
                return
            if trade["status"] != "WAIT_BUYER_PAY":
                self._send(409, json.dumps({"error": f"trade {out_trade_no} is {trade['status']}"}).encode())
                return
            trade["status"] = "TRADE_SUCCESS"
            trade["gmt_payment"] = dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
            trades.save()
        log(f"buyer paid out_trade_no={out_trade_no} trade_no={trade['trade_no']}")
        self._send(200, json.dumps(trade, ensure_ascii=False).encode())


def make_platform(args: argparse.Namespace) -> Platform:
    private_pem = Path(args.platform_private_key).read_bytes()
    private_key = serialization.load_pem_private_key(private_pem, password=None)
    public_pem = private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    app_public = serialization.load_pem_public_key(Path(args.app_public_key).read_bytes())
    return Platform(args.app_id, args.key_id, private_key, public_pem, app_public, Path(args.abilities),
                    Trades(Path(args.state)), env=args.env)


def serve(platform: Platform, host: str, port: int) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"platform": platform})
    return ThreadingHTTPServer((host, port), handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="minicloud-sandbox", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--key-id", required=True)
    parser.add_argument("--platform-private-key", required=True)
    parser.add_argument("--app-public-key", required=True)
    parser.add_argument("--abilities", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--env", default="ENV", help="the env's name, for the hints in the log")
    args = parser.parse_args(argv)
    platform = make_platform(args)
    server = serve(platform, args.host, args.port)
    platform.granted()
    log(f"sandbox open platform for app {args.app_id} on :{args.port}; granted: {platform.describe_grants()}")

    def watch_grants() -> None:  # a grant shows in the log when it is made, not at the next call
        while True:
            time.sleep(1)
            with contextlib.suppress(Exception):
                platform.granted()

    threading.Thread(target=watch_grants, daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
