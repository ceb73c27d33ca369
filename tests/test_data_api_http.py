"""The data API's HTTP layer on its own (no database): the request line and headers it reads itself, answers
in one write, kept-alive connections, and log lines written in batches that survive `docker stop`."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy_bridge.services import data_api

ROOT = Path(__file__).resolve().parent.parent


class EchoApi:
    """Stands in for DataApi: `find` answers with the identity's headers it was shown and the filter."""

    pool = None

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def authenticate(self, headers: Any, method: str, path_with_query: str, body: bytes) -> Any:
        self.seen.append({"key": headers.get("X-Cloud-Server-Key"), "path": path_with_query, "body": body})
        return data_api.Identity("server", None)

    def find(self, who: Any, collection: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"data": [{"collection": collection, "filter": body.get("filter")}]}


@pytest.fixture
def server() -> Iterator[tuple[int, EchoApi]]:
    api = EchoApi()
    running = data_api.serve(api, "127.0.0.1", 0)  # type: ignore[arg-type]
    thread = threading.Thread(target=running.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield running.server_address[1], api
    finally:
        running.shutdown()
        running.server_close()


def exchange(sock: socket.socket, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `raw`, read one answer: status, headers (lower-case names), body."""
    sock.sendall(raw)
    reader = sock.makefile("rb")
    status = int(reader.readline().split()[1])
    headers = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = reader.read(int(headers.get("content-length", "0")))
    return status, headers, body


def find_request(body: bytes = b'{"filter":{"sku":"s1"}}', version: str = "HTTP/1.1", extra: str = "") -> bytes:
    return (f"POST /cloud/v1/db/items/find {version}\r\nHost: api\r\nX-CLOUD-SERVER-KEY: k1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def closed(sock: socket.socket) -> bool:
    sock.settimeout(5)
    return sock.recv(1) == b""


def test_requests_on_one_kept_alive_connection_are_each_answered(server):
    port, api = server
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for sku in ("s1", "s2", "s3"):
            body = json.dumps({"filter": {"sku": sku}}, separators=(",", ":")).encode()
            status, headers, answer = exchange(sock, find_request(body))
            assert status == 200, answer
            assert json.loads(answer) == {"data": [{"collection": "items", "filter": {"sku": sku}}]}
            assert headers["content-type"] == "application/json" and "date" in headers
            assert "connection" not in headers
    # header names are read without regard to case; the signed body and path are what was sent
    assert [s["key"] for s in api.seen] == ["k1"] * 3
    assert api.seen[0]["path"] == "/cloud/v1/db/items/find" and api.seen[0]["body"] == b'{"filter":{"sku":"s1"}}'


@pytest.mark.parametrize("bad_line", ["Bad header line without colon", " folded: continuation",
                                      "Spaced name : value", ": no name"])
def test_a_malformed_header_line_is_400_and_the_connection_closed(server, bad_line):
    port, api = server
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        status, _, body = exchange(sock, find_request(extra=f"{bad_line}\r\n"))
        assert status == 400 and b"malformed header" in body
        assert closed(sock)
    assert api.seen == []


def test_a_repeated_content_length_is_refused(server):
    port, api = server
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        status, _, body = exchange(sock, find_request(extra="Content-Length: 5\r\n"))
        assert status == 400 and b"content-length is given twice" in body
    assert api.seen == []


def test_a_repeated_ordinary_header_keeps_both_values(server):
    port, api = server
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        raw = find_request().replace(b"X-CLOUD-SERVER-KEY: k1\r\n", b"X-Cloud-Server-Key: a\r\nx-cloud-server-key: b\r\n")
        assert exchange(sock, raw)[0] == 200
    assert api.seen[0]["key"] == "a, b"


def test_too_many_header_fields_are_431(server):
    port, api = server
    extra = "".join(f"X-Filler-{i}: {i}\r\n" for i in range(data_api.MAX_HEADERS + 1))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        assert exchange(sock, find_request(extra=extra))[0] == 431
    assert api.seen == []


def test_a_request_line_that_is_not_http_1_is_400(server):
    port, _ = server
    for line in (b"GET /\r\n\r\n", b"GET / HTTP/2.0\r\n\r\n", b"GET  / HTTP/1.1 extra\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            status, _, body = exchange(sock, line)
            assert status == 400 and b"not an HTTP/1.x request line" in body, line


def test_http_1_0_closes_unless_asked_to_keep_alive(server):
    port, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        status, headers, _ = exchange(sock, find_request(version="HTTP/1.0"))
        assert status == 200 and headers["connection"] == "close" and closed(sock)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        keep = find_request(version="HTTP/1.0", extra="Connection: keep-alive\r\n")
        assert exchange(sock, keep)[0] == 200
        assert exchange(sock, keep)[0] == 200  # the same connection answered again


def test_connection_close_is_honoured(server):
    port, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        status, headers, _ = exchange(sock, find_request(extra="Connection: close\r\n"))
        assert status == 200 and headers["connection"] == "close" and closed(sock)


def test_expect_100_continue_is_answered_before_the_body(server):
    port, api = server
    body = b'{"filter":{"sku":"late"}}'
    head = find_request(body, extra="Expect: 100-continue\r\n")[: -len(body)]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        reader = sock.makefile("rb")
        assert reader.readline().split()[1] == b"100"
        while reader.readline() not in (b"\r\n", b""):
            pass
        status, _, answer = exchange(sock, body)
        assert status == 200 and json.loads(answer)["data"][0]["filter"] == {"sku": "late"}


def test_log_lines_are_written_in_order_and_the_last_ones_survive_a_sigterm(tmp_path):
    """A server stopped by `docker stop` (SIGTERM) still writes the lines it had not written yet."""
    script = (
        "import os, signal, sys, time\n"
        "from deploy_bridge.services import data_api\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # as data_api.main() does\n"
        "for i in range(500):\n"
        "    data_api.log(f'line {i}')\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        lines = []
        while (line := process.stdout.readline()) and line != "ready\n":
            lines.append(line)
        process.terminate()
        rest, _ = process.communicate(timeout=10)
    finally:
        process.kill()
    lines += rest.splitlines(keepends=True)
    assert [x.rstrip("\n") for x in lines] == [f"data: line {i}" for i in range(500)]
    assert process.returncode == 0
