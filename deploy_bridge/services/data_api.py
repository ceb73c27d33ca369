"""The data API of one env: documents, files and functions for mini-program front ends (docs/data-api.md).

    DATA_DSN=postgresql://… DATA_CONFIG=/data/config.json PORT=8080 python3 -m deploy_bridge.services.data_api

Plain HTTP inside the env's network; the env's HTTPS gateway forwards https://APP.ENV.localhost:PORT/cloud/
here. A front end trades an auth code for a session (through the env's sandbox open platform, an
RSA2-signed `alipay.system.oauth.token` call); every other request is signed with the session's secret
(or the server secret) and checked for time and replay. Sessions live in PostgreSQL, so they survive a
restart; documents go through the DocStore with the collection's rules (the server credential bypasses
them); files live under `files_dir`, their records in PostgreSQL. One log line per request: method,
path, status, milliseconds, uid; never a secret, a signature or a query string.

Runs in the sandbox image: standard library, cryptography and psycopg only.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import collections
import concurrent.futures
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from . import data_rules
from .docstore import Denied, DocStore, QueryError
from .engine_api import survive

PREFIX = "/cloud/v1"
CLOCK_WINDOW = 300  # seconds a request's timestamp may be off; a nonce is remembered twice as long
NONCE_SHAPE = re.compile(r"[0-9a-fA-F]{16,128}")
USER_ID_SHAPE = re.compile(r"2088\d{12}")
NAME_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_JSON_BODY = 8 * 2**20
MAX_LIMIT = 1000
MAX_TEMP_URL_AGE = 7 * 86400
DETECT_CHUNK = 10000  # characters per alipay.security.risk.content.detect call (its content's max_length)
DETECT_OVERLAP = 64  # a word cut by a chunk boundary is whole in the overlap
FUNCTION_TIMEOUT = 900.0
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")  # not in text (tab, newlines, form feed are)
META_SCHEMA = "minicloud_data"  # the data API's own tables, apart from the collections' ones


class LogLines:
    """The server's log lines, written to stdout a batch at a time by a background thread. A write per
    request woke the engine's log driver (containerd-shim, dockerd) once per request, on the same two cores
    the request itself needs: it showed in the find's tail (bench: data_overhead_ratio)."""

    EVERY = 0.2  # seconds a line may wait; `minicloud logs -f` shows it this much later at most

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None

    def add(self, line: str) -> None:
        with self._lock:
            self._lines.append(line + "\n")
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_forever, name="log-lines", daemon=True)
                self._writer.start()

    def flush(self) -> None:
        with self._lock:
            lines, self._lines = self._lines, []
        if lines:
            sys.stdout.write("".join(lines))
            sys.stdout.flush()

    def _write_forever(self) -> None:
        pause = threading.Event()
        while True:
            pause.wait(self.EVERY)
            with contextlib.suppress(OSError, ValueError):  # stdout closed at exit
                self.flush()


LOG_LINES = LogLines()
atexit.register(LOG_LINES.flush)


def log(line: str) -> None:
    LOG_LINES.add(f"data: {line}")


class ApiError(Exception):
    """An answer other than success: an HTTP status and the documented error shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def bad_request(message: str, code: str = "invalid_request") -> ApiError:
    return ApiError(400, code, message)


# ------------------------------------------------------------------ configuration
@dataclass
class Config:
    app: str
    env: str
    server_key: str
    server_secret: str
    files_dir: Path
    public_url: str
    session_ttl: int = 7200
    max_file_mb: float = 10
    collections: dict[str, dict[str, str]] = field(default_factory=dict)
    sandbox: dict[str, str] | None = None
    scanner_url: str | None = None
    functions_url: str | None = None

    @classmethod
    def load(cls, path: Path) -> Config:
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"DATA_CONFIG {path}: {err}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"DATA_CONFIG {path}: not a JSON object")
        for name in ("app", "env", "server_key", "server_secret", "public_url"):
            if not isinstance(raw.get(name), str) or not raw[name]:
                raise ValueError(f"DATA_CONFIG {path}: {name} must be a non-empty string")
        collections_ = raw.get("collections") or {}
        if not isinstance(collections_, dict) or not all(isinstance(v, dict) for v in collections_.values()):
            raise ValueError(f"DATA_CONFIG {path}: collections must map names to {{\"read\", \"write\"}} rules")
        sandbox = raw.get("sandbox")
        if sandbox is not None:
            for name in ("url", "app_id", "private_key_path", "platform_public_key_path"):
                if not isinstance(sandbox.get(name), str) or not sandbox[name]:
                    raise ValueError(f"DATA_CONFIG {path}: sandbox.{name} must be a non-empty string")
        return cls(app=raw["app"], env=raw["env"], server_key=raw["server_key"], server_secret=raw["server_secret"],
                   files_dir=Path(raw.get("files_dir") or "/data/files"), public_url=raw["public_url"].rstrip("/"),
                   session_ttl=int(raw.get("session_ttl") or 7200), max_file_mb=float(raw.get("max_file_mb") or 10),
                   collections=collections_, sandbox=sandbox, scanner_url=raw.get("scanner_url") or None,
                   functions_url=raw.get("functions_url") or None)


# ------------------------------------------------------------------ database connections
class Pool:
    """A small thread-safe pool of autocommit connections: at most `size` in use, idle ones reused (LIFO).

    A connection idle for more than CHECK_AFTER seconds is tested (`SELECT 1`) before it is handed out,
    and replaced when the server dropped it (a restart of PostgreSQL); a connection that failed in use is
    closed, never returned, and the idle ones are dropped with it, so one restart costs at most the
    requests in flight."""

    CHECK_AFTER = 2.0

    def __init__(self, dsn: str, size: int = 8, wait: float = 5.0) -> None:
        self.dsn, self.wait = dsn, wait
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[tuple[psycopg.Connection, float]] = []  # (connection, idle since)
        self._lock = threading.Lock()

    def _take(self) -> psycopg.Connection:
        while True:
            with self._lock:
                conn, since = self._idle.pop() if self._idle else (None, 0.0)
            if conn is None:
                return psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
            if conn.closed or conn.broken:
                continue
            if time.monotonic() - since < self.CHECK_AFTER:
                return conn
            try:
                conn.execute("SELECT 1")
                return conn
            except psycopg.Error:
                conn.close()

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        if not self._slots.acquire(timeout=self.wait):
            raise ApiError(503, "busy", f"no database connection was free within {self.wait:g}s; retry")
        conn: psycopg.Connection | None = None
        try:
            conn = self._take()
            yield conn
        except psycopg.OperationalError:
            if conn is not None:
                conn.close()
                conn = None
            self.drop_idle()
            raise
        finally:
            if conn is not None:
                if conn.closed or conn.broken or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.close()
                else:
                    with self._lock:
                        self._idle.append((conn, time.monotonic()))
            self._slots.release()

    def drop_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        self.drop_idle()


SCHEMA_SQL = f"""
SELECT pg_advisory_xact_lock(hashtext('{META_SCHEMA}:install'));
CREATE SCHEMA IF NOT EXISTS {META_SCHEMA};
CREATE TABLE IF NOT EXISTS {META_SCHEMA}.sessions (
    id text PRIMARY KEY, secret text NOT NULL, uid text NOT NULL, expires_at bigint NOT NULL,
    created timestamptz NOT NULL DEFAULT now());
CREATE INDEX IF NOT EXISTS sessions_expires_at ON {META_SCHEMA}.sessions (expires_at);
CREATE TABLE IF NOT EXISTS {META_SCHEMA}.files (
    path text PRIMARY KEY, size bigint NOT NULL, content_type text NOT NULL, owner text,
    created double precision NOT NULL);
"""


# ------------------------------------------------------------------ the open platform (RSA2, v2 form protocol)
class PlatformRefused(Exception):
    """The open platform answered with an error (code other than 10000)."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.code, self.sub_code = str(answer.get("code")), str(answer.get("sub_code") or "")
        super().__init__(f"{self.code} {self.sub_code}: {answer.get('sub_msg') or answer.get('msg')}")


class PlatformUnavailable(Exception):
    """The open platform could not be asked, or its answer is not signed by the platform."""


class OpenPlatform:
    """Calls of the env's sandbox open platform, as an app's server makes them: RSA2-signed v2 form
    requests, answers verified with the platform's public key over the raw response object."""

    def __init__(self, url: str, app_id: str, private_key_path: str, platform_public_key_path: str,
                 timeout: float = 10) -> None:
        self.url, self.app_id, self.timeout = url, app_id, timeout
        self.private_key = serialization.load_pem_private_key(Path(private_key_path).read_bytes(), password=None)
        self.platform_key = serialization.load_pem_public_key(Path(platform_public_key_path).read_bytes())

    def sign(self, params: dict[str, str]) -> str:
        content = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v != "")
        signature = self.private_key.sign(content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode()

    def call(self, method: str, params: dict[str, str] | None = None,
             biz: dict[str, Any] | None = None) -> dict[str, Any]:
        form = {"app_id": self.app_id, "method": method, "format": "JSON", "charset": "utf-8", "sign_type": "RSA2",
                "timestamp": dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S"), "version": "1.0", **(params or {})}
        if biz is not None:
            form["biz_content"] = json.dumps(biz, ensure_ascii=False, separators=(",", ":"))
        form["sign"] = self.sign(form)
        request = urllib.request.Request(self.url, data=urllib.parse.urlencode(form).encode(), method="POST",
                                         headers={"content-type": "application/x-www-form-urlencoded;charset=utf-8"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read().decode("utf-8")
        except (OSError, ValueError) as err:
            raise PlatformUnavailable(f"{method}: the open platform at {self.url} does not answer: {err}") from None
        answer = self.verified(method, text)
        if str(answer.get("code")) != "10000":
            raise PlatformRefused(answer)
        return answer

    def verified(self, method: str, text: str) -> dict[str, Any]:
        name = re.escape(method.replace(".", "_") + "_response")
        key = re.search(rf'"({name}|error_response)"\s*:\s*', text)
        sign = re.search(r',\s*"sign"\s*:\s*"([^"]+)"\s*}\s*$', text)
        if not key or not sign:
            raise PlatformUnavailable(f"{method}: the open platform's answer has no signed response object")
        content = text[key.end():sign.start()]
        try:
            self.platform_key.verify(base64.b64decode(sign.group(1)), content.encode("utf-8"), padding.PKCS1v15(),
                                     hashes.SHA256())
            answer = json.loads(content)
        except (InvalidSignature, ValueError, binascii.Error):
            raise PlatformUnavailable(f"{method}: the open platform's answer does not verify with its key") from None
        if not isinstance(answer, dict):
            raise PlatformUnavailable(f"{method}: the open platform's answer is not an object")
        return answer


# ------------------------------------------------------------------ identities and signatures
@dataclass(frozen=True)
class Identity:
    kind: str  # "session" | "server"
    uid: str | None

    @property
    def server(self) -> bool:
        return self.kind == "server"

    @property
    def auth(self) -> dict[str, Any]:
        return {"uid": self.uid}


@dataclass(frozen=True)
class Session:
    id: str
    secret: bytes
    uid: str
    expires_at: int


class Nonces:
    """Nonces seen in the last 2×CLOCK_WINDOW seconds (a request may be stamped up to CLOCK_WINDOW ahead)."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._order: collections.deque[tuple[float, str]] = collections.deque()
        self._lock = threading.Lock()

    def first_use(self, nonce: str, now: float) -> bool:
        nonce = nonce.lower()
        with self._lock:
            while self._order and self._order[0][0] <= now:
                expires, old = self._order.popleft()
                if self._seen.get(old) == expires:
                    del self._seen[old]
            if nonce in self._seen:
                return False
            expires = now + 2 * CLOCK_WINDOW
            self._seen[nonce] = expires
            self._order.append((expires, nonce))
            return True


def signature(secret: bytes, method: str, path_with_query: str, timestamp: str, nonce: str, body: bytes) -> str:
    """base64(HMAC-SHA256(secret, METHOD \\n PATH_WITH_QUERY \\n TIMESTAMP \\n NONCE \\n hex(SHA-256(body))))."""
    text = "\n".join([method, path_with_query, timestamp, nonce, hashlib.sha256(body).hexdigest()])
    return base64.b64encode(hmac.new(secret, text.encode("utf-8"), hashlib.sha256).digest()).decode()


# ------------------------------------------------------------------ files
def sniff(data: bytes) -> str:
    """The content type of `data` by its first bytes (png, jpeg, gif, pdf, webp, zip), else JSON or
    UTF-8 text when it parses as such, else application/octet-stream."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return "application/zip"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    if CONTROL_CHARS.search(text):
        return "application/octet-stream"
    if text.strip()[:1] in ("{", "["):
        with contextlib.suppress(ValueError):
            json.loads(text)
            return "application/json"
    return "text/plain;charset=utf-8"


def is_text(content_type: str) -> bool:
    return content_type.startswith("text/") or content_type == "application/json"


def check_file_path(path: Any, where: str) -> str:
    """A cloud path: relative, `/`-separated names, none empty, `.`/`..` or hidden; at most 1024 chars."""
    if not isinstance(path, str) or not path:
        raise bad_request(f"{where} must name the file's cloud path, e.g. avatars/u1.png", "invalid_path")
    if len(path) > 1024 or path.startswith("/") or "\\" in path or any(ord(c) < 32 for c in path):
        raise bad_request(f"{where} is not a relative cloud path of at most 1024 characters: {path[:80]!r}",
                          "invalid_path")
    for part in path.split("/"):
        if not part or part.startswith("."):
            raise bad_request(f"{where} has an empty, '.', '..' or hidden segment: {path!r}", "invalid_path")
    return path


# ------------------------------------------------------------------ the service
class DataApi:
    """What the HTTP handler calls: one method per route; each answers a JSON value or raises ApiError."""

    def __init__(self, config: Config, dsn: str, pool_size: int = 8, clock: Callable[[], float] = time.time,
                 platform: OpenPlatform | None = None) -> None:
        self.config = config
        self.pool = Pool(dsn, pool_size)
        self.clock = clock
        self.nonces = Nonces()
        self.sessions: dict[str, Session] = {}  # a cache: a session never changes once made
        self.sessions_lock = threading.Lock()
        self.stores: weakref.WeakKeyDictionary[psycopg.Connection, DocStore] = weakref.WeakKeyDictionary()
        self.stores_lock = threading.Lock()
        self.rules = {name: {op: data_rules.parse(text if isinstance(text, str) else json.dumps(text),
                                                  f"collections.{name}.{op}")
                             for op, text in ops.items() if op in ("read", "write") and text is not None}
                      for name, ops in config.collections.items()}
        self.platform = platform
        if platform is None and config.sandbox:
            sb = config.sandbox
            self.platform = OpenPlatform(sb["url"], sb["app_id"], sb["private_key_path"],
                                         sb["platform_public_key_path"])
        self.files_dir = config.files_dir
        self.max_file_bytes = int(config.max_file_mb * 2**20)

    def install(self) -> None:
        """The data API's tables and the DocStore's; idempotent."""
        with self.pool.connection() as conn:
            conn.execute(SCHEMA_SQL)
        self._store(lambda store: store.install())
        self.files_dir.mkdir(parents=True, exist_ok=True)

    # ---- identity
    def create_session(self, body: dict[str, Any]) -> dict[str, Any]:
        code = body.get("code")
        if not isinstance(code, str) or not code:
            raise bad_request("code must be the auth code from my.getAuthCode (a non-empty string)")
        if self.platform is None:
            raise ApiError(503, "no_open_platform", "this env's data API has no open platform to trade auth codes")
        try:
            answer = self.platform.call("alipay.system.oauth.token", {"grant_type": "authorization_code",
                                                                      "code": code})
        except PlatformRefused as err:
            if err.sub_code in ("isv.code-invalid", "isv.code-time-out"):
                raise ApiError(401, "invalid_auth_code",
                               "code is not a valid auth code (unknown, used or expired); get a new one") from None
            raise ApiError(502, "open_platform_refused",
                           f"the open platform refused alipay.system.oauth.token: {err}") from None
        except PlatformUnavailable as err:
            raise ApiError(502, "open_platform_unavailable", str(err)) from None
        uid = answer.get("user_id")
        if not isinstance(uid, str) or not uid:
            raise ApiError(502, "open_platform_refused", "the open platform's answer carries no user_id")
        now = int(self.clock())
        session = Session(secrets.token_hex(16), secrets.token_bytes(32), uid, now + self.config.session_ttl)
        with self.pool.connection() as conn:
            conn.execute(f"DELETE FROM {META_SCHEMA}.sessions WHERE expires_at < %s", (now - 86400,))
            conn.execute(f"INSERT INTO {META_SCHEMA}.sessions (id, secret, uid, expires_at) VALUES (%s, %s, %s, %s)",
                         (session.id, base64.b64encode(session.secret).decode(), uid, session.expires_at))
        self._remember(session)
        return {"session": session.id, "secret": base64.b64encode(session.secret).decode(), "uid": uid,
                "expires_at": session.expires_at}

    def _remember(self, session: Session) -> None:
        with self.sessions_lock:
            if len(self.sessions) > 50000:
                self.sessions.clear()
            self.sessions[session.id] = session

    def session(self, session_id: str) -> Session | None:
        with self.sessions_lock:
            found = self.sessions.get(session_id)
        if found is not None:
            return found
        with self.pool.connection() as conn:
            row = conn.execute(f"SELECT secret, uid, expires_at FROM {META_SCHEMA}.sessions WHERE id = %s",
                               (session_id,)).fetchone()
        if row is None:
            return None
        found = Session(session_id, base64.b64decode(row[0]), row[1], int(row[2]))
        self._remember(found)
        return found

    def authenticate(self, headers: Any, method: str, path_with_query: str, body: bytes) -> Identity:
        session_id, server_key = headers.get("x-cloud-session"), headers.get("x-cloud-server-key")
        if not session_id and not server_key:
            raise ApiError(401, "no_session", "the request carries neither X-Cloud-Session nor X-Cloud-Server-Key")
        timestamp, nonce = headers.get("x-cloud-timestamp") or "", headers.get("x-cloud-nonce") or ""
        given = headers.get("x-cloud-signature") or ""
        now = self.clock()
        if not timestamp.isdigit():
            raise ApiError(401, "stale_timestamp", "X-Cloud-Timestamp must be the request's time in unix seconds")
        if abs(int(timestamp) - now) > CLOCK_WINDOW:
            raise ApiError(401, "stale_timestamp",
                           f"X-Cloud-Timestamp is more than {CLOCK_WINDOW} s off the server's clock")
        if not NONCE_SHAPE.fullmatch(nonce):
            raise ApiError(401, "bad_signature", "X-Cloud-Nonce must be 16 to 128 random hex characters")
        behalf = headers.get("x-cloud-on-behalf-of")
        if session_id:
            session = self.session(session_id)
            if session is None:
                raise ApiError(401, "session_expired", "X-Cloud-Session names no live session; log in again")
            if session.expires_at <= now:
                raise ApiError(401, "session_expired", "the session of X-Cloud-Session has expired; log in again")
            secret, identity = session.secret, Identity("session", session.uid)
        else:
            if not hmac.compare_digest(server_key.encode(), self.config.server_key.encode()):
                raise ApiError(401, "bad_signature", "X-Cloud-Server-Key is not this env's server key")
            secret, identity = self.config.server_secret.encode(), Identity("server", None)
        expected = signature(secret, method, path_with_query, timestamp, nonce, body)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise ApiError(401, "bad_signature", "X-Cloud-Signature does not match the request and the secret")
        if not self.nonces.first_use(nonce, now):
            raise ApiError(401, "replayed_nonce", "X-Cloud-Nonce was used in the last 300 s: sign each request anew")
        if behalf:
            if not identity.server:
                raise ApiError(403, "denied", "X-Cloud-On-Behalf-Of is for the server credential only")
            if not USER_ID_SHAPE.fullmatch(behalf):
                raise bad_request(f"X-Cloud-On-Behalf-Of must be a user id (16 digits starting 2088): {behalf!r}")
            identity = Identity("server", behalf)
        return identity

    # ---- documents
    def _rule(self, who: Identity, collection: str, op: str) -> Any:
        """The rule that applies: None for the server; a session with no rule for `op` is refused."""
        if who.server:
            return None
        rule = self.rules.get(collection, {}).get(op)
        if rule is None:
            raise ApiError(403, "denied", f"collection {collection!r} has no {op} rule (collections.{collection}."
                           f"{op}): only the server credential may {op} it")
        return rule

    def _store(self, step: Callable[[DocStore], Any]) -> Any:
        """Run `step` on the DocStore of a pooled connection (one per connection: it caches what it knows)."""
        with self.pool.connection() as conn:
            with self.stores_lock:
                store = self.stores.get(conn)
                if store is None:
                    store = self.stores[conn] = DocStore(conn)
            return step(store)

    def collections(self, who: Identity) -> dict[str, Any]:
        found = self._store(lambda store: store.collections())
        if not who.server:  # a front end sees the collections it may read, with the counts it may see
            found = [{"name": c["name"], "count": self.count(who, c["name"], {})["total"]}
                     for c in found if self.rules.get(c["name"], {}).get("read") is not None]
        return {"collections": found}

    def schema(self, who: Identity, sample: int) -> dict[str, Any]:
        """Every collection with its count and the fields of its newest `sample` documents (dotted path ->
        JSON type): what the editor completes and checks queries with. The server credential only."""
        if not who.server:
            raise ApiError(403, "denied", "the schema needs the server credential (X-Cloud-Server-Key)")
        found = self._store(lambda store: [{**c, "fields": store.sample_fields(c["name"], sample)}
                                           for c in store.collections()])
        return {"collections": found, "sampled": sample}

    def find(self, who: Identity, collection: str, body: dict[str, Any]) -> dict[str, Any]:
        filter_, projection = _object(body, "filter"), _object(body, "projection", None)
        sort = body.get("sort")
        if sort is not None and not isinstance(sort, list | dict):
            raise bad_request("sort must be a list of [field, 1 | -1] pairs")
        skip = _integer(body, "skip", 0, 0, 10**9)
        limit = _integer(body, "limit", 100, 1, MAX_LIMIT)
        rule = self._rule(who, collection, "read")
        data = self._store(lambda s: s.find(collection, filter_, projection=projection, sort=sort, skip=skip,
                                            limit=limit, **self._rule_args(rule, who)))
        return {"data": data}

    def count(self, who: Identity, collection: str, body: dict[str, Any]) -> dict[str, Any]:
        filter_ = _object(body, "filter")
        rule = self._rule(who, collection, "read")
        return {"total": self._store(lambda s: s.count(collection, filter_, **self._rule_args(rule, who)))}

    def add(self, who: Identity, collection: str, body: dict[str, Any]) -> dict[str, Any]:
        data = body.get("data")
        docs = data if isinstance(data, list) else [data]
        if not docs or not all(isinstance(d, dict) for d in docs):
            raise bad_request("data must be a document (a JSON object) or a non-empty list of them")
        rule = self._rule(who, collection, "write")
        ids = self._store(lambda s: s.add(collection, docs, who.uid, **self._rule_args(rule, who)))
        return {"ids": ids}

    def update(self, who: Identity, collection: str, body: dict[str, Any]) -> dict[str, Any]:
        filter_, update = _object(body, "filter"), _object(body, "update", None)
        if not update:
            raise bad_request("update must be a non-empty object, e.g. {\"$set\": {\"field\": value}}")
        multi = _boolean(body, "multi", True)
        rule = self._rule(who, collection, "write")
        return {"updated": self._store(lambda s: s.update(collection, filter_, update, multi=multi,
                                                          **self._rule_args(rule, who)))}

    def remove(self, who: Identity, collection: str, body: dict[str, Any]) -> dict[str, Any]:
        filter_ = _object(body, "filter")
        multi = _boolean(body, "multi", True)
        rule = self._rule(who, collection, "write")
        return {"removed": self._store(lambda s: s.remove(collection, filter_, multi=multi,
                                                          **self._rule_args(rule, who)))}

    @staticmethod
    def _rule_args(rule: Any, who: Identity) -> dict[str, Any]:
        return {} if rule is None else {"rule": rule, "auth": who.auth}

    # ---- files
    def file_id(self, path: str) -> str:
        return f"cloud://{self.config.env}/{path}"

    def path_of(self, file_id: Any, where: str) -> str:
        prefix = f"cloud://{self.config.env}/"
        if not isinstance(file_id, str) or not file_id.startswith(prefix):
            raise bad_request(f"{where} must be a fileID of this env ({prefix}PATH): {str(file_id)[:120]!r}",
                              "invalid_path")
        return check_file_path(file_id[len(prefix):], where)

    def _meta(self, path: str) -> tuple | None:
        with self.pool.connection() as conn:
            return conn.execute(f"SELECT size, content_type, owner, created FROM {META_SCHEMA}.files WHERE path = %s",
                                (path,)).fetchone()

    def upload(self, who: Identity, path: str, data: bytes) -> dict[str, Any]:
        content_type = sniff(data)
        self.scan(data, content_type)
        existing = self._meta(path)
        if existing is not None and not who.server and existing[2] != who.uid:
            raise ApiError(403, "denied", f"path {path!r} holds another user's file")
        target = self.files_dir / path
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.part")
            temporary.write_bytes(data)
            os.replace(temporary, target)
        except (NotADirectoryError, IsADirectoryError, FileExistsError):
            with contextlib.suppress(OSError, UnboundLocalError):
                temporary.unlink()
            raise ApiError(409, "path_conflict", f"path {path!r} crosses an existing file or folder") from None
        with self.pool.connection() as conn:
            conn.execute(f"INSERT INTO {META_SCHEMA}.files (path, size, content_type, owner, created) "
                         "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (path) DO UPDATE SET size = EXCLUDED.size, "
                         "content_type = EXCLUDED.content_type, owner = EXCLUDED.owner, created = EXCLUDED.created",
                         (path, len(data), content_type, who.uid, self.clock()))
        return {"fileID": self.file_id(path), "size": len(data), "contentType": content_type}

    def scan(self, data: bytes, content_type: str) -> None:
        """Refuse (422) what the env's checks reject; a check that cannot be made refuses too (503)."""
        if is_text(content_type):
            if self.platform is None:
                raise ApiError(503, "scan_unavailable", "text needs the content check of the open platform, "
                                                        "and this env's data API has none")
            text = data.decode("utf-8")
            step = DETECT_CHUNK - DETECT_OVERLAP
            for start in range(0, max(len(text), 1), step):
                chunk = text[start:start + DETECT_CHUNK]
                if not chunk.strip():
                    continue
                try:
                    answer = self.platform.call("alipay.security.risk.content.detect", biz={"content": chunk})
                except PlatformRefused as err:
                    raise ApiError(503, "scan_unavailable",
                                   f"the content check (alipay.security.risk.content.detect) refused: {err}") from None
                except PlatformUnavailable as err:
                    raise ApiError(503, "scan_unavailable", str(err)) from None
                if answer.get("action") != "PASSED":
                    words = ", ".join(str(w) for w in answer.get("keywords") or []) or "unnamed"
                    raise ApiError(422, "rejected", f"the content check rejected the text (words: {words})")
        if self.config.scanner_url:
            request = urllib.request.Request(self.config.scanner_url, data=data, method="POST",
                                             headers={"content-type": content_type})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    verdict = json.loads(response.read())
            except (OSError, ValueError) as err:
                raise ApiError(503, "scan_unavailable", f"the scanner at scanner_url does not answer: {err}") from None
            if not isinstance(verdict, dict) or "ok" not in verdict:
                raise ApiError(503, "scan_unavailable", "the scanner's answer is not {\"ok\": …}")
            if verdict["ok"] is not True:
                raise ApiError(422, "rejected", f"the scanner rejected the file: {verdict.get('reason') or 'no reason'}")

    def _temp_signature(self, path: str, expires: int) -> str:
        mac = hmac.new(self.config.server_secret.encode(), f"{path}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def temp_urls(self, who: Identity, body: dict[str, Any]) -> dict[str, Any]:
        files = _file_list(body)
        max_age = _integer(body, "maxAge", 3600, 1, MAX_TEMP_URL_AGE)
        answers = []
        for i, file_id in enumerate(files):
            path = self.path_of(file_id, f"fileList[{i}]")
            if self._meta(path) is None:
                answers.append({"fileID": file_id, "tempFileURL": "", "maxAge": max_age, "status": -1,
                                "errMsg": "no such file"})
                continue
            expires = int(self.clock()) + max_age
            url = (f"{self.config.public_url}{PREFIX}/files/get/{urllib.parse.quote(path)}"
                   f"?expires={expires}&sig={self._temp_signature(path, expires)}")
            answers.append({"fileID": file_id, "tempFileURL": url, "maxAge": max_age, "status": 0})
        return {"fileList": answers}

    def open_temp(self, path: str, query: dict[str, str]) -> tuple[Path, str, int]:
        """The file a temporary URL names, its content type and size; 403 when expired or not signed."""
        expires, sig = query.get("expires", ""), query.get("sig", "")
        if not expires.isdigit() or not hmac.compare_digest(sig.encode(),
                                                            self._temp_signature(path, int(expires)).encode()):
            raise ApiError(403, "bad_signature", "the URL's sig does not match its path and expires")
        if int(expires) < self.clock():
            raise ApiError(403, "expired", "the temporary URL has expired (expires); ask for a new one")
        meta = self._meta(path)
        target = self.files_dir / path
        if meta is None or not target.is_file():
            raise ApiError(404, "not_found", f"no file at path {path!r}")
        return target, meta[1], target.stat().st_size

    def delete(self, who: Identity, body: dict[str, Any]) -> dict[str, Any]:
        answers = []
        for i, file_id in enumerate(_file_list(body)):
            path = self.path_of(file_id, f"fileList[{i}]")
            with self.pool.connection() as conn:
                if who.server:
                    row = conn.execute(f"DELETE FROM {META_SCHEMA}.files WHERE path = %s RETURNING path",
                                       (path,)).fetchone()
                else:
                    row = conn.execute(f"DELETE FROM {META_SCHEMA}.files WHERE path = %s AND owner = %s "
                                       "RETURNING path", (path, who.uid)).fetchone()
                    if row is None and conn.execute(f"SELECT 1 FROM {META_SCHEMA}.files WHERE path = %s",
                                                    (path,)).fetchone():
                        answers.append({"fileID": file_id, "status": -1, "errMsg": "denied: another user's file"})
                        continue
            if row is None:
                answers.append({"fileID": file_id, "status": -1, "errMsg": "no such file"})
                continue
            with contextlib.suppress(FileNotFoundError):
                (self.files_dir / path).unlink()
            answers.append({"fileID": file_id, "status": 0})
        return {"fileList": answers}

    def list_files(self, who: Identity, prefix: str) -> dict[str, Any]:
        if not who.server:
            raise ApiError(403, "denied", "listing files needs the server credential (X-Cloud-Server-Key)")
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self.pool.connection() as conn:
            rows = conn.execute(f"SELECT path, size, content_type, created FROM {META_SCHEMA}.files "
                                "WHERE path LIKE %s ORDER BY path LIMIT %s", (pattern, MAX_LIMIT + 1)).fetchall()
        files = [{"fileID": self.file_id(p), "size": size, "contentType": ct, "created": int(created)}
                 for p, size, ct, created in rows[:MAX_LIMIT]]
        return {"files": files, "truncated": len(rows) > MAX_LIMIT}

    # ---- functions
    def invoke(self, who: Identity, name: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not NAME_SHAPE.fullmatch(name):
            raise bad_request(f"the function name in the path must be letters, digits, _ or -: {name[:80]!r}")
        if not self.config.functions_url:
            raise ApiError(404, "no_functions", "this env has no functions (functions_url is not set)")
        event = json.dumps({"data": body.get("data"), "auth": who.auth}).encode()
        request = urllib.request.Request(f"{self.config.functions_url.rstrip('/')}/{name}", data=event, method="POST",
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=FUNCTION_TIMEOUT) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        except (OSError, ValueError) as err:
            raise ApiError(502, "functions_unavailable", f"the functions of this env do not answer: {err}") from None
        try:
            answer = json.loads(raw) if raw.strip() else None
        except ValueError:
            raise ApiError(502, "functions_unavailable", f"function {name} answered {status} with no JSON") from None
        if status == 200:
            return 200, {"result": answer}
        error = answer.get("error") if isinstance(answer, dict) else None
        if not isinstance(error, dict):
            error = {"message": f"function {name} answered {status}"}
        kind = str(error.get("code") or error.get("type") or "function_error")
        code = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", kind).lower()
        return status, {"error": {**error, "code": code, "message": str(error.get("message") or kind)}}


# ------------------------------------------------------------------ request bodies
def _object(body: dict[str, Any], name: str, default: Any = ...) -> Any:
    value = body.get(name, {} if default is ... else default)
    if value is None and default is None:
        return None
    if not isinstance(value, dict):
        raise bad_request(f"{name} must be a JSON object")
    return value


def _integer(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad_request(f"{name} must be an integer from {low} to {high}, not {json.dumps(value)[:40]}")
    return value


def _boolean(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be true or false")
    return value


def _file_list(body: dict[str, Any]) -> list[Any]:
    files = body.get("fileList")
    if not isinstance(files, list) or not files or len(files) > MAX_LIMIT:
        raise bad_request(f"fileList must be a list of 1 to {MAX_LIMIT} fileIDs")
    return files


# ------------------------------------------------------------------ HTTP
DRAIN_LIMIT = 64 * 2**20  # a refused body up to this size is read (and dropped) before the answer
DOCUMENT_ROUTE = re.compile(r"/db/([^/]+)/(find|count|add|update|remove)")


MAX_HEADERS, MAX_LINE = 100, 65536
SINGLE_HEADERS = ("content-length", "transfer-encoding", "host")  # twice is a malformed (or smuggled) request


class RequestHeaders(dict):
    """A request's header fields by lower-case name; a repeated field's values joined by ", "."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> Any:
        return super().get(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


class Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with kept-alive connections (the gateway pools them). The request line and headers are read
    here rather than by the standard library's email parser, and an answer is one write: on the find path
    the two cost a fifth of the server's time."""

    api: DataApi  # set on the subclass made by serve()
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle kept-alive connection gives its pool thread back after this
    disable_nagle_algorithm = True  # a streamed file is several writes: no 40 ms wait on a kept-alive connection

    def parse_request(self) -> bool:
        self.command, self.request_version, self.close_connection = None, "HTTP/1.0", True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3 or words[2] not in ("HTTP/1.1", "HTTP/1.0"):
            self.send_error(400, f"not an HTTP/1.x request line: {self.requestline[:100]!r}")
            return False
        self.command, self.path, self.request_version = words
        if self.path.startswith("//"):  # as the standard library: never read as a host by a client
            self.path = "/" + self.path.lstrip("/")
        headers = RequestHeaders()
        for _ in range(MAX_HEADERS + 1):
            line = self.rfile.readline(MAX_LINE + 1)
            if line in (b"\r\n", b"\n", b""):
                break
            name, colon, value = str(line, "iso-8859-1").partition(":")
            name = name.lower()
            if len(line) > MAX_LINE or not colon or not name or name != name.strip() or line[:1] in b" \t":
                self.send_error(400, f"a malformed header line: {line[:100]!r}")
                return False
            value = value.strip()
            if name in headers:
                if name in SINGLE_HEADERS:
                    self.send_error(400, f"{name} is given twice")
                    return False
                value = f"{dict.get(headers, name)}, {value}"
            dict.__setitem__(headers, name, value)
        else:
            self.send_error(431, f"more than {MAX_HEADERS} header fields")
            return False
        self.headers = headers  # type: ignore[assignment] - read with .get(name) as the stdlib's
        connection = headers.get("connection", "").lower()
        self.close_connection = connection == "close" or (self.request_version == "HTTP/1.0"
                                                          and connection != "keep-alive")
        if headers.get("expect", "").lower() == "100-continue" and self.request_version == "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def log_message(self, format: str, *args: Any) -> None:  # our own line per request
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _send(self, status: int, body: bytes, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        head = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}", f"date: {self.date_time_string()}",
                f"content-type: {content_type}", f"content-length: {len(body)}",
                *(f"{k}: {v}" for k, v in (headers or {}).items())]
        if self.close_connection:
            head.append("connection: close")
        self.wfile.write("\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":")).encode())

    def _handle(self, verb: str) -> None:
        started = time.perf_counter()
        split = urllib.parse.urlsplit(self.path)
        route = split.path[len("/cloud"):] if split.path.startswith("/cloud/") else split.path
        self.uid: str | None = None
        self.body_read = False
        status = 500
        try:
            status = self._dispatch(verb, route, split)
        except ApiError as err:
            status = err.status
            if not self.body_read and self.headers.get("content-length", "0") not in ("", "0"):
                self.close_connection = True  # answered before the body was read: the connection is spent
            self._json(status, err.body())
        except QueryError as err:
            status = 400
            self._json(status, {"error": {"code": err.code, "message": str(err)}})
        except Denied as err:
            status = 403
            self._json(status, {"error": {"code": "denied", "message": str(err)}})
        except psycopg.OperationalError as err:
            status = 503
            log(f"database unavailable on {verb} {split.path}: {' '.join(str(err).split())[:200]}")
            self._json(status, {"error": {"code": "db_unavailable", "message": "the database does not answer"}})
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as err:  # noqa: BLE001 - a bug answers 500 and is logged, the server lives on
            status = 500
            log(f"internal error on {verb} {split.path}: {type(err).__name__}: {err}")
            with contextlib.suppress(OSError):
                self._json(status, {"error": {"code": "internal", "message": "internal error (see the data API's log)"}})
        ms = (time.perf_counter() - started) * 1000
        log(f"{verb} {split.path} {status} {ms:.1f}ms uid={self.uid or '-'}")

    def _length(self, limit: int) -> int:
        if self.headers.get("transfer-encoding"):
            raise ApiError(411, "length_required", "send the body with a Content-Length (no chunked encoding)")
        try:
            length = int(self.headers.get("content-length") or 0)
        except ValueError:
            raise ApiError(411, "length_required", "Content-Length is not a number") from None
        if length > limit:
            if length <= DRAIN_LIMIT:
                self._discard(length)
            raise ApiError(413, "too_large", f"the body is {length} bytes; at most {limit} are taken")
        return length

    def _discard(self, length: int) -> None:
        """Read a refused body and drop it. A server that answers and closes while the gateway still sends
        the body resets the connection, and the client gets the gateway's 502 instead of the answer."""
        while length > 0 and (chunk := self.rfile.read(min(2**16, length))):
            length -= len(chunk)
        self.body_read = True

    def _body(self, limit: int = MAX_JSON_BODY) -> bytes:
        length = self._length(limit)
        raw = self.rfile.read(length) if length else b""
        self.body_read = True
        return raw

    @staticmethod
    def _parse(raw: bytes) -> dict[str, Any]:
        if not raw.strip():
            return {}
        try:
            value = json.loads(raw)
        except ValueError as err:
            raise bad_request(f"the body is not JSON: {err}", "invalid_json") from None
        if not isinstance(value, dict):
            raise bad_request("the body must be a JSON object", "invalid_json")
        return value

    def _who(self, verb: str, split: urllib.parse.SplitResult, raw: bytes) -> Identity:
        path = split.path if split.path.startswith("/cloud/") else "/cloud" + split.path
        path_with_query = path + (f"?{split.query}" if split.query else "")
        who = self.api.authenticate(self.headers, verb, path_with_query, raw)
        self.uid = who.uid or ("server" if who.server else None)
        return who

    def _dispatch(self, verb: str, route: str, split: urllib.parse.SplitResult) -> int:
        api = self.api
        if route == "/_data/health" or route == "/v1/health":
            with api.pool.connection() as conn:
                conn.execute("SELECT 1")
            self._json(200, {"ok": True})
            return 200
        if not route.startswith("/v1/"):
            raise ApiError(404, "not_found", f"no route {split.path}; the data API is under {PREFIX}/")
        route = route[len("/v1"):]
        query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
        if route == "/auth/session" and verb == "POST":
            session = api.create_session(self._parse(self._body()))
            self.uid = session["uid"]
            return self._answer(200, session)
        if route.startswith("/files/get/") and verb == "GET":
            path = check_file_path(urllib.parse.unquote(route[len("/files/get/"):]), "the URL's path")
            target, content_type, size = api.open_temp(path, query)
            self.send_response(200)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(size))
            self.send_header("x-content-type-options", "nosniff")
            self.send_header("cache-control", "private, max-age=60")
            self.end_headers()
            with target.open("rb") as f:
                while chunk := f.read(2**16):
                    self.wfile.write(chunk)
            return 200
        if route == "/files" and verb == "POST":
            path = check_file_path(query.get("path"), "path")
            raw = self._body(api.max_file_bytes)
            who = self._who(verb, split, raw)
            return self._answer(200, api.upload(who, path, raw))
        raw = self._body()
        who = self._who(verb, split, raw)
        if route == "/files" and verb == "GET":
            return self._answer(200, api.list_files(who, query.get("prefix", "")))
        if route == "/db" and verb == "GET":
            return self._answer(200, api.collections(who))
        if route == "/db/schema" and verb == "GET":
            sample = query.get("sample", "200")
            if not sample.isdigit():
                raise bad_request(f"sample must be an integer from 1 to 1000, not {sample[:20]!r}")
            return self._answer(200, api.schema(who, _integer({"sample": int(sample)}, "sample", 200, 1, 1000)))
        if verb != "POST":
            raise ApiError(405, "method_not_allowed", f"{verb} {split.path}: use POST")
        body = self._parse(raw)
        if route == "/files/temp-url":
            return self._answer(200, api.temp_urls(who, body))
        if route == "/files/delete":
            return self._answer(200, api.delete(who, body))
        if route.startswith("/functions/"):
            return self._answer(*api.invoke(who, route[len("/functions/"):], body))
        documents = DOCUMENT_ROUTE.fullmatch(route)
        if documents:
            collection, op = urllib.parse.unquote(documents.group(1)), documents.group(2)
            return self._answer(200, getattr(api, op)(who, collection, body))
        raise ApiError(404, "not_found", f"no route POST {split.path}")

    def _answer(self, status: int, value: Any) -> int:
        self._json(status, value)
        return status


class Server(ThreadingHTTPServer):
    """Connections served by a pool of threads: the gateway opens one per request, and starting a
    thread for each cost a third of a request's time."""

    daemon_threads = True
    request_queue_size = 128  # a burst of new connections waits in the backlog, not refused
    workers = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="data")

    def process_request(self, request: Any, client_address: Any) -> None:
        self.pool.submit(self.process_request_thread, request, client_address)

    def server_close(self) -> None:
        super().server_close()
        self.pool.shutdown(wait=False, cancel_futures=True)


def serve(api: DataApi, host: str, port: int) -> ThreadingHTTPServer:
    return Server((host, port), type("BoundHandler", (Handler,), {"api": api}))


def main(argv: list[str] | None = None) -> int:
    dsn, config_path = os.environ.get("DATA_DSN"), os.environ.get("DATA_CONFIG")
    if not dsn or not config_path:
        print("data: DATA_DSN and DATA_CONFIG must be set", file=sys.stderr)
        return 2
    try:
        config = Config.load(Path(config_path))
        api = DataApi(config, dsn, pool_size=int(os.environ.get("DATA_POOL_SIZE") or 8))
    except (ValueError, OSError) as err:
        print(f"data: {err}", file=sys.stderr)
        return 2
    installed = threading.Event()
    last_said = 0.0
    while not installed.is_set():  # the database may start after us

        def install() -> None:
            api.install()
            installed.set()

        def say(text: str) -> None:
            nonlocal last_said
            if time.monotonic() - last_said > 5:
                last_said = time.monotonic()
                log(f"waiting for the database: {' '.join(text.split())[:200]}")

        survive(install, say)
        if not installed.is_set():
            time.sleep(0.5)
    port = int(os.environ.get("PORT") or 8080)
    server = serve(api, "0.0.0.0", port)
    log(f"data API of {config.app}/{config.env} on :{port}; collections with rules: "
        f"{', '.join(sorted(api.rules)) or 'none'}")
    # `docker stop`: leave through SystemExit, so that the log lines still waiting are written (atexit)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
