"""Broken framing from the client (a wrong, non-numeric or missing `Content-Length`, a body that is
not JSON) costs that one message: the server logs what it dropped, resynchronises at the next
header and answers what follows, `shutdown` included (the real `minicloud-lsp` over raw pipes)."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

SERVER = Path(sys.executable).parent / "minicloud-lsp"
DEADLINE = 15.0


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class RawServer:
    """The server process, written to byte by byte; its messages read on a thread."""

    def __init__(self, root: Path) -> None:
        self.proc = subprocess.Popen([str(SERVER), "--log-level", "WARNING"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.stderr = b""
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self.write(frame({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                          "params": {"processId": os.getpid(), "rootUri": root.as_uri(), "capabilities": {}}}))
        self.answer(1)
        self.write(frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}))

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    self.inbox.put(None)
                    return
                if not line.strip():
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            assert length is not None
            self.inbox.put(json.loads(out.read(length)))

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr += line

    def answer(self, rid: int, timeout: float = DEADLINE) -> dict[str, Any]:
        """The response to request `rid`, within the deadline (else the test fails, not hangs)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = self.inbox.get(timeout=left)
            except queue.Empty:
                break
            if msg is None:
                raise AssertionError("the server closed its output")
            if msg.get("id") == rid and "method" not in msg:
                return msg
        raise AssertionError(f"no answer to request {rid} within {timeout} s")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def hover(rid: int, uri: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": "textDocument/hover",
            "params": {"textDocument": {"uri": uri}, "position": {"line": 0, "character": 26}}}


def _body(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


FAULTS = {
    # declares fewer bytes than the body has: the rest of the body is glued to the next header
    "too-small": lambda m: b"Content-Length: %d\r\n\r\n" % (len(_body(m)) - 12) + _body(m),
    # declares more: the next message is taken for the rest of this body, and the server waits
    "too-large": lambda m: b"Content-Length: %d\r\n\r\n" % (len(_body(m)) + 5000) + _body(m),
    "not-a-number": lambda m: b"Content-Length: twelve\r\n\r\n" + _body(m),
    "missing": lambda m: b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n" + _body(m),
    "not-json": lambda m: b"Content-Length: 14\r\n\r\n{not: json!!!}",
}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    from .lsp_helpers import make_workspace

    return make_workspace(tmp_path_factory.mktemp("wire"))


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_broken_message_costs_only_itself(root, fault):
    server = RawServer(root)
    try:
        uri = (root / "w.js").as_uri()
        server.write(frame({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": uri, "languageId": "javascript", "version": 1, "text": "const u = process.env.DATABASE_URL;"}}}))
        server.write(FAULTS[fault](hover(2, uri)) + frame(hover(3, uri)))
        answer = server.answer(3)
        assert "DATABASE_URL" in answer["result"]["contents"]["value"]
        # and again: the framing is back in step, not luckily aligned once
        server.write(FAULTS[fault](hover(4, uri)) + frame(hover(5, uri)))
        assert "result" in server.answer(5)
        server.write(frame({"jsonrpc": "2.0", "id": 6, "method": "shutdown", "params": None}))
        assert server.answer(6)["result"] is None
        server.write(frame({"jsonrpc": "2.0", "method": "exit", "params": None}))
        assert server.proc.wait(timeout=DEADLINE) is not None
        deadline = time.monotonic() + DEADLINE
        while b"dropped" not in server.stderr and time.monotonic() < deadline:
            time.sleep(0.05)  # the stderr thread catches up with the exited process
        assert b"dropped" in server.stderr, server.stderr.decode(errors="replace")
    finally:
        server.close()


def test_messages_split_anywhere_and_other_headers_are_still_read(root):
    """The resynchronising reader must not cost valid traffic: a Content-Type header, messages
    written a byte at a time and several messages in one write are all answered."""
    server = RawServer(root)
    try:
        uri = (root / "split.js").as_uri()
        opened = _body({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": uri, "languageId": "javascript", "version": 1, "text": "const u = process.env.DATABASE_URL;"}}})
        data = (b"Content-Length: %d\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n"
                % len(opened) + opened + frame(hover(2, uri)))
        for i in range(len(data)):
            server.write(data[i:i + 1])
        assert "DATABASE_URL" in server.answer(2)["result"]["contents"]["value"]
        server.write(frame(hover(3, uri)) + frame(hover(4, uri)))
        assert "result" in server.answer(3) and "result" in server.answer(4)
        assert b"dropped" not in server.stderr
    finally:
        server.close()
