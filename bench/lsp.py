"""A JSON-RPC client over stdio that times requests and timestamps notifications on arrival."""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class TimedClient:
    def __init__(self, command: list[str], root: Path, env: dict[str, str] | None = None,
                 logs_capability: bool = True) -> None:
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env or os.environ.copy())
        self._ids = itertools.count(1)
        self._waiting: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        self.on_notification: Callable[[str, Any, float], None] | None = None
        # log notifications are kept raw and parsed later, so that the client's own parsing does
        # not compete (for this process's GIL) with the requests being timed
        self.raw_logs: list[tuple[bytes, float]] = []
        threading.Thread(target=self._reader, daemon=True).start()
        caps = {"window": {"workDoneProgress": False},
                "experimental": {"minicloudLogs": True} if logs_capability else {}}
        self.request("initialize", {"processId": os.getpid(), "rootUri": root.as_uri(), "capabilities": caps,
                                    "initializationOptions": {"env": "test"}})
        self.initialize_ms = (time.perf_counter() - self.started) * 1000
        self.notify("initialized", {})

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        with self._lock:
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            self.proc.stdin.flush()

    def _reader(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            length = 0
            while True:
                line = out.readline()
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = out.read(length)
            arrived = time.time()
            if body.startswith(b'{"jsonrpc":"2.0","method":"minicloud/logs"'):
                self.raw_logs.append((body, arrived))
                continue
            msg = json.loads(body)
            if "id" in msg and "method" not in msg:
                q = self._waiting.pop(msg["id"], None)
                if q is not None:
                    q.put(msg)
            elif "id" in msg:  # a request from the server: answer null
                self._send({"jsonrpc": "2.0", "id": msg["id"], "result": None})
            elif self.on_notification is not None:
                self.on_notification(msg["method"], msg.get("params"), arrived)

    def take_logs(self) -> list[tuple[str, float]]:
        """(line, arrival time) of every log line received so far, and forget them."""
        raw, self.raw_logs = self.raw_logs, []
        return [(ln["line"], arrived) for body, arrived in raw for ln in json.loads(body)["params"]["lines"]]

    def notify(self, method: str, params: Any) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method: str, params: Any, timeout: float = 600) -> Any:
        rid = next(self._ids)
        q: queue.Queue = queue.Queue()
        self._waiting[rid] = q
        self._send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        msg = q.get(timeout=timeout)
        if "error" in msg:
            raise RuntimeError(msg["error"].get("message"))
        return msg.get("result")

    def timed(self, method: str, params: Any) -> tuple[float, Any]:
        start = time.perf_counter()
        result = self.request(method, params)
        return (time.perf_counter() - start) * 1000, result

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def close(self) -> None:
        try:
            self.request("shutdown", None, timeout=10)
            self.notify("exit", None)
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001 - a benchmark must always end its server
            self.proc.kill()
