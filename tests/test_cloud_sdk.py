"""The client SDKs of the data API (codegen/cloud_sdk/): signing, request building, sessions and errors.

A unit test of the clients: a local recorder (`http.server` on 127.0.0.1) answers like docs/data-api.md,
checks every signature with the reference below (written from the protocol text, independent of the SDKs)
and records what it was sent. The JavaScript SDK runs under `node` through tests/node/cloud_sdk.test.mjs,
in Node and in a bare realm that stands for a mini-program front end (`my` / `wx`, no Node at all).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import importlib.util
import ipaddress
import json
import os
import random
import re
import shutil
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
DRIVER = ROOT / "tests" / "node" / "cloud_sdk.test.mjs"
BASE = "/cloud/v1"


def _load_python_sdk():
    """The Python SDK as a function would carry it: one file, imported on its own."""
    spec = importlib.util.spec_from_file_location(
        "minicloud_cloud", ROOT / "codegen" / "cloud_sdk" / "minicloud_cloud.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mc = _load_python_sdk()


def reference_signature(
    method: str, path: str, body: bytes, timestamp: str, nonce: str, secret: bytes
) -> str:
    """docs/data-api.md: base64(HMAC-SHA256(secret, METHOD "\\n" PATH_WITH_QUERY "\\n" TIMESTAMP "\\n" NONCE
    "\\n" hex(SHA-256(body))))."""
    string_to_sign = "\n".join([method, path, timestamp, nonce, hashlib.sha256(body).hexdigest()])
    return base64.b64encode(
        hmac.new(secret, string_to_sign.encode("utf-8"), hashlib.sha256).digest()
    ).decode()


# ---- the recorder ---------------------------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str  # the request target as sent: the path the signature covers, with its query
    headers: dict[str, str]
    body: bytes
    verdict: str  # "ok", "unsigned" (auth/session) or the 401 code the recorder answered
    status: int = 0

    @property
    def json(self):
        return json.loads(self.body) if self.body else None

    @property
    def route(self) -> str:
        return urlsplit(self.path).path


@dataclass
class Recorder:
    """Answers like the data API; `replies` (status, body) answer the next signed requests instead."""

    key: str = "srv-key-1"
    secret: str = "srv-sëcret-✓"  # UTF-8 bytes are the key, so not only ASCII
    docs: list[dict] = field(default_factory=lambda: [{"_id": "id-1", "total": 7, "_owner": None}])
    codes: dict[str, dict] = field(
        default_factory=dict
    )  # code -> {"uid", "uses": signed requests before expiry}
    replies: list[tuple[int, object]] = field(default_factory=list)
    requests: list[Seen] = field(default_factory=list)
    sessions: dict[str, dict] = field(default_factory=dict)
    nonces: set[str] = field(default_factory=set)
    url: str = ""

    @property
    def signed(self) -> list[Seen]:
        return [r for r in self.requests if r.verdict != "unsigned"]

    def authenticate(self, method: str, path: str, headers, body: bytes) -> tuple[str, str | None]:
        if headers.get("X-Cloud-Server-Key"):
            if headers["X-Cloud-Server-Key"] != self.key:
                return "bad_signature", None
            secret, session = self.secret.encode("utf-8"), None
        elif headers.get("X-Cloud-Session"):
            session = self.sessions.get(headers["X-Cloud-Session"])
            if session is None:
                return "bad_signature", None
            secret = session["secret"]
        else:
            return "no_session", None
        ts, nonce, sig = (
            headers.get(h, "") for h in ("X-Cloud-Timestamp", "X-Cloud-Nonce", "X-Cloud-Signature")
        )
        if not ts.isdigit() or abs(time.time() - int(ts)) > 300:
            return "stale_timestamp", None
        if not re.fullmatch(r"[0-9a-f]{16,}", nonce):
            return "bad_signature", None
        if nonce in self.nonces:
            return "replayed_nonce", None
        self.nonces.add(nonce)
        if not hmac.compare_digest(sig, reference_signature(method, path, body, ts, nonce, secret)):
            return "bad_signature", None
        if session is not None:
            if session["uses"] is not None and session["uses"] <= 0:
                return "session_expired", None
            if session["uses"] is not None:
                session["uses"] -= 1
            return "ok", session["uid"]
        return "ok", headers.get("X-Cloud-On-Behalf-Of")

    def answer(self, method: str, path: str, body: bytes, uid: str | None) -> tuple[int, object]:
        parts = urlsplit(path)
        rel, query = parts.path[len(BASE) + 1 :], parse_qs(parts.query)
        data = json.loads(body) if body and method == "POST" and rel != "files" else None
        m = re.fullmatch(r"db/([^/]+)/(find|count|add|update|remove)", rel)
        if m and m[2] == "find":
            wanted = data["filter"].get("_id")
            return 200, {"data": [d for d in self.docs if wanted is None or d["_id"] == wanted]}
        if m and m[2] == "count":
            return 200, {"total": len(self.docs)}
        if m and m[2] == "add":
            return 200, {
                "ids": [f"new-{i}" for i in range(len(data["data"]) if isinstance(data["data"], list) else 1)]
            }
        if m:
            return 200, {m[2] + "d": len(self.docs) if data["multi"] else 1}
        if rel == "db" and method == "GET":
            return 200, {"collections": [{"name": "orders", "count": len(self.docs)}]}
        if rel == "files" and method == "POST":
            return 200, {
                "fileID": "cloud://test/" + query["path"][0],
                "size": len(body),
                "contentType": "application/octet-stream",
            }
        if rel == "files" and method == "GET":
            return 200, {
                "files": [
                    {
                        "fileID": "cloud://test/" + query.get("prefix", [""])[0] + "x.png",
                        "size": 1,
                        "contentType": "image/png",
                        "created": 1,
                    }
                ]
            }
        if rel == "files/temp-url":
            return 200, {
                "fileList": [
                    {
                        "fileID": f,
                        "tempFileURL": f"{self.url}files/get/x?expires=1&sig=s",
                        "maxAge": data.get("maxAge", 3600),
                    }
                    for f in data["fileList"]
                ]
            }
        if rel == "files/delete":
            return 200, {"fileList": [{"fileID": f, "status": 0} for f in data["fileList"]]}
        if rel.startswith("functions/"):
            return 200, {"result": {"name": unquote(rel.split("/", 1)[1]), "data": data["data"], "uid": uid}}
        return 404, {"error": {"code": "not_found", "message": f"no route {method} {rel}"}}

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in h.headers.items()}
        seen = Seen(h.command, h.path, headers, body, "unsigned")
        if urlsplit(h.path).path == f"{BASE}/auth/session":
            grant = self.codes.get(json.loads(body).get("code"))
            if grant is None:
                status, out = (
                    401,
                    {"error": {"code": "invalid_auth_code", "message": "the auth code is unknown"}},
                )
            else:
                sid, secret = f"sess-{len(self.sessions) + 1}", os.urandom(32)
                self.sessions[sid] = {"secret": secret, "uid": grant["uid"], "uses": grant.get("uses")}
                status, out = (
                    200,
                    {
                        "session": sid,
                        "secret": base64.b64encode(secret).decode(),
                        "uid": grant["uid"],
                        "expires_at": int(time.time()) + 7200,
                    },
                )
        else:
            seen.verdict, uid = self.authenticate(h.command, h.path, headers, body)
            if seen.verdict != "ok":
                status, out = 401, {"error": {"code": seen.verdict, "message": f"refused: {seen.verdict}"}}
            elif self.replies:
                status, out = self.replies.pop(0)
            else:
                status, out = self.answer(h.command, h.path, body, uid)
        seen.status = status
        self.requests.append(seen)
        raw = out if isinstance(out, bytes) else json.dumps(out).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json" if not isinstance(out, bytes) else "text/html")
        h.send_header("Content-Length", str(len(raw)))
        h.end_headers()
        h.wfile.write(raw)


def _serve(rec: Recorder, tls: ssl.SSLContext | None = None):
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _any(self):
            with lock:
                rec.handle(self)

        do_GET = do_POST = _any

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    rec.url = f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}{BASE}/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


@pytest.fixture
def recorder(monkeypatch):
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("MINICLOUD_DATA_URL", "MINICLOUD_DATA_KEY", "MINICLOUD_DATA_SECRET"):
        monkeypatch.delenv(name, raising=False)
    rec = Recorder()
    server = _serve(rec)
    yield rec
    server.shutdown()
    server.server_close()


def node(scenario: str, args: dict, env: dict | None = None) -> dict:
    assert shutil.which("node"), "the JavaScript SDK's tests need node on PATH"
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MINICLOUD_DATA_") and "proxy" not in k.lower()
    }
    out = subprocess.run(
        ["node", str(DRIVER), scenario],
        input=json.dumps(args),
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, **(env or {})},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


# ---- signing ---------------------------------------------------------------------------------------------


def _signing_cases(n: int) -> list[dict]:
    """Random requests of every kind the SDKs send: JSON, bytes, empty GETs; session and server secrets."""
    rng = random.Random()
    cases = []
    for i in range(n):
        body = rng.choice(
            [
                b"",
                os.urandom(rng.randrange(1, 300)),
                json.dumps({"filter": {"名": "✓", "n": i}}, ensure_ascii=False).encode(),
            ]
        )
        case = {
            "method": rng.choice(["GET", "POST"]),
            "body_b64": base64.b64encode(body).decode(),
            "path": rng.choice(
                [
                    f"{BASE}/db/orders/find",
                    f"{BASE}/files?path=img/a%20b.png",
                    f"{BASE}/db/{quote('商品', safe='')}/count",
                ]
            ),
            "timestamp": str(int(time.time()) - rng.randrange(0, 100)),
            "nonce": os.urandom(16).hex(),
        }
        if i % 2:
            case["secret_b64"] = base64.b64encode(os.urandom(32)).decode()
        else:
            case["secret_text"] = "sëcret-" + os.urandom(8).hex()
        cases.append(case)
    return cases


def _secret(case: dict) -> bytes:
    return (
        base64.b64decode(case["secret_b64"]) if "secret_b64" in case else case["secret_text"].encode("utf-8")
    )


def test_python_signature_matches_the_protocol_reference():
    for case in _signing_cases(24):
        body, secret = base64.b64decode(case["body_b64"]), _secret(case)
        args = (case["method"], case["path"], body, case["timestamp"], case["nonce"], secret)
        assert mc.sign(*args) == reference_signature(*args)
        headers = mc.signature_headers(
            case["method"], case["path"], body, secret, case["timestamp"], case["nonce"]
        )
        assert headers == {
            "X-Cloud-Timestamp": case["timestamp"],
            "X-Cloud-Nonce": case["nonce"],
            "X-Cloud-Signature": reference_signature(*args),
        }
    # each signed part counts
    base = ("POST", f"{BASE}/db/orders/find", b"{}", "1700000000", "ab" * 8, b"k")
    for i, other in enumerate(["GET", f"{BASE}/db/orders/count", b"{ }", "1700000001", "ab" * 8 + "c", b"K"]):
        changed = list(base)
        changed[i] = other
        assert mc.sign(*changed) != mc.sign(*base)
    fresh = mc.signature_headers("GET", f"{BASE}/db", b"", b"k")
    assert re.fullmatch(r"[0-9a-f]{32}", fresh["X-Cloud-Nonce"])
    assert abs(int(fresh["X-Cloud-Timestamp"]) - time.time()) < 5


@pytest.mark.parametrize("where", ["node-crypto", "pure", "front-end"])
def test_js_signature_headers_equal_the_python_sdk(where):
    cases = _signing_cases(40)
    args = {
        "cases": cases,
        "mode": {"node-crypto": "node", "pure": "pure"}.get(where),
        "frontend": "my" if where == "front-end" else None,
    }
    out = node("sign", args)
    assert out["backend"] == ("node" if where == "node-crypto" else "pure")
    for case, headers in zip(cases, out["headers"], strict=True):
        expected = mc.signature_headers(
            case["method"],
            case["path"],
            base64.b64decode(case["body_b64"]),
            _secret(case),
            case["timestamp"],
            case["nonce"],
        )
        assert headers == expected


# RFC 4231 section 4 (HMAC-SHA256) and FIPS 180-2 appendix B / NIST CSRC examples (SHA-256): published values.
RFC4231 = [
    ("0b" * 20, b"Hi There".hex(), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (
        b"Jefe".hex(),
        b"what do ya want for nothing?".hex(),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    ),
    ("aa" * 20, "dd" * 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (
        bytes(range(1, 26)).hex(),
        "cd" * 50,
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
    ),
    ("0c" * 20, b"Test With Truncation".hex(), "a3b6167473100ee06e0c796c2955552b"),  # truncated to 128 bits
    (
        "aa" * 131,
        b"Test Using Larger Than Block-Size Key - Hash Key First".hex(),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
    ),
    (
        "aa" * 131,
        b"This is a test using a larger than block-size key and a larger than block-size data. The key needs"
        b" to be hashed before being used by the HMAC algorithm.".hex(),
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
    ),
]
NIST_SHA256 = [
    (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    (
        b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    ),
    (
        b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrst"
        b"nopqrstu",
        "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
    ),
]
MILLION_A = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"


@pytest.mark.parametrize("frontend", [None, "wx"])
def test_pure_js_digests_match_the_published_vectors(frontend):
    # every padding boundary too, against hashlib
    edges = [os.urandom(n) for n in (1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000)]
    args = {
        "mode": "pure",
        "frontend": frontend,
        "sha256": [m.hex() for m, _ in NIST_SHA256] + [e.hex() for e in edges],
        "repeated": [["a", 1_000_000]],
        "hmac": [[k, d] for k, d, _ in RFC4231],
    }
    out = node("digest", args)
    assert out["backend"] == "pure"
    assert out["sha256"][: len(NIST_SHA256)] == [digest for _, digest in NIST_SHA256]
    assert out["sha256"][len(NIST_SHA256) :] == [hashlib.sha256(e).hexdigest() for e in edges]
    assert out["repeated"] == [MILLION_A]
    for (_, _, expected), got in zip(RFC4231, out["hmac"], strict=True):
        assert got[: len(expected)] == expected


# ---- request building ------------------------------------------------------------------------------------

UPLOAD = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
FILE_TEXT = "hello ✓\n".encode()


def expected_requests(upload_file: Path) -> dict[str, tuple[str, str, object]]:
    """What docs/data-api.md says each operation sends: method, path with query, JSON body (or raw bytes)."""
    orders = f"{BASE}/db/orders"
    return {
        "get_all": ("POST", f"{orders}/find", {"filter": {}}),
        "get_query": (
            "POST",
            f"{orders}/find",
            {
                "filter": {"status": "paid", "total": {"$gt": 5}},
                "sort": [["created", -1], ["total", 1]],
                "skip": 10,
                "limit": 5,
                "projection": {"total": True, "status": True},
            },
        ),
        "get_unicode": ("POST", f"{BASE}/db/{quote('商品', safe='')}/find", {"filter": {}, "limit": 1}),
        "count": ("POST", f"{orders}/count", {"filter": {"status": {"$in": ["paid", "sent"]}}}),
        "add_one": ("POST", f"{orders}/add", {"data": {"total": 3, "tags": ["a"]}}),
        "add_many": ("POST", f"{orders}/add", {"data": [{"n": 1}, {"n": 2}]}),
        "doc_get": ("POST", f"{orders}/find", {"filter": {"_id": "id-1"}}),
        "doc_get_missing": ("POST", f"{orders}/find", {"filter": {"_id": "nope"}}),
        "doc_update": (
            "POST",
            f"{orders}/update",
            {
                "filter": {"_id": "id-1"},
                "update": {"$set": {"status": "sent", "addr.city": "Hangzhou"}, "$inc": {"n": 1}},
                "multi": False,
            },
        ),
        "doc_remove": ("POST", f"{orders}/remove", {"filter": {"_id": "id-1"}, "multi": False}),
        "where_update": (
            "POST",
            f"{orders}/update",
            {
                "filter": {"status": "paid"},
                "update": {"$set": {"status": "sent"}, "$push": {"log": {"$each": ["x", "y"]}}},
                "multi": True,
            },
        ),
        "where_remove": ("POST", f"{orders}/remove", {"filter": {"total": {"$lt": 1}}, "multi": True}),
        "or_lifted": (
            "POST",
            f"{orders}/find",
            {"filter": {"$or": [{"total": {"$lt": 1}}, {"total": {"$gt": 100}}]}},
        ),
        "range_and": ("POST", f"{orders}/find", {"filter": {"total": {"$gt": 1, "$lt": 9}}}),
        "immutable": ("POST", f"{orders}/find", {"filter": {"a": 1}}),
        "upload": ("POST", f"{BASE}/files?path={quote('img/a b(1).png', safe='/')}", UPLOAD),
        "upload_path": ("POST", f"{BASE}/files?path=docs/readme.txt", upload_file.read_bytes()),
        "temp_url": (
            "POST",
            f"{BASE}/files/temp-url",
            {"fileList": ["cloud://test/img/a.png"], "maxAge": 60},
        ),
        "delete_file": ("POST", f"{BASE}/files/delete", {"fileList": ["cloud://test/img/a.png"]}),
        "call_function": ("POST", f"{BASE}/functions/hello", {"data": {"x": 1}}),
    }


def check_requests(rec: Recorder, labels: list[str], expected: dict, identity: dict[str, str]) -> None:
    signed = rec.signed
    assert [r.verdict for r in signed] == ["ok"] * len(labels), [(r.path, r.verdict) for r in signed]
    for label, seen in zip(labels, signed, strict=True):
        method, path, body = expected[label]
        assert (seen.method, seen.path) == (method, path), label
        if isinstance(body, bytes):
            assert seen.body == body, label
            assert seen.headers["Content-Type"] == "application/octet-stream"
        else:
            assert seen.json == body, label
            assert seen.headers["Content-Type"] == "application/json"
        for name, value in identity.items():
            assert seen.headers.get(name) == value, (label, name)
        assert re.fullmatch(r"[0-9a-f]{32}", seen.headers["X-Cloud-Nonce"])
    assert len({r.headers["X-Cloud-Nonce"] for r in signed}) == len(signed)


def expected_js_results(rec: Recorder, upload_file: Path) -> dict:
    doc = rec.docs[0]
    return {
        "get_all": {"data": rec.docs},
        "get_query": {"data": rec.docs},
        "count": {"total": len(rec.docs)},
        "add_one": {"_id": "new-0"},
        "add_many": {"ids": ["new-0", "new-1"]},
        "doc_get": {"data": doc},
        "doc_get_missing": {"data": None},
        "doc_update": {"stats": {"updated": 1}},
        "doc_remove": {"stats": {"removed": 1}},
        "where_update": {"stats": {"updated": len(rec.docs)}},
        "where_remove": {"stats": {"removed": len(rec.docs)}},
        "upload": {
            "fileID": "cloud://test/img/a b(1).png",
            "size": len(UPLOAD),
            "contentType": "application/octet-stream",
        },
        "upload_path": {
            "fileID": "cloud://test/docs/readme.txt",
            "size": len(upload_file.read_bytes()),
            "contentType": "application/octet-stream",
        },
        "temp_url": {
            "fileList": [
                {
                    "fileID": "cloud://test/img/a.png",
                    "tempFileURL": f"{rec.url}files/get/x?expires=1&sig=s",
                    "maxAge": 60,
                }
            ]
        },
        "delete_file": {"fileList": [{"fileID": "cloud://test/img/a.png", "status": 0}]},
    }


@pytest.mark.parametrize("where", ["node-crypto", "pure", "my", "wx"])
def test_js_query_builder_sends_the_protocol_bodies(recorder, tmp_path, where):
    upload_file = tmp_path / "readme.txt"
    upload_file.write_bytes(FILE_TEXT)
    expected = expected_requests(upload_file)
    labels = list(expected)
    random.shuffle(labels)  # each request stands on its own
    frontend = where if where in ("my", "wx") else None
    if frontend:
        recorder.codes["code-1"] = {"uid": "2088000000000001", "uses": None}
        init = {"url": recorder.url, "code": "code-1"}
    else:  # also: the URL without /cloud/v1 is completed
        init = {
            "url": recorder.url.removesuffix(f"{BASE}/"),
            "serverKey": recorder.key,
            "serverSecret": recorder.secret,
        }
    args = {
        "init": init,
        "labels": labels,
        "frontend": frontend,
        "mode": {"node-crypto": "node"}.get(where, "pure"),
        "upload_b64": base64.b64encode(UPLOAD).decode(),
        "upload_file": str(upload_file),
    }
    out = node("ops", args)

    if frontend:
        first = recorder.requests[0]
        assert (first.method, first.path, first.json) == ("POST", f"{BASE}/auth/session", {"code": "code-1"})
        assert not [h for h in first.headers if h.lower().startswith("x-cloud-")]
        identity = {"X-Cloud-Session": "sess-1"}
        assert {t["kind"] for t in out["transport"]} == {frontend}
        assert all(t["dataType"] == "text" for t in out["transport"])
        assert sorted({t["data"] for t in out["transport"]}) == [
            "object",
            "string",
        ]  # bytes go as an ArrayBuffer
    else:
        identity = {"X-Cloud-Server-Key": recorder.key}
    check_requests(recorder, labels, expected, identity)
    results = out["results"]
    assert all("error" not in r for r in results.values()), results
    for label, want in expected_js_results(recorder, upload_file).items():
        assert results[label] == want, label
    assert results["call_function"]["result"] == {
        "name": "hello",
        "data": {"x": 1},
        "uid": "2088000000000001" if frontend else None,
    }


def test_python_query_builder_sends_the_protocol_bodies(recorder, tmp_path):
    upload_file = tmp_path / "readme.txt"
    upload_file.write_bytes(FILE_TEXT)
    cloud = mc.Cloud(url=recorder.url.removesuffix("/"), key=recorder.key, secret=recorder.secret)
    db = cloud.database()
    _, orders = db.command, db.collection("orders")
    ops = {
        "get_all": lambda: orders.get(),
        "get_query": lambda: (
            orders.where({"status": "paid", "total": _.gt(5)})
            .order_by("created", "desc")
            .order_by("total", "asc")
            .skip(10)
            .limit(5)
            .field({"total": True, "status": True})
            .get()
        ),
        "get_unicode": lambda: db.collection("商品").limit(1).get(),
        "count": lambda: orders.where({"status": _.in_(["paid", "sent"])}).count(),
        "add_one": lambda: orders.add({"total": 3, "tags": ["a"]}),
        "add_many": lambda: orders.add([{"n": 1}, {"n": 2}]),
        "doc_get": lambda: orders.doc("id-1").get(),
        "doc_get_missing": lambda: orders.doc("nope").get(),
        "doc_update": lambda: orders.doc("id-1").update(
            {"status": "sent", "addr": {"city": "Hangzhou"}, "n": _.inc(1)}
        ),
        "doc_remove": lambda: orders.doc("id-1").remove(),
        "where_update": lambda: orders.where({"status": "paid"}).update(
            {"status": "sent", "log": _.push(["x", "y"])}
        ),
        "where_remove": lambda: orders.where({"total": _.lt(1)}).remove(),
        "or_lifted": lambda: orders.where({"total": _.or_(_.lt(1), _.gt(100))}).get(),
        "range_and": lambda: orders.where({"total": {**_.gt(1), **_.lt(9)}}).get(),
        "immutable": lambda: (lambda base: (base.limit(2).order_by("a", "desc"), base.get())[1])(
            orders.where({"a": 1})
        ),
        "upload": lambda: cloud.upload_file("/img/a b(1).png", UPLOAD),
        "upload_path": lambda: cloud.upload_file("docs/readme.txt", upload_file.read_bytes()),
        "temp_url": lambda: cloud.get_temp_file_url(["cloud://test/img/a.png"], 60),
        "delete_file": lambda: cloud.delete_file(["cloud://test/img/a.png"]),
        "call_function": lambda: cloud.call_function("hello", {"x": 1}),
    }
    expected = expected_requests(upload_file)
    assert set(ops) == set(expected)
    labels = list(ops)
    random.shuffle(labels)
    results = {label: ops[label]() for label in labels}
    check_requests(recorder, labels, expected, {"X-Cloud-Server-Key": recorder.key})
    js = expected_js_results(recorder, upload_file)
    assert results["get_query"] == recorder.docs and results["count"] == len(recorder.docs)
    assert results["add_one"] == "new-0" and results["add_many"] == ["new-0", "new-1"]
    assert results["doc_get"] == recorder.docs[0] and results["doc_get_missing"] is None
    assert (results["doc_update"], results["doc_remove"]) == (1, 1)
    assert (results["where_update"], results["where_remove"]) == (len(recorder.docs), len(recorder.docs))
    assert results["upload"] == js["upload"] and results["upload_path"] == js["upload_path"]
    assert (
        results["temp_url"] == js["temp_url"]["fileList"]
        and results["delete_file"] == js["delete_file"]["fileList"]
    )
    assert results["call_function"] == {"name": "hello", "data": {"x": 1}, "uid": None}


def test_python_lists_and_acts_on_behalf_of_a_user(recorder):
    cloud = mc.Cloud(
        url=recorder.url, key=recorder.key, secret=recorder.secret, on_behalf_of="2088000000000007"
    )
    assert cloud.call_function("whoami") == {"name": "whoami", "data": {}, "uid": "2088000000000007"}
    assert cloud.database().list_collections() == [{"name": "orders", "count": len(recorder.docs)}]
    assert cloud.list_files("img/")[0]["fileID"] == "cloud://test/img/x.png"
    assert [(r.method, r.path, r.body) for r in recorder.signed[1:]] == [
        ("GET", f"{BASE}/db", b""),
        ("GET", f"{BASE}/files?prefix=img/", b""),
    ]
    assert all(
        r.verdict == "ok" and r.headers["X-Cloud-On-Behalf-Of"] == "2088000000000007" for r in recorder.signed
    )


# ---- credentials from the environment --------------------------------------------------------------------


def test_js_reads_the_server_credential_from_the_environment(recorder):
    env = {
        "MINICLOUD_DATA_URL": recorder.url,
        "MINICLOUD_DATA_KEY": recorder.key,
        "MINICLOUD_DATA_SECRET": recorder.secret,
    }
    assert node("env", {}, env) == {"result": {"total": len(recorder.docs)}}
    [seen] = recorder.requests
    assert (seen.verdict, seen.headers["X-Cloud-Server-Key"], seen.route) == (
        "ok",
        recorder.key,
        f"{BASE}/db/orders/count",
    )
    out = node("env", {}, {**env, "MINICLOUD_DATA_SECRET": "not-the-secret"})
    assert out["result"]["error"]["code"] == "bad_signature"


def test_python_reads_the_server_credential_from_the_environment(recorder, monkeypatch):
    monkeypatch.setenv("MINICLOUD_DATA_URL", recorder.url)
    monkeypatch.setenv("MINICLOUD_DATA_KEY", recorder.key)
    monkeypatch.setenv("MINICLOUD_DATA_SECRET", recorder.secret)
    assert mc.Cloud().database().collection("orders").count() == len(recorder.docs)
    assert recorder.requests[-1].verdict == "ok"
    monkeypatch.setenv("MINICLOUD_DATA_SECRET", "not-the-secret")
    with pytest.raises(mc.CloudError) as err:
        mc.Cloud().database().collection("orders").count()
    assert (err.value.code, err.value.status) == ("bad_signature", 401)
    monkeypatch.delenv("MINICLOUD_DATA_URL")
    with pytest.raises(mc.CloudError) as err:
        mc.Cloud()
    assert err.value.code == "invalid_config"


# ---- sessions -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("frontend", [None, "my"])
def test_js_renews_an_expired_session_through_get_auth_code_once(recorder, frontend):
    recorder.codes.update({"c1": {"uid": "u1", "uses": 1}, "c2": {"uid": "u1", "uses": None}})
    out = node(
        "renew",
        {"url": recorder.url, "code": "c1", "codes": ["c2"], "with_callback": True, "frontend": frontend},
    )
    assert out["first"] == {"data": recorder.docs} and out["second"] == {"data": recorder.docs}
    assert out["getAuthCodeCalls"] == 1
    trail = [
        (r.route.removeprefix(BASE), r.headers.get("X-Cloud-Session"), r.verdict) for r in recorder.requests
    ]
    assert trail == [
        ("/auth/session", None, "unsigned"),
        ("/db/orders/find", "sess-1", "ok"),
        ("/db/orders/find", "sess-1", "session_expired"),
        ("/auth/session", None, "unsigned"),
        ("/db/orders/find", "sess-2", "ok"),
    ]
    assert [r.json for r in recorder.requests if r.verdict == "unsigned"] == [{"code": "c1"}, {"code": "c2"}]
    # the retry is a new request: a new nonce, signed with the new session's secret
    assert recorder.requests[2].headers["X-Cloud-Nonce"] != recorder.requests[4].headers["X-Cloud-Nonce"]


def test_js_retries_an_expired_session_only_once(recorder):
    recorder.codes.update({"c1": {"uid": "u1", "uses": 1}, "c2": {"uid": "u1", "uses": 0}})
    out = node("renew", {"url": recorder.url, "code": "c1", "codes": ["c2", "c3"], "with_callback": True})
    assert out["second"]["error"]["code"] == "session_expired" and out["second"]["error"]["status"] == 401
    assert out["getAuthCodeCalls"] == 1
    assert [r.verdict for r in recorder.requests] == [
        "unsigned",
        "ok",
        "session_expired",
        "unsigned",
        "session_expired",
    ]


def test_js_without_get_auth_code_an_expired_session_rejects(recorder):
    recorder.codes["c1"] = {"uid": "u1", "uses": 1}
    out = node("renew", {"url": recorder.url, "code": "c1", "codes": [], "with_callback": False})
    assert out["first"] == {"data": recorder.docs}
    assert out["second"]["error"] == {
        "code": "session_expired",
        "message": "refused: session_expired",
        "status": 401,
        "isError": True,
    }
    assert len(recorder.requests) == 3


def test_js_bad_auth_code_rejects_with_the_server_code(recorder):
    out = node("renew", {"url": recorder.url, "code": "unknown", "codes": [], "with_callback": False})
    assert out["first"]["error"] == {
        "code": "invalid_auth_code",
        "message": "the auth code is unknown",
        "status": 401,
        "isError": True,
    }
    # an auth code is tried once: the next call has no session to use
    assert out["second"]["error"]["code"] == "no_session"
    assert [r.verdict for r in recorder.requests] == ["unsigned"]


def test_python_session_from_code_signs_as_the_user_and_renews(recorder):
    recorder.codes.update(
        {"c1": {"uid": "2088000000000001", "uses": 1}, "c2": {"uid": "2088000000000001", "uses": 1}}
    )
    codes = iter(["c2"])
    cloud = mc.Cloud(url=recorder.url, get_auth_code=lambda: next(codes))
    answer = cloud.session_from_code("c1")
    assert cloud.uid == answer["uid"] == "2088000000000001"
    assert cloud.call_function("who")["uid"] == "2088000000000001"
    assert cloud.call_function("who")["uid"] == "2088000000000001"  # sess-1 expired: renewed with c2
    assert [(r.headers.get("X-Cloud-Session"), r.verdict) for r in recorder.requests] == [
        (None, "unsigned"),
        ("sess-1", "ok"),
        ("sess-1", "session_expired"),
        (None, "unsigned"),
        ("sess-2", "ok"),
    ]
    with pytest.raises(
        mc.CloudError
    ) as err:  # sess-2 is used up and no code is left: StopIteration is not swallowed
        cloud.get_auth_code = None
        cloud.call_function("who")
    assert (err.value.code, err.value.status) == ("session_expired", 401)
    with pytest.raises(mc.CloudError) as err:
        mc.Cloud(url=recorder.url).session_from_code("nope")
    assert (err.value.code, err.value.message) == ("invalid_auth_code", "the auth code is unknown")


# ---- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("frontend", [None, "my", "wx"])
def test_js_errors_carry_the_server_code_in_promises_and_callbacks(recorder, frontend):
    denied = {"error": {"code": "denied", "message": "the rule of orders denies this update"}}
    recorder.replies += [(403, denied), (403, denied)]
    if frontend:
        recorder.codes["c1"] = {"uid": "u1", "uses": None}
        init = {"url": recorder.url, "code": "c1"}
    else:
        init = {"url": recorder.url, "serverKey": recorder.key, "serverSecret": recorder.secret}
    out = node("callbacks", {"init": init, "frontend": frontend})
    want = {"code": "denied", "message": denied["error"]["message"], "status": 403, "isError": True}
    assert out["promised"] == {"error": want}
    assert out["callbacks"] == {"fail": want, "complete": True, "returned": "undefined"}
    assert out["succeeded"] == {
        "success": {"result": {"name": "hello", "data": {"y": 2}, "uid": "u1" if frontend else None}},
        "complete": True,
    }


def test_js_wrong_server_secret_is_refused_with_bad_signature(recorder):
    init = {"url": recorder.url, "serverKey": recorder.key, "serverSecret": recorder.secret + "x"}
    out = node("ops", {"init": init, "labels": ["get_all"], "mode": "pure", "frontend": None})
    assert out["results"]["get_all"]["error"]["code"] == "bad_signature"
    assert [r.verdict for r in recorder.requests] == ["bad_signature"]


def test_python_raises_cloud_error_with_the_server_code(recorder):
    cloud = mc.Cloud(url=recorder.url, key=recorder.key, secret=recorder.secret)
    orders = cloud.database().collection("orders")
    message = "the operator $where is not supported at filter.$where"
    recorder.replies.append((400, {"error": {"code": "unsupported_operator", "message": message}}))
    with pytest.raises(mc.CloudError) as err:
        orders.where({"$where": "1"}).get()
    assert (err.value.code, err.value.message, err.value.status, str(err.value)) == (
        "unsupported_operator",
        message,
        400,
        message,
    )
    recorder.replies.append((502, b"<html>bad gateway</html>"))
    with pytest.raises(mc.CloudError) as err:
        orders.count()
    assert (err.value.code, err.value.status) == ("http_502", 502)
    with pytest.raises(mc.CloudError) as err:
        mc.Cloud(url=recorder.url, key=recorder.key, secret="wrong").call_function("x")
    assert (err.value.code, err.value.status) == ("bad_signature", 401)
    with pytest.raises(mc.CloudError) as err:
        mc.Cloud(
            url=recorder.url.replace(recorder.url.split(":")[2].split("/")[0], "1"), key="k", secret="s"
        ).call_function("x")
    assert err.value.code == "network_error"


# ---- TLS with a local CA ---------------------------------------------------------------------------------


NAMED_HOST = "api.swarm.test"  # in the test certificate; resolves nowhere (.test is reserved)


def _local_ca(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "minicloud test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                         x509.DNSName(NAMED_HOST)]), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, cert, key = tmp_path / "ca.pem", tmp_path / "leaf.pem", tmp_path / "leaf.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ca_pem, ctx


@pytest.fixture
def tls_recorder(tmp_path, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    ca_pem, ctx = _local_ca(tmp_path)
    rec = Recorder()
    server = _serve(rec, ctx)
    yield rec, ca_pem
    server.shutdown()
    server.server_close()


def test_python_trusts_the_local_ca_from_the_ca_argument_or_ssl_cert_file(tls_recorder, monkeypatch):
    rec, ca_pem = tls_recorder

    def count(**kw) -> int:
        return (
            mc.Cloud(url=rec.url, key=rec.key, secret=rec.secret, **kw)
            .database()
            .collection("orders")
            .count()
        )

    with pytest.raises(mc.CloudError) as err:
        count()
    assert err.value.code == "network_error" and "certificate" in err.value.message.lower()
    assert count(ca=str(ca_pem)) == len(rec.docs)
    assert count(ca=ca_pem.read_text()) == len(rec.docs)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_pem))
    assert count() == len(rec.docs)
    assert [r.verdict for r in rec.requests] == ["ok"] * 3


def test_js_in_node_trusts_the_local_ca_through_node_extra_ca_certs(tls_recorder):
    rec, ca_pem = tls_recorder
    env = {"MINICLOUD_DATA_URL": rec.url, "MINICLOUD_DATA_KEY": rec.key, "MINICLOUD_DATA_SECRET": rec.secret}
    assert node("env", {}, {**env, "NODE_EXTRA_CA_CERTS": str(ca_pem)}) == {
        "result": {"total": len(rec.docs)}
    }
    refused = node("env", {}, {**env, "NODE_EXTRA_CA_CERTS": os.devnull})
    assert refused["result"]["error"]["code"] == "network_error"


def test_python_asks_another_address_by_the_urls_name(tls_recorder):
    """`address`: the connection goes there, while TLS checks the URL's name and Host carries it (a swarm
    env's gateway, on its manager, under a name that resolves to this machine)."""
    rec, ca_pem = tls_recorder
    port = urlsplit(rec.url).port
    named = rec.url.replace("127.0.0.1", NAMED_HOST)

    def count(url: str, **kw) -> int:
        return mc.Cloud(url=url, key=rec.key, secret=rec.secret, ca=str(ca_pem), **kw).database() \
            .collection("orders").count()

    with pytest.raises(mc.CloudError) as unresolved:
        count(named)
    assert unresolved.value.code == "network_error"
    assert count(named, address="127.0.0.1") == len(rec.docs)
    assert count(named, address=f"127.0.0.1:{port}") == len(rec.docs)
    assert rec.requests[-1].headers["Host"] == f"{NAMED_HOST}:{port}" and rec.requests[-1].verdict == "ok"
    with pytest.raises(mc.CloudError) as wrong_name:  # the certificate is still checked against the URL's name
        count(named.replace(NAMED_HOST, "other.swarm.test"), address="127.0.0.1")
    assert wrong_name.value.code == "network_error" and "certificate" in wrong_name.value.message.lower()
    with pytest.raises(mc.CloudError, match="HOST or HOST:PORT"):
        count(named, address="127.0.0.1:https")
