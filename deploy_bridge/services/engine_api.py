"""The Docker engine API over its unix socket, for minicloud's in-container programs (keeper, scheduler).

Standard library only (their image has no Docker SDK). Blocking calls: run them in a thread.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from collections.abc import Iterator
from typing import Any


class EngineError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"engine answered {status}: {body!r}")
        self.status, self.body = status, body


class Engine:
    def __init__(self, socket_path: str = "/var/run/docker.sock") -> None:
        self.socket_path = socket_path

    def _connect(self, timeout: float | None) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection("localhost", timeout=timeout)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(self.socket_path)
        conn.sock = sock
        return conn

    def call(self, method: str, path: str, body: Any = None, timeout: float = 60) -> tuple[int, Any]:
        conn = self._connect(timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"content-type": "application/json"} if data else {})
            response = conn.getresponse()
            raw = response.read()
            parsed: Any = raw
            if raw.strip().startswith((b"{", b"[")):
                parsed = json.loads(raw)
            return response.status, parsed
        finally:
            conn.close()

    def ok(self, method: str, path: str, body: Any = None, timeout: float = 60) -> Any:
        """The answer of a call that must succeed (2xx or 304), else EngineError."""
        status, answer = self.call(method, path, body, timeout)
        if status >= 300 and status != 304:
            raise EngineError(status, answer)
        return answer

    @staticmethod
    def filters(**kinds: list[str]) -> str:
        return urllib.parse.quote(json.dumps(kinds))

    def containers(self, labels: list[str], all: bool = True) -> list[dict]:
        found = self.ok("GET", f"/containers/json?all={int(all)}&filters={self.filters(label=labels)}")
        return found if isinstance(found, list) else []

    def inspect(self, container: str) -> dict | None:
        status, body = self.call("GET", f"/containers/{container}/json")
        return body if status == 200 and isinstance(body, dict) else None

    def create(self, name: str, config: dict) -> str:
        return self.ok("POST", f"/containers/create?name={urllib.parse.quote(name)}", config)["Id"]

    def start(self, container: str) -> None:
        self.ok("POST", f"/containers/{container}/start")

    def restart(self, container: str, timeout: int = 0) -> None:
        self.ok("POST", f"/containers/{container}/restart?t={timeout}")

    def set_memory(self, container: str, megabytes: int) -> None:
        """Change a running container's memory limit (no swap beyond it)."""
        self.ok("POST", f"/containers/{container}/update", {"Memory": megabytes * 2**20,
                                                             "MemorySwap": megabytes * 2**20})

    def remove(self, container: str) -> None:
        status, body = self.call("DELETE", f"/containers/{container}?force=1")
        if status not in (204, 404, 409):
            raise EngineError(status, body)

    def events(self, labels: list[str], actions: list[str]) -> Iterator[dict]:
        """Container events with these labels and actions, as they happen (a blocking generator)."""
        query = self.filters(type=["container"], event=actions, label=labels)
        conn = self._connect(None)
        conn.request("GET", f"/events?filters={query}")
        response = conn.getresponse()
        while True:
            line = response.readline()
            if not line:
                return
            if line.strip():
                yield json.loads(line)


def survive(step, say) -> None:
    """Run `step`; an error is said (`say(text)`), never raised: a program that runs for as long as the
    instance does outlives any one bad answer."""
    try:
        step()
    except Exception as err:  # noqa: BLE001 - see above
        say(f"{type(err).__name__}: {err}")
