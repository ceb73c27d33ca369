"""A tiny HTTPS client for tests: trusts the instance's local CA, and a bounded request loop."""

from __future__ import annotations

import json
import ssl
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any


def ca_context(ca_path: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_path)


def request(url: str, ca_path: str, data: dict | None = None, timeout: float = 5) -> tuple[int, Any]:
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ca_context(ca_path), timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


@dataclass
class RequestLoop:
    """Requests `url` over and over (loopback only) until stopped or `limit` is reached."""

    url: str
    ca_path: str
    limit: int = 5000
    statuses: list[int | str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RequestLoop:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)

    def _run(self) -> None:
        ctx = ca_context(self.ca_path)
        while not self._stop.is_set() and len(self.statuses) < self.limit:
            try:
                with urllib.request.urlopen(self.url, context=ctx, timeout=5) as resp:
                    resp.read()
                    self.statuses.append(resp.status)
            except urllib.error.HTTPError as err:
                self.statuses.append(err.code)
            except Exception as err:  # noqa: BLE001 - a refused or reset connection is a failure too
                self.statuses.append(type(err).__name__)

    @property
    def failures(self) -> list[int | str]:
        return [s for s in self.statuses if s != 200]
