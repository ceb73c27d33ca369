"""A minimal synchronous LSP client over stdio, for property tests (and anything that wants
raw JSON-RPC). It answers the server's own requests with null."""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any


class WireClient:
    def __init__(self, root: Path, env: dict[str, str] | None = None, capabilities: dict | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "lsp_server"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env or os.environ.copy())
        self.ids = itertools.count(1)
        self.notifications: list[dict[str, Any]] = []
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._reader, daemon=True).start()
        self.request("initialize", {"processId": os.getpid(), "rootUri": root.as_uri(),
                                    "capabilities": capabilities or {}, "initializationOptions": {"env": "test"}})
        self.notify("initialized", {})

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def _reader(self) -> None:
        try:
            while True:
                self._inbox.put(self._read_one())
        except (ConnectionError, ValueError, OSError):
            self._inbox.put(None)

    def _read(self, timeout: float = 30) -> dict[str, Any]:
        """The next message; a server that stays silent fails the test instead of hanging it."""
        try:
            msg = self._inbox.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"the server sent nothing for {timeout} s") from None
        if msg is None:
            raise ConnectionError("the server closed its output")
        return msg

    def _read_one(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        length = 0
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise ConnectionError("the server closed its output")
            if line in (b"\r\n", b"\n"):
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return json.loads(self.proc.stdout.read(length))

    def notify(self, method: str, params: Any) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method: str, params: Any) -> dict[str, Any]:
        """The whole response message (with `result` or `error`)."""
        rid = next(self.ids)
        self._send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        while True:
            msg = self._read()
            if msg.get("id") == rid and "method" not in msg:
                return msg
            if "method" in msg and "id" in msg:
                self._send({"jsonrpc": "2.0", "id": msg["id"], "result": None})
            elif "method" in msg:
                self.notifications.append(msg)

    def close(self) -> None:
        try:
            self.request("shutdown", None)
            self.notify("exit", None)
            self.proc.wait(timeout=10)
        except (ConnectionError, BrokenPipeError, TimeoutError, subprocess.TimeoutExpired):
            self.proc.kill()
