"""The data API (docs/data-api.md) end to end: its server in-process on 127.0.0.1, a real PostgreSQL in a
container (the postgres recipe), a real sandbox open platform (in-process) for auth codes and the
content check, and local stand-ins for the scanner and the functions scheduler.

Every test gets its own database, files folder and server; the PostgreSQL container is shared by the
module and removed after it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import secrets
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from codegen.abilities import grant
from codegen.keys import ensure_env_keys

from .test_sandbox_oauth import Sandbox, post_json, start_sandbox

pytestmark = pytest.mark.docker
psycopg = pytest.importorskip("psycopg")
data_api = pytest.importorskip("deploy_bridge.services.data_api")

OWNER_RULE = "doc._owner == auth.uid"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(64))


# ------------------------------------------------------------------ PostgreSQL, the sandbox, stand-ins
def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            value = check()
            if value:
                return value
        assert time.monotonic() < deadline, f"{what} within {timeout}s"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def postgres(docker_engine) -> Iterator[str]:
    """A PostgreSQL server (the postgres recipe) on a random local port; its admin conninfo."""
    from deploy_bridge.images import ensure_recipe

    image = ensure_recipe(docker_engine, "postgres")
    password = secrets.token_hex(12)
    container = docker_engine.containers.run(
        image, detach=True, environment={"POSTGRES_PASSWORD": password, "POSTGRES_DB": "postgres"},
        ports={"5432/tcp": ("127.0.0.1", None)}, labels={"minicloud.test": f"dataapi-{uuid.uuid4().hex[:8]}"})
    try:
        def port() -> str | None:
            container.reload()
            assert container.status != "exited", container.logs().decode()[-2000:]
            bound = (container.attrs["NetworkSettings"]["Ports"] or {}).get("5432/tcp")
            return bound[0]["HostPort"] if bound else None

        dsn = f"host=127.0.0.1 port={wait_for(port, 30, 'the published port')} user=postgres password={password}"
        wait_for(lambda: psycopg.connect(dsn + " dbname=postgres", connect_timeout=2).close() or True, 60,
                 "PostgreSQL accepts connections")
        yield dsn
    finally:
        container.remove(force=True, v=True)


@pytest.fixture
def database(postgres) -> Iterator[str]:
    """A database of this test's own; its conninfo."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres + " dbname=postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{postgres} dbname={name}"
    with psycopg.connect(postgres + " dbname=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data-ws")
    ensure_env_keys(folder, "test")
    grant(folder, "test", ["小程序授权", "内容安全"])
    return folder


@pytest.fixture(scope="module")
def sandbox(workspace) -> Iterator[Sandbox]:
    box, server = start_sandbox(workspace, workspace / "abilities")
    yield box
    server.shutdown()
    server.server_close()


class Recorder(BaseHTTPRequestHandler):
    """A stand-in for the scanner (rejects bytes holding EICAR) and the functions scheduler (echoes)."""

    protocol_version = "HTTP/1.1"
    seen: list

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.seen.append((self.path, self.headers.get("content-type"), raw))
        if self.path == "/scan":
            answer: Any = {"ok": b"EICAR" not in raw, "reason": "test signature EICAR found"}
            status = 200
        elif self.path == "/fn/fails":
            status, answer = 500, {"error": {"type": "FunctionError", "message": "boom"}}
        else:
            status, answer = 200, {"echo": json.loads(raw), "fn": self.path}
        body = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def stand_in() -> Iterator[tuple[str, list]]:
    seen: list = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Bound", (Recorder,), {"seen": seen}))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


# ------------------------------------------------------------------ the data API and its clients
@dataclass
class Running:
    api: Any  # data_api.DataApi
    port: int
    config: Any
    dsn: str
    clock_offset: float = 0.0
    servers: list = field(default_factory=list)

    def now(self) -> float:
        return time.time() + self.clock_offset


def start_data_api(config: Any, dsn: str, platform: Any = None) -> tuple[Any, ThreadingHTTPServer]:
    api = data_api.DataApi(config, dsn, pool_size=4, platform=platform)
    api.install()
    server = data_api.serve(api, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return api, server


@pytest.fixture
def make_data(database, workspace, sandbox, stand_in, tmp_path) -> Iterator[Callable[..., Running]]:
    """A data API for this test's database, with the collections' rules and options given."""
    keys = ensure_env_keys(workspace, "test")
    started: list[Running] = []

    def make(collections: dict | None = None, **options: Any) -> Running:
        raw = {"app": "shop", "env": "test", "server_key": "sk_" + secrets.token_hex(8),
               "server_secret": secrets.token_hex(16), "session_ttl": 7200, "max_file_mb": 0.05,
               "files_dir": str(tmp_path / "files"), "collections": collections or {},
               "sandbox": {"url": sandbox.url + "/gateway.do", "app_id": keys.app_id,
                           "private_key_path": str(keys.app_private),
                           "platform_public_key_path": str(keys.platform_public)},
               "scanner_url": None, "functions_url": stand_in[0] + "/fn",
               "public_url": "https://shop.test.localhost:8443", **options}
        path = tmp_path / f"config-{uuid.uuid4().hex[:6]}.json"
        path.write_text(json.dumps(raw))
        config = data_api.Config.load(path)
        api, server = start_data_api(config, database)
        running = Running(api, server.server_address[1], config, database, servers=[server])
        api.clock = running.now
        started.append(running)
        return running

    yield make
    for running in started:
        for server in running.servers:
            server.shutdown()
            server.server_close()
        running.api.pool.close()


def request(port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None,
            ) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@dataclass
class Client:
    """Signs requests as docs/data-api.md says, with a session or the server credential."""

    data: Running
    session: str | None = None
    secret: bytes = b""
    server_key: str | None = None
    uid: str | None = None

    def headers(self, method: str, path: str, body: bytes, timestamp: float | None = None,
                nonce: str | None = None) -> dict[str, str]:
        ts = str(int(self.data.now() if timestamp is None else timestamp))
        nonce = nonce or secrets.token_hex(12)
        text = "\n".join([method, path, ts, nonce, hashlib.sha256(body).hexdigest()])
        sig = base64.b64encode(hmac.new(self.secret, text.encode(), hashlib.sha256).digest()).decode()
        who = {"X-Cloud-Session": self.session} if self.session else {"X-Cloud-Server-Key": self.server_key}
        return {**who, "X-Cloud-Timestamp": ts, "X-Cloud-Nonce": nonce, "X-Cloud-Signature": sig,
                "Content-Type": "application/json"}

    def raw(self, method: str, path: str, body: bytes = b"", **kw: Any) -> tuple[int, dict[str, str], bytes]:
        return request(self.data.port, method, path, body, self.headers(method, path, body, **kw))

    def call(self, method: str, path: str, payload: Any = None, **kw: Any) -> tuple[int, Any]:
        body = json.dumps(payload).encode() if payload is not None else b""
        status, _, raw = self.raw(method, path, body, **kw)
        return status, json.loads(raw)

    def post(self, path: str, payload: Any = None) -> Any:
        status, answer = self.call("POST", path, payload if payload is not None else {})
        assert status == 200, (path, status, answer)
        return answer


def login(sandbox: Sandbox, data: Running, uid: str) -> Client:
    code = post_json(sandbox.url + "/_sandbox/auth-code", {"user_id": uid})[1]["auth_code"]
    status, _, raw = request(data.port, "POST", "/cloud/v1/auth/session", json.dumps({"code": code}).encode(),
                             {"Content-Type": "application/json"})
    assert status == 200, raw
    answer = json.loads(raw)
    return Client(data, answer["session"], base64.b64decode(answer["secret"]), uid=answer["uid"])


def server(data: Running, on_behalf_of: str | None = None) -> Client:
    return Client(data, None, data.config.server_secret.encode(), data.config.server_key, on_behalf_of)


UID_A, UID_B = "2088000000000011", "2088000000000022"


# ------------------------------------------------------------------ identity
def test_a_session_from_an_auth_code(make_data, sandbox):
    data = make_data()
    code = post_json(sandbox.url + "/_sandbox/auth-code", {"user_id": UID_A})[1]["auth_code"]
    status, _, raw = request(data.port, "POST", "/cloud/v1/auth/session", json.dumps({"code": code}).encode())
    answer = json.loads(raw)
    assert status == 200 and answer["uid"] == UID_A and len(base64.b64decode(answer["secret"])) == 32
    assert abs(answer["expires_at"] - (time.time() + 7200)) < 60
    client = Client(data, answer["session"], base64.b64decode(answer["secret"]))
    status, listed = client.call("GET", "/cloud/v1/db")
    assert status == 200 and listed == {"collections": []}
    # the code was single use
    status, _, raw = request(data.port, "POST", "/cloud/v1/auth/session", json.dumps({"code": code}).encode())
    assert status == 401 and json.loads(raw)["error"]["code"] == "invalid_auth_code"
    status, _, raw = request(data.port, "POST", "/cloud/v1/auth/session", b"{}")
    assert status == 400 and "code" in json.loads(raw)["error"]["message"]


def test_a_session_survives_a_restart_of_the_data_api(make_data, sandbox):
    data = make_data()
    client = login(sandbox, data, UID_A)
    again = make_data()  # a second server on the same database: nothing of the first in memory
    client.data = again
    status, answer = client.call("GET", "/cloud/v1/db")
    assert status == 200, answer


def test_refusals_each_have_their_code(make_data, sandbox):
    data = make_data()
    client = login(sandbox, data, UID_A)
    path = "/cloud/v1/db"

    def code(status_and_raw: tuple) -> tuple[int, str]:
        status, _, raw = status_and_raw
        return status, json.loads(raw)["error"]["code"]

    assert code(request(data.port, "GET", path)) == (401, "no_session")
    headers = client.headers("GET", path, b"")
    headers["X-Cloud-Signature"] = base64.b64encode(b"x" * 32).decode()
    assert code(request(data.port, "GET", path, b"", headers)) == (401, "bad_signature")
    # signed over another path, or with another secret
    assert code(request(data.port, "GET", path, b"", client.headers("GET", path + "?x=1", b""))) == \
        (401, "bad_signature")
    wrong = Client(data, client.session, secrets.token_bytes(32))
    assert code(wrong.raw("GET", path)) == (401, "bad_signature")
    assert code(client.raw("GET", path, timestamp=time.time() - 301)) == (401, "stale_timestamp")
    assert code(client.raw("GET", path, timestamp=time.time() + 400)) == (401, "stale_timestamp")
    headers = client.headers("GET", path, b"")
    assert request(data.port, "GET", path, b"", headers)[0] == 200
    assert code(request(data.port, "GET", path, b"", headers)) == (401, "replayed_nonce")
    unknown = Client(data, "0" * 32, client.secret)
    assert code(unknown.raw("GET", path)) == (401, "session_expired")
    data.clock_offset = 7201  # two hours later
    assert code(client.raw("GET", path)) == (401, "session_expired")
    # the server credential does not expire, and a wrong server key is refused
    assert server(data).call("GET", path)[0] == 200
    assert code(Client(data, None, data.config.server_secret.encode(), "sk_wrong").raw("GET", path)) == \
        (401, "bad_signature")


def test_a_refused_request_does_not_burn_its_nonce(make_data, sandbox):
    data = make_data()
    client = login(sandbox, data, UID_A)
    nonce = secrets.token_hex(10)
    headers = client.headers("GET", "/cloud/v1/db", b"", nonce=nonce)
    forged = {**headers, "X-Cloud-Signature": base64.b64encode(b"y" * 32).decode()}
    assert request(data.port, "GET", "/cloud/v1/db", b"", forged)[0] == 401
    assert request(data.port, "GET", "/cloud/v1/db", b"", headers)[0] == 200



def test_pooled_connections_the_server_dropped_are_replaced(make_data, sandbox):
    """After PostgreSQL drops every connection (a restart), the next request gets a fresh one."""
    data = make_data()
    alice = login(sandbox, data, UID_A)
    assert alice.call("GET", "/cloud/v1/db")[0] == 200
    data.api.pool.CHECK_AFTER = 0  # test every idle connection before use (default: after 2 s idle)
    with psycopg.connect(data.dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    data.api.sessions.clear()  # and the session is read from the database again
    assert alice.call("GET", "/cloud/v1/db") == (200, {"collections": []})


# ------------------------------------------------------------------ documents
def test_owners_see_only_their_documents_and_the_server_sees_all(make_data, sandbox):
    data = make_data({"orders": {"read": OWNER_RULE, "write": OWNER_RULE}})
    alice, bob, srv = login(sandbox, data, UID_A), login(sandbox, data, UID_B), server(data)
    ids_a = alice.post("/cloud/v1/db/orders/add", {"data": [{"item": "tea", "n": 1}, {"item": "cake", "n": 2}]})["ids"]
    ids_b = bob.post("/cloud/v1/db/orders/add", {"data": {"item": "coffee", "n": 3}})["ids"]
    assert len(ids_a) == 2 and len(ids_b) == 1
    mine = alice.post("/cloud/v1/db/orders/find", {"filter": {}, "sort": [["n", 1]]})["data"]
    assert [d["item"] for d in mine] == ["tea", "cake"] and {d["_owner"] for d in mine} == {UID_A}
    assert {d["_id"] for d in mine} == set(ids_a)
    assert alice.post("/cloud/v1/db/orders/count", {"filter": {}})["total"] == 2
    assert [d["item"] for d in bob.post("/cloud/v1/db/orders/find", {})["data"]] == ["coffee"]
    assert bob.post("/cloud/v1/db/orders/count", {"filter": {"n": {"$gte": 1}}})["total"] == 1
    # another user's document is not found by id either
    assert bob.post("/cloud/v1/db/orders/find", {"filter": {"_id": ids_a[0]}})["data"] == []
    everything = srv.post("/cloud/v1/db/orders/find", {"sort": [["n", -1]]})["data"]
    assert [d["item"] for d in everything] == ["coffee", "cake", "tea"]
    assert srv.post("/cloud/v1/db/orders/count", {})["total"] == 3
    assert srv.post("/cloud/v1/db/orders/add", {"data": {"item": "server"}})["ids"]
    assert srv.post("/cloud/v1/db/orders/find", {"filter": {"item": "server"}})["data"][0]["_owner"] is None
    # writes: bob's update and remove reach only his own documents
    assert bob.call("POST", "/cloud/v1/db/orders/update",
                    {"filter": {"_id": ids_a[0]}, "update": {"$set": {"n": 99}}, "multi": False}) == \
        (200, {"updated": 0})
    assert srv.post("/cloud/v1/db/orders/find", {"filter": {"_id": ids_a[0]}})["data"][0]["n"] == 1
    assert bob.post("/cloud/v1/db/orders/remove", {"filter": {}})["removed"] == 1
    assert srv.post("/cloud/v1/db/orders/count", {})["total"] == 3
    listed = {c["name"]: c["count"] for c in alice.call("GET", "/cloud/v1/db")[1]["collections"]}
    assert listed == {"orders": 2}
    assert {c["name"]: c["count"] for c in srv.call("GET", "/cloud/v1/db")[1]["collections"]} == {"orders": 3}


def test_a_write_the_rule_denies_is_403(make_data, sandbox):
    data = make_data({"posts": {"read": "true", "write": "doc.author == auth.uid"}})
    alice = login(sandbox, data, UID_A)
    status, answer = alice.call("POST", "/cloud/v1/db/posts/add",
                                {"data": [{"title": "mine", "author": UID_A}, {"title": "x", "author": UID_B}]})
    assert status == 403 and answer["error"]["code"] == "denied" and "data.1" in answer["error"]["message"]
    assert alice.post("/cloud/v1/db/posts/count", {})["total"] == 0  # all or nothing
    # _owner is the adder's, whatever the document says
    alice.post("/cloud/v1/db/posts/add", {"data": {"title": "y", "author": UID_A, "_owner": UID_B}})
    assert [d["_owner"] for d in alice.post("/cloud/v1/db/posts/find", {})["data"]] == [UID_A]
    # a collection without rules is the server's alone
    status, answer = alice.call("POST", "/cloud/v1/db/secret/find", {})
    assert status == 403 and answer["error"]["code"] == "denied" and "secret" in answer["error"]["message"]


def test_on_behalf_of_a_user_the_server_writes_in_their_name(make_data, sandbox):
    data = make_data({"orders": {"read": OWNER_RULE, "write": OWNER_RULE}})
    srv = server(data)
    path = "/cloud/v1/db/orders/add"
    body = json.dumps({"data": {"item": "gift"}}).encode()
    headers = {**srv.headers("POST", path, body), "X-Cloud-On-Behalf-Of": UID_A}
    status, _, raw = request(data.port, "POST", path, body, headers)
    assert status == 200, raw
    alice = login(sandbox, data, UID_A)
    assert [d["item"] for d in alice.post("/cloud/v1/db/orders/find", {})["data"]] == ["gift"]


def test_an_unsupported_operator_is_400_naming_it(make_data, sandbox):
    data = make_data({"orders": {"read": OWNER_RULE, "write": OWNER_RULE}})
    srv = server(data)
    status, answer = srv.call("POST", "/cloud/v1/db/orders/find", {"filter": {"$where": "this.n > 1"}})
    assert status == 400 and answer["error"]["code"] == "unsupported_operator"
    assert "$where" in answer["error"]["message"] and "filter" in answer["error"]["message"]
    status, answer = srv.call("POST", "/cloud/v1/db/orders/find", {"limit": 5000})
    assert status == 400 and "limit" in answer["error"]["message"]
    status, answer = srv.call("POST", "/cloud/v1/db/orders/update", {"filter": {}})
    assert status == 400 and "update" in answer["error"]["message"]
    status, _, raw = srv.raw("POST", "/cloud/v1/db/orders/find", b"{not json")
    assert status == 400 and json.loads(raw)["error"]["code"] == "invalid_json"


# ------------------------------------------------------------------ files
def upload(client: Client, path: str, data: bytes) -> tuple[int, Any]:
    url = "/cloud/v1/files?" + urllib.parse.urlencode({"path": path})
    status, _, raw = client.raw("POST", url, data)
    return status, json.loads(raw)


def test_uploads_are_sniffed_and_served_by_temporary_urls(make_data, sandbox):
    data = make_data()
    alice = login(sandbox, data, UID_A)
    cases = {"a/pic.png": (PNG, "image/png"), "a/pic.jpg": (b"\xff\xd8\xff\xe0" + bytes(40), "image/jpeg"),
             "a/anim.gif": (b"GIF89a" + bytes(20), "image/gif"), "a/doc.pdf": (b"%PDF-1.7\n...", "application/pdf"),
             "a/pic.webp": (b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(8), "image/webp"),
             "a/bundle.zip": (b"PK\x03\x04" + bytes(30), "application/zip"),
             "a/data.json": (b'{"hello": "world"}', "application/json"),
             "a/note.txt": ("今天天气不错".encode(), "text/plain;charset=utf-8"),
             "a/blob.bin": (bytes([0, 1, 2, 255, 254]), "application/octet-stream")}
    for path, (body, kind) in cases.items():
        status, answer = upload(alice, path, body)
        assert status == 200, (path, answer)
        assert answer == {"fileID": f"cloud://test/{path}", "size": len(body), "contentType": kind}
    urls = alice.post("/cloud/v1/files/temp-url", {"fileList": ["cloud://test/a/pic.png", "cloud://test/a/none"],
                                                   "maxAge": 60})["fileList"]
    assert urls[1]["status"] != 0 and urls[0]["maxAge"] == 60
    url = urllib.parse.urlsplit(urls[0]["tempFileURL"])
    assert url.scheme == "https" and url.netloc == "shop.test.localhost:8443"
    local = f"{url.path}?{url.query}"
    status, headers, body = request(data.port, "GET", local)  # no signature headers: the URL is the proof
    assert status == 200 and body == PNG and headers["content-type"] == "image/png"
    tampered = local.replace("expires=", "expires=9")
    status, _, raw = request(data.port, "GET", tampered)
    assert status == 403 and json.loads(raw)["error"]["code"] == "bad_signature"
    data.clock_offset = 61
    status, _, raw = request(data.port, "GET", local)
    assert status == 403 and json.loads(raw)["error"]["code"] == "expired"


def test_a_file_over_the_limit_is_413_and_not_stored(make_data, sandbox):
    data = make_data(max_file_mb=0.01)
    alice = login(sandbox, data, UID_A)
    status, answer = upload(alice, "big/photo.png", PNG + bytes(11000))
    assert status == 413 and answer["error"]["code"] == "too_large"
    assert not (data.config.files_dir / "big").exists()
    assert upload(alice, "big/photo.png", PNG)[0] == 200


def test_rejected_uploads_are_422_and_never_written(make_data, sandbox, stand_in):
    data = make_data(scanner_url=stand_in[0] + "/scan")
    alice, srv = login(sandbox, data, UID_A), server(data)
    status, answer = upload(alice, "r/post.txt", "这是违禁内容".encode())
    assert status == 422 and answer["error"]["code"] == "rejected" and "违禁" in answer["error"]["message"]
    status, answer = upload(alice, "r/data.json", json.dumps({"text": "prohibited stuff"}).encode())
    assert status == 422 and "prohibited" in answer["error"]["message"]
    status, answer = upload(alice, "r/pic.png", PNG + b"EICAR")
    assert status == 422 and "EICAR" in answer["error"]["message"]
    assert not (data.config.files_dir / "r").exists() or not any((data.config.files_dir / "r").iterdir())
    status, listed = srv.call("GET", "/cloud/v1/files?prefix=r/")
    assert status == 200 and listed["files"] == []
    # the scanner saw the bytes, with their sniffed type
    assert any(p == "/scan" and raw.endswith(b"EICAR") and ct == "image/png" for p, ct, raw in stand_in[1])
    status, answer = upload(alice, "r/fine.txt", "今天天气不错".encode())
    assert status == 200, answer
    status, listed = srv.call("GET", "/cloud/v1/files?prefix=r/")
    assert [f["fileID"] for f in listed["files"]] == ["cloud://test/r/fine.txt"]


def test_delete_and_list(make_data, sandbox):
    data = make_data()
    alice, bob, srv = login(sandbox, data, UID_A), login(sandbox, data, UID_B), server(data)
    assert upload(alice, "d/a.png", PNG)[0] == 200
    assert upload(bob, "d/b.png", PNG)[0] == 200
    # bob may not overwrite alice's file, nor delete it
    status, answer = upload(bob, "d/a.png", PNG + b"x")
    assert status == 403 and answer["error"]["code"] == "denied"
    answer = bob.post("/cloud/v1/files/delete", {"fileList": ["cloud://test/d/a.png", "cloud://test/d/b.png"]})
    assert [f["status"] for f in answer["fileList"]] == [-1, 0]
    assert not (data.config.files_dir / "d" / "b.png").exists()
    status, answer = alice.call("GET", "/cloud/v1/files?prefix=d/")
    assert status == 403 and answer["error"]["code"] == "denied"
    listed = srv.call("GET", "/cloud/v1/files?prefix=d/")[1]["files"]
    assert [(f["fileID"], f["size"], f["contentType"]) for f in listed] == [("cloud://test/d/a.png", len(PNG),
                                                                              "image/png")]
    for bad in ("../etc/passwd", "/abs.png", "a//b.png", ".hidden"):
        status, answer = upload(alice, bad, PNG)
        assert status == 400 and "path" in answer["error"]["message"], bad
    status, answer = alice.call("POST", "/cloud/v1/files/delete", {"fileList": ["cloud://prod/x.png"]})
    assert status == 400 and "fileList[0]" in answer["error"]["message"]


# ------------------------------------------------------------------ functions
def test_functions_are_called_with_the_callers_uid(make_data, sandbox, stand_in):
    data = make_data()
    alice = login(sandbox, data, UID_A)
    answer = alice.post("/cloud/v1/functions/hello", {"data": {"x": 1}})
    assert answer == {"result": {"echo": {"data": {"x": 1}, "auth": {"uid": UID_A}}, "fn": "/fn/hello"}}
    status, answer = alice.call("POST", "/cloud/v1/functions/fails", {"data": None})
    assert status == 500 and answer["error"]["code"] == "function_error" and answer["error"]["message"] == "boom"
    status, answer = server(data).call("POST", "/cloud/v1/functions/hello", {"data": 2})
    assert status == 200 and answer["result"]["echo"]["auth"] == {"uid": None}


def test_every_request_is_logged_without_secrets(make_data, sandbox, capsys):
    data = make_data({"orders": {"read": OWNER_RULE, "write": OWNER_RULE}})
    alice = login(sandbox, data, UID_A)
    alice.post("/cloud/v1/db/orders/add", {"data": {"n": 1}})
    assert alice.raw("GET", "/cloud/v1/db")[0] == 200
    out = ""

    def logged() -> str | None:  # the line is written once the answer is sent
        nonlocal out
        out += capsys.readouterr().out
        return next((x for x in out.splitlines() if "GET /cloud/v1/db " in x), None)

    line = wait_for(logged, 10, "the request's log line")
    assert " 200 " in line and f"uid={UID_A}" in line and "ms" in line
    assert base64.b64encode(alice.secret).decode() not in out and "X-Cloud-Signature" not in out
    assert "/cloud/v1/auth/session 200" in out


def test_find_latency_through_the_stack(make_data, sandbox):
    """p99 of a signed, rule-filtered find over a kept-alive connection (the goal is under 10 ms)."""
    data = make_data({"orders": {"read": OWNER_RULE, "write": OWNER_RULE}})
    alice = login(sandbox, data, UID_A)
    alice.post("/cloud/v1/db/orders/add", {"data": [{"n": i} for i in range(50)]})
    conn = http.client.HTTPConnection("127.0.0.1", data.port, timeout=10)
    path = "/cloud/v1/db/orders/find"
    body = json.dumps({"filter": {"n": {"$gte": 10}}, "limit": 20}).encode()
    timings = []
    for _ in range(300):
        started = time.perf_counter()
        conn.request("POST", path, body, alice.headers("POST", path, body))
        response = conn.getresponse()
        assert response.status == 200 and len(json.loads(response.read())["data"]) == 20
        timings.append((time.perf_counter() - started) * 1000)
    conn.close()
    timings.sort()
    p99 = timings[int(0.99 * len(timings)) - 1]
    print(f"find p50 {timings[len(timings) // 2]:.2f} ms, p99 {p99:.2f} ms")
    assert p99 < 50, f"p99 {p99:.1f} ms"  # a loose bound: a busy CI machine must not fail it


def test_a_bad_config_names_its_field(tmp_path):
    good = {"app": "shop", "env": "test", "server_key": "k", "server_secret": "s", "public_url": "https://x",
            "files_dir": str(tmp_path / "files")}
    path = tmp_path / "config.json"
    for broken, field_name in (({**good, "server_key": ""}, "server_key"),
                               ({**good, "sandbox": {"url": "http://sandbox"}}, "sandbox.app_id")):
        path.write_text(json.dumps(broken))
        with pytest.raises(ValueError, match=field_name):
            data_api.Config.load(path)
    path.write_text(json.dumps({**good, "collections": {"orders": {"read": "doc._owner === auth.uid"}}}))
    with pytest.raises(ValueError, match="collections.orders.read"):
        data_api.DataApi(data_api.Config.load(path), "host=127.0.0.1 port=1")  # connects lazily
