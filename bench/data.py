"""The data API, measured: an equality find on an indexed field of a 100k-document collection through the
HTTPS gateway (a lean keep-alive client signing each request with the server credential; the standard
library's http.client reported beside it), against the same query run directly in the env's PostgreSQL from the same host (the DocStore on a plain connection); adds
in batches; a 10 MB upload with the scan (the env's scanner hook, a local receiver) included."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import shutil
import socket
import ssl
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

GOALS = {"data_find_p99_ms": (10.0, "<"), "data_overhead_ratio": (3.0, "<"),
         "data_field_completion_p99_ms": (5.0, "<")}
MANIFEST = """\
[app]
name = "databench"
runtime = "nodejs"
start = "node server.js"
port = 3000

[env.test]
sandbox = false

[data]
max_file_mb = 16
scanner = "http://{host}:{port}/scan"
"""
SERVER = "require('http').createServer((q, s) => s.end('ok')).listen(3000);\n"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Scanner:
    """The env's scanner hook: reads every byte it is sent and accepts it."""

    def __init__(self) -> None:
        self.scanned = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(handler) -> None:  # noqa: N805 - the handler's self, beside the scanner's
                self.scanned += len(handler.rfile.read(int(handler.headers.get("content-length") or 0)))
                handler.send_response(200)
                handler.send_header("content-type", "application/json")
                handler.end_headers()
                handler.wfile.write(b'{"ok": true}')

            def log_message(handler, *args) -> None:  # noqa: N805
                pass

        self.server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class LeanHttps:
    """One kept-alive HTTP/1.1 connection over TLS, written as a fast client (Node's, Go's) works: the
    request in one write, the response read by its Content-Length (or chunks). The standard library's
    http.client parses every response's headers with the email package: on this machine that alone was a
    fifth of a find's median and half its p99, a cost of the measuring client, not of the API (the
    direct side's psycopg parses in C). `StdlibHttps` is kept beside it and reported too."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext) -> None:
        self.host, self.port, self.context = host, port, context
        self.sock: ssl.SSLSocket | None = None
        self.buffer = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buffer = None, b""

    def _read_more(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def _take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._read_more()
        taken, self.buffer = self.buffer[:n], self.buffer[n:]
        return taken

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._read_more()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def exchange(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if self.sock is None:
            raw = socket.create_connection((self.host, self.port), timeout=60)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = self.context.wrap_socket(raw, server_hostname=self.host)
        head = "".join([f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n",
                        f"Content-Length: {len(body)}\r\n", *(f"{k}: {v}\r\n" for k, v in headers.items()), "\r\n"])
        self.sock.sendall(head.encode("latin-1") + body if len(body) < 1 << 16 else head.encode("latin-1"))
        if len(body) >= 1 << 16:
            self.sock.sendall(body)
        status_line = self._line().split(b" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
            raise ConnectionError(f"not an HTTP response: {b' '.join(status_line)[:80]!r}")
        fields: dict[bytes, bytes] = {}
        while line := self._line():
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            parts = []
            while size := int(self._line().split(b";")[0], 16):
                parts.append(self._take(size))
                self._line()
            while self._line():  # trailers, then the empty line
                pass
            data = b"".join(parts)
        elif b"content-length" in fields:
            data = self._take(int(fields[b"content-length"]))
        else:  # the body runs to the connection's end
            with contextlib.suppress(ConnectionError):
                while True:
                    self._read_more()
            data, self.buffer = self.buffer, b""
            fields[b"connection"] = b"close"
        if fields.get(b"connection", b"").lower() == b"close":
            self.close()
        return int(status_line[1]), data


class StdlibHttps:
    """The same exchange through the standard library's http.client (reported as data_find_stdlib_p99_ms)."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext) -> None:
        self.host, self.port, self.context = host, port, context
        self.conn: http.client.HTTPSConnection | None = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def exchange(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=60)
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        return response.status, response.read()


class SignedClient:
    """A keep-alive HTTPS client of the data API with the server credential, as a busy function is."""

    def __init__(self, url: str, key: str, secret: str, ca: str, transport: type = LeanHttps) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.prefix = parts.hostname, parts.port or 443, parts.path.rstrip("/")
        self.key, self.secret = key, secret.encode()
        self.transport = transport(self.host, self.port, ssl.create_default_context(cafile=ca))

    def call(self, method: str, rel: str, body: bytes = b"", content_type: str = "application/json") -> Any:
        from codegen.cloud_sdk.minicloud_cloud import signature_headers

        path = f"{self.prefix}/{rel}"
        headers = {"X-Cloud-Server-Key": self.key, "Content-Type": content_type,
                   **signature_headers(method, path, body, self.secret)}
        for attempt in (1, 2):  # a kept-alive connection the server closed: once more on a new one
            try:
                status, data = self.transport.exchange(method, path, headers, body)
                break
            except (http.client.HTTPException, OSError):
                self.transport.close()
                if attempt == 2:
                    raise
        if status != 200:
            raise RuntimeError(f"{method} {rel}: {status} {data[:200]!r}")
        return json.loads(data)

    def json(self, rel: str, obj: Any) -> Any:
        return self.call("POST", rel, json.dumps(obj, separators=(",", ":")).encode())


def direct_store(cloud):
    """The DocStore on a plain connection to the env's PostgreSQL (its address on the env's network)."""
    import psycopg

    from deploy_bridge import engine
    from deploy_bridge.credentials import data_secrets
    from deploy_bridge.data import DATABASE, STORE_ROLE
    from deploy_bridge.services.docstore import DocStore

    container = engine.client().containers.get(cloud.settings.container(cloud.app, "test", STORE_ROLE))
    address = next(iter(container.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    password = data_secrets(cloud.workspace, "test", create=False).pg_password
    conn = psycopg.connect(host=address, port=5432, dbname=DATABASE, user="postgres", password=password,
                           autocommit=True)
    return DocStore(conn), conn


def measure_field_completions(ws: Path, count: int, out: dict[str, Any]) -> None:
    """Completions of the fields of the big collection at a `where` key, from the language server's
    in-memory index (sampled by its engine reader through the data API), as a user types them."""
    import sys

    from .lsp import TimedClient

    client = TimedClient([sys.executable, "-m", "lsp_server"], ws)
    try:
        uri = (ws / "client.js").as_uri()
        text = "const db = cloud.database();\ndb.collection('items').where({ q"
        client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "javascript", "version": 1,
                                                                "text": text}})
        pos = {"line": 1, "character": len("db.collection('items').where({ q")}
        deadline = time.monotonic() + 60
        while True:
            items = client.request("textDocument/completion", {"textDocument": {"uri": uri}, "position": pos})
            labels = {i["label"] for i in (items["items"] if isinstance(items, dict) else items or [])}
            if "qty" in labels:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the editor never learnt the fields of items: {sorted(labels)}")
            client.wait(0.5)
        latencies = [client.timed("textDocument/completion", {"textDocument": {"uri": uri}, "position": pos})[0]
                     for _ in range(count)]
        out["data_field_completion_p99_ms"] = percentile(latencies, 99)
    finally:
        client.close()


def measure_data(root: Path, quick: bool, out: dict[str, Any], log) -> None:
    from deploy_bridge.cloud import Cloud
    from deploy_bridge.credentials import data_secrets

    documents = 20_000 if quick else 100_000
    scanner = Scanner()
    ws = root / "databench"
    if ws.exists():
        shutil.rmtree(ws)
    ws.mkdir(parents=True)
    (ws / "server.js").write_text(SERVER)
    (ws / "minicloud.toml").write_text(MANIFEST.format(host="127.0.0.1", port=scanner.port))
    cloud = Cloud(ws)
    cloud.build_env("test")
    try:
        # the scanner is reached from the data API's container: the host on the env network's gateway
        from deploy_bridge import engine

        network = engine.client().networks.get(cloud.settings.network(cloud.app, "test"))
        host = network.attrs["IPAM"]["Config"][0]["Gateway"]
        (ws / "minicloud.toml").write_text(MANIFEST.format(host=host, port=scanner.port))
        cloud = Cloud(ws)
        cloud.build_env("test")
        made = data_secrets(ws, "test", create=False)
        client = SignedClient(cloud.url("test") + "/cloud/v1", made.server_key, made.server_secret, cloud.ca_path())
        log(f"data: adding {documents:,} documents in batches of 1,000")
        started = time.perf_counter()
        for start in range(0, documents, 1000):
            client.json("db/items/add", {"data": [{"sku": f"s{i}", "qty": i % 97, "tags": ["a", f"t{i % 7}"]}
                                                  for i in range(start, start + 1000)]})
        out["data_insert_per_s"] = documents / (time.perf_counter() - started)
        out["data_documents"] = documents
        runs = 500 if quick else 3000  # a p99 over 3,000: its 30 slowest, not one noisy second's 10
        log(f"data: {runs} equality finds through the API (a lean client and http.client) and directly in "
            "PostgreSQL, interleaved")
        stdlib = SignedClient(cloud.url("test") + "/cloud/v1", made.server_key, made.server_secret,
                              cloud.ca_path(), transport=StdlibHttps)
        store, conn = direct_store(cloud)
        finds: dict[str, Callable[[dict], list]] = {
            "api": lambda query: client.json("db/items/find", query)["data"],
            "stdlib": lambda query: stdlib.json("db/items/find", query)["data"],
            "direct": lambda query: store.find("items", query["filter"], limit=query["limit"])}
        kinds = list(finds)
        took: dict[str, list[float]] = {kind: [] for kind in kinds}
        try:
            for i in range(runs):
                query = {"filter": {"sku": f"s{(i * 7919) % documents}"}, "limit": 10}
                # the order rotates, so that each kind follows each other kind as often: a call right after
                # another one finds the machine's cores awake, and a fixed order gave that to one side
                found = {}
                for kind in kinds[i % 3:] + kinds[:i % 3]:
                    t0 = time.perf_counter()
                    found[kind] = finds[kind](query)
                    took[kind].append((time.perf_counter() - t0) * 1000)
                assert len(found["direct"]) == 1 and found["api"] == found["stdlib"] == found["direct"], found
        finally:
            conn.close()
            stdlib.transport.close()
        api, direct = took["api"], took["direct"]
        out.update(data_find_p50_ms=statistics.median(api), data_find_p99_ms=percentile(api, 99),
                   data_find_stdlib_p99_ms=percentile(took["stdlib"], 99),
                   data_direct_find_p99_ms=percentile(direct, 99),
                   data_overhead_ratio=percentile(api, 99) / percentile(direct, 99),
                   data_overhead_stdlib_ratio=percentile(took["stdlib"], 99) / percentile(direct, 99))
        log("data: field completions in the editor, with the collection in the index")
        measure_field_completions(ws, 200 if quick else 500, out)
        log("data: a 10 MB upload, scan included")
        blob = os.urandom(10 * 2**20)
        times = []
        for i in range(2 if quick else 4):
            before = scanner.scanned
            t0 = time.perf_counter()
            client.call("POST", f"files?path=bench/blob{i}.bin", blob, "application/octet-stream")
            times.append(time.perf_counter() - t0)
            assert scanner.scanned - before == len(blob), "the scanner did not see the whole file"
        out["file_upload_mb_per_s"] = 10 / statistics.median(times)
    finally:
        scanner.server.shutdown()
        cloud.destroy_env("test", with_data=True)
