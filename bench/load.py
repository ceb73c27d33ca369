"""HTTPS load clients for the bench and the tests (loopback only): one request, and bounded request loops of each kind of client
a real app meets — a new connection per request, persistent keep-alive connections, long requests."""

from __future__ import annotations

import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


def trusting(ca_path: str) -> ssl.SSLContext:
    """A TLS context that trusts the instance's local CA."""
    return ssl.create_default_context(cafile=ca_path)


def request(url: str, ca_path: str, data: dict | None = None, timeout: float = 5) -> tuple[int, Any]:
    with httpx.Client(verify=trusting(ca_path), timeout=timeout) as client:
        response = client.post(url, json=data) if data is not None else client.get(url)
    try:
        return response.status_code, response.json()
    except json.JSONDecodeError:
        return response.status_code, response.text


def by_name(host: str | None) -> dict[str, Any]:
    """Request options that ask an address for `host`: its name in TLS (SNI, checked against the
    certificate) and in the Host header. Nothing when `host` is None."""
    return {} if host is None else {"headers": {"Host": host}, "extensions": {"sni_hostname": host}}


@dataclass
class RequestLoop:
    """`clients` threads request `url` until stopped, each at most every `interval` seconds.

    keep_alive=True: each thread keeps one persistent connection (what browsers and HTTP libraries do);
    False: a new connection per request. Bounded by `limit` requests per thread.
    """

    url: str
    ca_path: str
    clients: int = 1
    keep_alive: bool = False
    interval: float = 0.0
    timeout: float = 10
    limit: int = 5000
    sni_hostname: str | None = None  # the host name to ask for when `url` names an address (a swarm node)
    statuses: list[int | str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> RequestLoop:
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(self.clients)]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout + 30)

    def _client(self) -> httpx.Client:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1 if self.keep_alive else 0)
        return httpx.Client(verify=trusting(self.ca_path), timeout=self.timeout, limits=limits)

    def _run(self) -> None:
        sent = 0
        with self._client() as client:
            while not self._stop.is_set() and sent < self.limit:
                sent += 1
                try:
                    status: int | str = client.get(self.url, **by_name(self.sni_hostname)).status_code
                except httpx.HTTPError as err:  # a closed, refused or reset connection is a failure too
                    status = type(err).__name__
                with self._lock:
                    self.statuses.append(status)
                if self.interval:
                    time.sleep(self.interval)

    def wait_for(self, count: int, timeout: float = 30) -> None:
        """Return once `count` requests have been answered (the loop is really running)."""
        deadline = time.monotonic() + timeout
        while len(self.statuses) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(self.statuses)} requests in {timeout}s")
            time.sleep(0.02)

    @property
    def failures(self) -> list[int | str]:
        return [s for s in self.statuses if s != 200]


@dataclass
class LongRequests:
    """`count` requests to `url` (a slow endpoint), all started at once and in flight together."""

    url: str
    ca_path: str
    count: int = 5
    timeout: float = 60
    sni_hostname: str | None = None
    results: list[int | str] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> LongRequests:
        self._threads = [threading.Thread(target=self._one, daemon=True) for _ in range(self.count)]
        for t in self._threads:
            t.start()
        return self

    def _one(self) -> None:
        try:
            with httpx.Client(verify=trusting(self.ca_path), timeout=self.timeout) as client:
                self.started.set()
                status: int | str = client.get(self.url, **by_name(self.sni_hostname)).status_code
        except httpx.HTTPError as err:
            status = type(err).__name__
        self.results.append(status)

    def __exit__(self, *exc) -> None:
        for t in self._threads:
            t.join(timeout=self.timeout + 10)


class WebhookReceiver:
    """A webhook receiver on 127.0.0.1 (for alerts): every JSON POST, with the time it came."""

    def __init__(self) -> None:
        import http.server

        self.posts: list[tuple[float, dict]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.posts.append((time.time(), json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, state: str, after: float, timeout: float = 60, alert: str | None = None) -> tuple[float, dict]:
        """The first POST (of `alert`, if named) in `state` that came at or after `after`: (when, body)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for at, post in list(self.posts):
                if post["state"] == state and at >= after and alert in (None, post.get("alert")):
                    return at, post
            time.sleep(0.02)
        raise AssertionError(f"no {state} webhook{f' for {alert}' if alert else ''} within {timeout}s; "
                             f"got {[p for _, p in self.posts]}")


def bump(workspace) -> None:
    """A new version of the bench app (bench/app/server.js): a change to deploy."""
    server = workspace / "server.js"
    text = server.read_text()
    start = text.index("const version = '") + len("const version = '")
    end = text.index("'", start)
    server.write_text(text[:start] + f"v{time.time_ns()}" + text[end:])
