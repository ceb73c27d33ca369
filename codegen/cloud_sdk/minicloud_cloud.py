"""minicloud_cloud - the Python client of minicloud's data API (docs/data-api.md), standard library only.

For Python cloud functions and apps, which get the server credential in the environment::

    from minicloud_cloud import Cloud, command as _

    cloud = Cloud()                      # MINICLOUD_DATA_URL, MINICLOUD_DATA_KEY, MINICLOUD_DATA_SECRET
    orders = cloud.database().collection("orders")
    recent = orders.where({"total": _.gt(5)}).order_by("created", "desc").limit(10).get()
    order_id = orders.add({"total": 12})
    orders.doc(order_id).update({"total": _.inc(1)})

HTTPS is verified against the system store plus `SSL_CERT_FILE`, `MINICLOUD_CA_FILE` and the `ca` argument (a PEM path or
PEM text), since the local gateway's certificate comes from a local CA. Every error the data API
answers raises `CloudError(code, message, status)` with the server's code and message.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import http.client
import json
import os
import secrets
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

__all__ = [
    "Cloud",
    "CloudError",
    "Collection",
    "Database",
    "Doc",
    "Query",
    "command",
    "sign",
    "signature_headers",
]


class CloudError(Exception):
    """An error of the data API: `code` (snake_case), the server's `message`, the HTTP `status` (0: none)."""

    def __init__(self, code: str, message: str, status: int = 0):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def __repr__(self) -> str:
        return f"CloudError({self.code!r}, {self.message!r}, {self.status})"


# ---- signing (docs/data-api.md, "Signature") ----------------------------------------------------------


def sign(method: str, path: str, body: bytes, timestamp: int | str, nonce: str, secret: bytes) -> str:
    """base64(HMAC-SHA256(secret, METHOD \\n PATH_WITH_QUERY \\n TIMESTAMP \\n NONCE \\n hex(SHA-256(body))))
    with the secret's bytes: a session's base64-decoded secret, or the server secret in UTF-8."""
    text = "\n".join([method.upper(), path, str(timestamp), nonce, hashlib.sha256(body or b"").hexdigest()])
    return base64.b64encode(hmac.new(secret, text.encode(), hashlib.sha256).digest()).decode()


def signature_headers(
    method: str,
    path: str,
    body: bytes,
    secret: bytes,
    timestamp: int | str | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The X-Cloud-Timestamp/-Nonce/-Signature headers; a fresh timestamp and 32-hex-char nonce by default."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_hex(16)
    return {
        "X-Cloud-Timestamp": ts,
        "X-Cloud-Nonce": nonce,
        "X-Cloud-Signature": sign(method, path, body, ts, nonce, secret),
    }


# ---- filters and updates: MongoDB's operators ---------------------------------------------------------


def _is_operator(v: Any) -> bool:
    return isinstance(v, dict) and bool(v) and all(isinstance(k, str) and k.startswith("$") for k in v)


def _op(name: str) -> staticmethod:
    return staticmethod(lambda v: {"$" + name: v})


def _each(name: str) -> staticmethod:
    def make(v: Any) -> dict:
        return {"$" + name: {"$each": list(v)} if isinstance(v, list | tuple) else v}

    return staticmethod(make)


class _Command:
    """`db.command`: builders of MongoDB operator objects, `command.gt(5)` -> `{"$gt": 5}`."""

    eq, neq, gt, gte, lt, lte = _op("eq"), _op("ne"), _op("gt"), _op("gte"), _op("lt"), _op("lte")
    in_, nin, not_, exists, size = _op("in"), _op("nin"), _op("not"), _op("exists"), _op("size")
    all, elem_match = _op("all"), _op("elemMatch")
    set, inc, mul, rename = _op("set"), _op("inc"), _op("mul"), _op("rename")
    min, max = _op("min"), _op("max")
    push, add_to_set, pull, pull_all = _each("push"), _each("addToSet"), _op("pull"), _op("pullAll")

    @staticmethod
    def and_(*conds: Any) -> dict:
        return {"$and": list(conds[0]) if len(conds) == 1 and isinstance(conds[0], list) else list(conds)}

    @staticmethod
    def or_(*conds: Any) -> dict:
        return {"$or": list(conds[0]) if len(conds) == 1 and isinstance(conds[0], list) else list(conds)}

    @staticmethod
    def nor(*conds: Any) -> dict:
        return {"$nor": list(conds[0]) if len(conds) == 1 and isinstance(conds[0], list) else list(conds)}

    @staticmethod
    def remove() -> dict:
        return {"$unset": ""}

    @staticmethod
    def pop() -> dict:
        return {"$pop": 1}

    @staticmethod
    def shift() -> dict:
        return {"$pop": -1}

    @staticmethod
    def regex(pattern: str, options: str = "") -> dict:
        return {"$regex": pattern, **({"$options": options} if options else {})}


command = _Command()


def _to_filter(where: dict) -> dict:
    """A filter as MongoDB reads it: a field-level `command.or_(lt(1), gt(9))` becomes a top-level $or."""
    if not isinstance(where, dict):
        raise TypeError("where() takes a dict")
    out: dict = {}
    lifted: list[dict] = []
    for k, v in where.items():
        name, conds = next(iter(v.items())) if isinstance(v, dict) and len(v) == 1 else ("", None)
        if (
            not k.startswith("$")
            and name in ("$or", "$and", "$nor")
            and isinstance(conds, list)
            and all(map(_is_operator, conds))
        ):
            lifted.append({name: [{k: c} for c in conds]})
        else:
            out[k] = v
    if not lifted:
        return out
    if out:
        lifted.insert(0, out)
    return lifted[0] if len(lifted) == 1 else {"$and": lifted}


def _to_update(data: dict) -> dict:
    """An update as MongoDB reads it: plain fields are $set (nested dicts merge, by dotted path), operator
    values (`command.inc(1)`) are gathered by operator; a dict of operators only is sent as it is."""
    if not isinstance(data, dict):
        raise TypeError("update() takes a dict")
    if _is_operator(data):
        return data
    out: dict[str, dict] = {}

    def walk(obj: dict, prefix: str) -> None:
        for k, v in obj.items():
            path = prefix + k
            if _is_operator(v):
                for name, arg in v.items():
                    out.setdefault(name, {})[path] = arg
            elif isinstance(v, dict) and v:
                walk(v, path + ".")
            else:
                out.setdefault("$set", {})[path] = v

    walk(data, "")
    return out


# ---- the client ---------------------------------------------------------------------------------------


def _base(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CloudError(
            "invalid_config",
            f"url must be an http(s) URL such as https://APP.ENV.localhost:PORT/cloud/v1/, not {url!r}",
        )
    path = parts.path.rstrip("/")
    if not path.endswith("/cloud/v1"):
        path += "/cloud/v1"
    return f"{parts.scheme}://{parts.netloc}", path


def _ssl_context(ca: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    for variable in ("SSL_CERT_FILE", "MINICLOUD_CA_FILE"):  # minicloud injects the local CA's path
        env_file = os.environ.get(variable)
        if env_file and os.path.isfile(env_file):
            ctx.load_verify_locations(cafile=env_file)
    if ca:
        if ca.lstrip().startswith("-----BEGIN"):
            ctx.load_verify_locations(cadata=ca)
        else:
            ctx.load_verify_locations(cafile=ca)
    return ctx


class _AddressedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to another address than the URL's host, whose name TLS still checks and Host still carries."""

    def __init__(self, *args: Any, address: tuple[str, int | None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._address = (address[0], address[1] or self.port)

    def connect(self) -> None:
        sock = socket.create_connection(self._address, self.timeout, self.source_address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class _AddressedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, context: ssl.SSLContext | None, address: tuple[str, int | None]) -> None:
        super().__init__(context=context)
        self._address = address

    def https_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(functools.partial(_AddressedHTTPSConnection, address=self._address), req,
                            context=self._context)


def _address(text: str) -> tuple[str, int | None]:
    if text.startswith("["):  # [IPv6] or [IPv6]:PORT
        host, _, port = text[1:].partition("]")
        port = port[1:] if port.startswith(":") else port
    else:
        host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if not host or (port and not port.isdigit()):
        raise CloudError("invalid_config", f"address must be HOST or HOST:PORT, not {text!r}")
    return host, int(port) if port else None


class Cloud:
    """A data API client. Without arguments it acts with the server credential of the environment
    (MINICLOUD_DATA_URL, MINICLOUD_DATA_KEY, MINICLOUD_DATA_SECRET); `session_from_code` switches it to a
    user's session. `get_auth_code()` -> code, when given, renews an expired session once per request.
    `address` (HOST or HOST:PORT): connect there instead of the URL's host, which TLS still checks and Host
    still names, as `curl --connect-to` does (a gateway whose name this machine does not resolve)."""

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        secret: str | None = None,
        ca: str | None = None,
        *,
        session: dict | None = None,
        get_auth_code: Callable[[], str] | None = None,
        on_behalf_of: str | None = None,
        timeout: float = 30.0,
        address: str | None = None,
    ):
        url = url or os.environ.get("MINICLOUD_DATA_URL")
        if not url:
            raise CloudError("invalid_config", "no url: pass url= or set MINICLOUD_DATA_URL")
        self._origin, self._path = _base(url)
        user = session is not None or get_auth_code is not None
        self.key = key or (None if user else os.environ.get("MINICLOUD_DATA_KEY"))
        if secret is None and not key and not user:
            secret = os.environ.get("MINICLOUD_DATA_SECRET")
        if self.key and secret is None:
            raise CloudError("invalid_config", "a server key needs its secret (MINICLOUD_DATA_SECRET)")
        self._secret = secret.encode() if self.key and secret is not None else None
        self.session: dict | None = None
        if session is not None:
            self._keep(session)
        self.get_auth_code = get_auth_code
        self.on_behalf_of = on_behalf_of
        self.timeout = timeout
        self._ssl = _ssl_context(ca) if self._origin.startswith("https:") else None
        self._opener = None
        if address:
            if self._ssl is None:
                raise CloudError("invalid_config", "address is for an https:// url")
            self._opener = urllib.request.build_opener(_AddressedHTTPSHandler(self._ssl, _address(address)))

    # -- identity

    def _keep(self, answer: dict) -> dict:
        if not answer.get("session") or not answer.get("secret"):
            raise CloudError("invalid_config", "a session needs its session id and secret")
        self.session = dict(answer, secret_bytes=base64.b64decode(answer["secret"]))
        self.key = self._secret = None
        return answer

    def session_from_code(self, code: str) -> dict:
        """Trades an auth code for a session ({session, secret, uid, expires_at}); later requests use it."""
        answer = self._send("POST", "auth/session", json.dumps({"code": code}).encode(), signed=False)
        return self._keep(answer)

    @property
    def uid(self) -> str | None:
        return self.session.get("uid") if self.session else None

    # -- requests

    def _send(
        self,
        method: str,
        rel: str,
        body: bytes | None,
        *,
        signed: bool = True,
        content_type: str = "application/json",
    ) -> Any:
        path = f"{self._path}/{rel}"
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        if signed:
            if self.key:
                headers["X-Cloud-Server-Key"] = self.key
                secret = self._secret
                if self.on_behalf_of:
                    headers["X-Cloud-On-Behalf-Of"] = self.on_behalf_of
            elif self.session:
                headers["X-Cloud-Session"] = self.session["session"]
                secret = self.session["secret_bytes"]
            else:
                raise CloudError("no_session", "no server key and no session: call session_from_code first")
            headers.update(signature_headers(method, path, body or b"", secret))
        req = urllib.request.Request(self._origin + path, data=body, method=method, headers=headers)
        try:
            opened = (self._opener.open(req, timeout=self.timeout) if self._opener is not None
                      else urllib.request.urlopen(req, timeout=self.timeout, context=self._ssl))
            with opened as res:
                status, raw = res.status, res.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            raise CloudError("network_error", str(getattr(e, "reason", e)), 0) from e
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = None
        if 200 <= status < 300 and isinstance(answer, dict):
            return answer
        error = answer.get("error") if isinstance(answer, dict) else None
        if isinstance(error, dict) and error.get("code"):
            raise CloudError(error["code"], error.get("message") or error["code"], status)
        raise CloudError(f"http_{status}", f"the data API answered HTTP {status} without a JSON body", status)

    def _call(self, method: str, rel: str, body: bytes | None = None, **kw: Any) -> Any:
        try:
            return self._send(method, rel, body, **kw)
        except CloudError as e:
            if e.code != "session_expired" or self.key or not self.get_auth_code:
                raise
            self.session_from_code(self.get_auth_code())
            return self._send(method, rel, body, **kw)

    def _json(self, rel: str, obj: Any) -> Any:
        return self._call("POST", rel, json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode())

    def request(self, method: str, rel: str, body: Any = None) -> Any:
        """One call of the protocol as docs/data-api.md writes it (`rel` after /cloud/v1/, e.g.
        "db/orders/find"), signed; for tools that hold MongoDB filters as they are (the minicloud CLI)."""
        if body is None:
            return self._call(method, rel, None)
        return self._call(method, rel, json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())

    # -- documents, files, functions

    def database(self) -> Database:
        return Database(self)

    def upload_file(self, cloud_path: str, data: bytes) -> dict:
        """Stores the bytes at cloud_path: {"fileID": "cloud://ENV/PATH", "size": n, "contentType": "..."}."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError("upload_file takes the file's bytes")
        rel = "files?path=" + quote(cloud_path.lstrip("/"), safe="/")
        return self._call("POST", rel, bytes(data), content_type="application/octet-stream")

    def get_temp_file_url(self, file_ids: list[str] | str, max_age: int | None = None) -> list[dict]:
        """[{"fileID", "tempFileURL", "maxAge"}] for each fileID."""
        body: dict[str, Any] = {"fileList": [file_ids] if isinstance(file_ids, str) else list(file_ids)}
        if max_age is not None:
            body["maxAge"] = max_age
        return self._json("files/temp-url", body)["fileList"]

    def delete_file(self, file_ids: list[str] | str) -> list[dict]:
        """[{"fileID", "status"}] for each fileID (status 0: deleted)."""
        body = {"fileList": [file_ids] if isinstance(file_ids, str) else list(file_ids)}
        return self._json("files/delete", body)["fileList"]

    def list_files(self, prefix: str = "") -> list[dict]:
        """The stored files under prefix (server credential only)."""
        return self._call("GET", "files?prefix=" + quote(prefix, safe="/"))["files"]

    def call_function(self, name: str, data: Any = None) -> Any:
        """Runs the cloud function and returns its result."""
        body = {"data": {} if data is None else data}
        return self._json("functions/" + quote(name, safe=""), body)["result"]


class Database:
    command = command

    def __init__(self, cloud: Cloud):
        self._cloud = cloud

    def collection(self, name: str) -> Collection:
        if not name or not isinstance(name, str):
            raise TypeError("collection() takes a name")
        return Collection(self._cloud, name)

    def list_collections(self) -> list[dict]:
        """[{"name", "count"}] for each collection."""
        return self._cloud._call("GET", "db")["collections"]


class Query:
    """An immutable query: every builder method returns a new one."""

    def __init__(self, cloud: Cloud, name: str, q: dict | None = None):
        self._cloud, self._name = cloud, name
        self._q: dict[str, Any] = q if q is not None else {"filter": {}}

    def _with(self, key: str, value: Any) -> Query:
        return Query(self._cloud, self._name, {**self._q, key: value})

    def _rel(self, verb: str) -> str:
        return f"db/{quote(self._name, safe='')}/{verb}"

    def where(self, conditions: dict) -> Query:
        return self._with("filter", _to_filter(conditions))

    def order_by(self, field: str, order: str = "asc") -> Query:
        if order.lower() not in ("asc", "desc"):
            raise ValueError('order_by() takes "asc" or "desc"')
        return self._with("sort", [*self._q.get("sort", []), [field, 1 if order.lower() == "asc" else -1]])

    def skip(self, n: int) -> Query:
        return self._with("skip", _whole(n, "skip"))

    def limit(self, n: int) -> Query:
        return self._with("limit", _whole(n, "limit"))

    def field(self, projection: dict) -> Query:
        if not isinstance(projection, dict):
            raise TypeError("field() takes a dict")
        return self._with("projection", projection)

    def get(self) -> list[dict]:
        """The matching documents."""
        return self._cloud._json(self._rel("find"), self._q)["data"]

    def count(self) -> int:
        return self._cloud._json(self._rel("count"), {"filter": self._q["filter"]})["total"]

    def update(self, data: dict) -> int:
        """Updates every matching document; the number updated."""
        body = {"filter": self._q["filter"], "update": _to_update(data), "multi": True}
        return self._cloud._json(self._rel("update"), body)["updated"]

    def remove(self) -> int:
        """Removes every matching document; the number removed."""
        return self._cloud._json(self._rel("remove"), {"filter": self._q["filter"], "multi": True})["removed"]


def _whole(n: Any, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"{name}() takes a whole number >= 0")
    return n


class Collection(Query):
    def __init__(self, cloud: Cloud, name: str):
        super().__init__(cloud, name)

    def add(self, data: dict | list[dict]) -> str | list[str]:
        """Adds a document (its _id) or a list of them (their _ids)."""
        if not isinstance(data, dict | list):
            raise TypeError("add() takes a dict or a list of dicts")
        ids = self._cloud._json(self._rel("add"), {"data": data})["ids"]
        return ids if isinstance(data, list) else ids[0]

    def doc(self, doc_id: str) -> Doc:
        return Doc(self, doc_id)


class Doc:
    def __init__(self, collection: Collection, doc_id: str):
        self._coll, self.id = collection, doc_id

    def _json(self, verb: str, body: dict) -> Any:
        return self._coll._cloud._json(self._coll._rel(verb), body)

    def get(self) -> dict | None:
        data = self._json("find", {"filter": {"_id": self.id}})["data"]
        return data[0] if data else None

    def update(self, data: dict) -> int:
        body = {"filter": {"_id": self.id}, "update": _to_update(data), "multi": False}
        return self._json("update", body)["updated"]

    def remove(self) -> int:
        return self._json("remove", {"filter": {"_id": self.id}, "multi": False})["removed"]
