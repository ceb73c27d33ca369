"""The data API, measured: an equality find on an indexed field of a 100k-document collection through the
HTTPS gateway (a keep-alive client signing each request with the server credential), against the same
query run directly in the env's PostgreSQL from the same host (the DocStore on a plain connection); adds
in batches; a 10 MB upload with the scan (the env's scanner hook, a local receiver) included."""

from __future__ import annotations

import http.client
import http.server
import json
import os
import shutil
import statistics
import threading
import time
from pathlib import Path
from typing import Any

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


class SignedClient:
    """A keep-alive HTTPS client of the data API with the server credential, as a busy function is (the
    standard library's: a client library's own cost is not the API's)."""

    def __init__(self, url: str, key: str, secret: str, ca: str) -> None:
        import ssl
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self.host, self.port, self.prefix = parts.hostname, parts.port or 443, parts.path.rstrip("/")
        self.key, self.secret = key, secret.encode()
        self.context = ssl.create_default_context(cafile=ca)
        self.conn: http.client.HTTPSConnection | None = None

    def call(self, method: str, rel: str, body: bytes = b"", content_type: str = "application/json") -> Any:
        from codegen.cloud_sdk.minicloud_cloud import signature_headers

        path = f"{self.prefix}/{rel}"
        headers = {"X-Cloud-Server-Key": self.key, "Content-Type": content_type,
                   **signature_headers(method, path, body, self.secret)}
        for attempt in (1, 2):  # a kept-alive connection the server closed: once more on a new one
            if self.conn is None:
                self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=60)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        if response.status != 200:
            raise RuntimeError(f"{method} {rel}: {response.status} {data[:200]!r}")
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
        log(f"data: {runs} equality finds through the API and directly in PostgreSQL, interleaved")
        store, conn = direct_store(cloud)
        api, direct = [], []
        try:
            for i in range(runs):
                sku = f"s{(i * 7919) % documents}"
                t0 = time.perf_counter()
                found = client.json("db/items/find", {"filter": {"sku": sku}, "limit": 10})["data"]
                api.append((time.perf_counter() - t0) * 1000)
                assert len(found) == 1, found
                t0 = time.perf_counter()
                rows = store.find("items", {"sku": sku}, limit=10)
                direct.append((time.perf_counter() - t0) * 1000)
                assert len(rows) == 1
        finally:
            conn.close()
        out.update(data_find_p50_ms=statistics.median(api), data_find_p99_ms=percentile(api, 99),
                   data_direct_find_p99_ms=percentile(direct, 99),
                   data_overhead_ratio=percentile(api, 99) / percentile(direct, 99))
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
