"""A JSON-RPC client over stdio that times requests and timestamps notifications on arrival.

It is single-threaded, like an editor's event loop: one loop reads the server's output and handles
each message in order, so an answer is "received" when the loop reaches it — after whatever log
notifications came before it. (A reader thread that hands answers to the timing thread measured the
hand-off too: under a log flood the two threads wait for each other's GIL for up to a switch
interval, which says nothing about the server.) While nothing is being timed, `wait` keeps reading.
"""

from __future__ import annotations

import itertools
import json
import os
import selectors
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

LOGS_PREFIX = b'{"jsonrpc":"2.0","method":"minicloud/logs"'
# what VS Code announces for completion items: documentation fetched through completionItem/resolve
RESOLVE_DOCUMENTATION = {"completionItem": {"documentationFormat": ["markdown", "plaintext"],
                                            "resolveSupport": {"properties": ["documentation", "detail"]}}}


class ServerExited(RuntimeError):
    pass


class TimedClient:
    def __init__(self, command: list[str], root: Path, env: dict[str, str] | None = None,
                 logs_capability: bool = True, completion: dict[str, Any] | None = None) -> None:
        self.started = time.perf_counter()
        self.answer_bytes = 0  # the size of the last answer's body
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env or os.environ.copy())
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self._out = self.proc.stdout.fileno()
        os.set_blocking(self._out, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._out, selectors.EVENT_READ)
        self._buffer = bytearray()
        self._ids = itertools.count(1)
        self._answers: dict[int, dict[str, Any]] = {}
        self.on_notification: Callable[[str, Any, float], None] | None = None
        self.server_requests: list[tuple[str, Any, float]] = []  # (method, params, arrival time)
        # log notifications are kept raw and parsed later (an editor queues their rendering), so that
        # the client's own parsing does not delay the answers being timed
        self.raw_logs: list[tuple[bytes, float]] = []
        caps = {"window": {"workDoneProgress": False},
                "experimental": {"minicloudLogs": True} if logs_capability else {}}
        if completion is not None:
            caps["textDocument"] = {"completion": completion}
        self.request("initialize", {"processId": os.getpid(), "rootUri": root.as_uri(), "capabilities": caps,
                                    "initializationOptions": {"env": "test"}})
        self.initialized_at = time.perf_counter()
        self.initialize_ms = (self.initialized_at - self.started) * 1000
        self.notify("initialized", {})

    # ---- the loop
    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def _read_available(self, timeout: float | None) -> None:
        if not self._selector.select(timeout):
            return
        while True:
            try:
                data = os.read(self._out, 1 << 20)
            except BlockingIOError:
                break
            if not data:
                raise ServerExited(f"the server exited (code {self.proc.poll()})")
            self._buffer += data
        self._dispatch()

    def _dispatch(self) -> None:
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = next(int(line.split(b":")[1]) for line in bytes(self._buffer[:end]).split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            if len(self._buffer) < end + 4 + length:
                return
            body = bytes(self._buffer[end + 4:end + 4 + length])
            del self._buffer[:end + 4 + length]
            arrived = time.time()
            if body.startswith(LOGS_PREFIX):
                self.raw_logs.append((body, arrived))
                continue
            msg = json.loads(body)
            if "id" in msg and "method" not in msg:
                self._answers[msg["id"]] = msg
                self.answer_bytes = length
            elif "id" in msg:  # a request from the server (e.g. an alert's message): kept, answered null
                self.server_requests.append((msg["method"], msg.get("params"), arrived))
                self._send({"jsonrpc": "2.0", "id": msg["id"], "result": None})
            elif self.on_notification is not None:
                self.on_notification(msg["method"], msg.get("params"), arrived)

    def wait(self, seconds: float) -> None:
        """Sleep while handling what the server sends (log notifications keep arriving)."""
        deadline = time.perf_counter() + seconds
        while (left := deadline - time.perf_counter()) > 0:
            self._read_available(left)

    # ---- the API
    def take_logs(self) -> list[tuple[str, float]]:
        """(line, arrival time) of every log line received so far, and forget them."""
        self._read_available(0)
        raw, self.raw_logs = self.raw_logs, []
        return [(ln["line"], arrived) for body, arrived in raw for ln in json.loads(body)["params"]["lines"]]

    def notify(self, method: str, params: Any) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method: str, params: Any, timeout: float = 600) -> Any:
        rid = next(self._ids)
        self._send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        deadline = time.perf_counter() + timeout
        while rid not in self._answers:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"{method}: no answer in {timeout} s")
            self._read_available(left)
        msg = self._answers.pop(rid)
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
        self._selector.close()


# ---- a real-sized database: what the server's index and SQL completions are measured against
SCHEMA_WORDS = ("account", "address", "audit", "batch", "billing", "campaign", "contract", "customer", "delivery",
                "invoice", "ledger", "order", "payment", "price", "product", "refund", "shipment", "stock",
                "supplier", "ticket")
COLUMN_TYPES = ("INT", "BIGINT", "VARCHAR(64)", "VARCHAR(255)", "DECIMAL(12,2)", "DATETIME", "DATE", "TINYINT(1)",
                "TEXT")


def large_table_names(prefix: str = "", tables: int = 2000) -> list[str]:
    """`tables` names as a business database has them: a few hundred per subject (`order_0042`)."""
    per = -(-tables // len(SCHEMA_WORDS))
    return [f"{prefix}{SCHEMA_WORDS[i // per]}_{i % per:04d}" for i in range(tables)]


def large_schema_statements(prefix: str = "", tables: int = 2000, columns: int = 25,
                            batch: int = 80) -> list[str]:
    """CREATE TABLE statements for `tables` tables of `columns` columns each, joined into batches (one
    argument of a `mariadb -e` each, well under Linux's 128 KB per argument)."""
    statements = []
    for name in large_table_names(prefix, tables):
        cols = ", ".join(f"{SCHEMA_WORDS[(k * 7) % len(SCHEMA_WORDS)]}_field_{k:02d} {COLUMN_TYPES[k % len(COLUMN_TYPES)]}"
                         for k in range(1, columns))
        statements.append(f"CREATE TABLE IF NOT EXISTS `{name}` (id BIGINT PRIMARY KEY, {cols})")
    return [";\n".join(statements[i:i + batch]) + ";" for i in range(0, len(statements), batch)]


def create_large_schema(cloud, env: str, prefix: str = "", tables: int = 2000, columns: int = 25) -> list[str]:
    """Create the tables in the env's live database (through `db_query`, in batches); their names."""
    for sql in large_schema_statements(prefix, tables, columns):
        cloud.db_query(env, sql)
    return large_table_names(prefix, tables)


def drop_tables(cloud, env: str, names: list[str], batch: int = 200) -> None:
    for i in range(0, len(names), batch):
        cloud.db_query(env, "DROP TABLE IF EXISTS " + ", ".join(f"`{n}`" for n in names[i:i + batch]))
