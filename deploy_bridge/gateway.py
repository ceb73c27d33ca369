"""The edge gateway: one nginx per instance on 127.0.0.1:PORT, HTTPS for every app and sandbox host.

Two kinds of state, both files under `<home>/<instance>/gateway/`, mounted read-only into the container:
- `hosts/HOST.conf`: one TLS server block per host name. Written when a host is added; adding or
  removing a host is the only change that reloads nginx.
- `routes.tsv`: which container serves each host (or the 503 text of a stopped env). nginx's Lua
  module reads it into a shared dictionary when asked (`apply`), so deploys, rollbacks and restarts
  switch without a reload: clients' keep-alive connections stay open and no request is lost. Every
  proxied request is counted against its upstream until it ends; a drain waits for that count.

Architecture Invariant: a switch (deploy, rollback, restart, stop, start) never reloads nginx.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import APIError, NotFound

from . import ca, images
from .config import LABEL_IMAGE, LOG_CONFIG, Settings
from .errors import MinicloudError, PortInUse
from .polling import poll_until
from .progress import NullProgress, Progress

CONTAINER_CONF = "/etc/minicloud"
METRICS_LOG_CONF = "metrics-log.conf"  # included by proxied.conf where a collector reads the log
ADMIN = "http://127.0.0.1:8080/_minicloud"
DEFAULT_CERT_NAME = "minicloud.localhost"  # what a client of an unknown host is shown
FUNCTIONS_PATH = "/fn"  # HOST/fn in routes.tsv: where the env's functions scheduler takes /fn/ requests
UPSTREAM_SYSCTLS = {"net.ipv4.tcp_tw_reuse": "1", "net.ipv4.ip_local_port_range": "1024 65000"}
DATA_PATH = "/cloud"  # HOST/cloud in routes.tsv: where the env's data API takes /cloud/ requests


@dataclass(frozen=True)
class Route:
    """One line of routes.tsv. A stopped route keeps the container that served it (for `start`)."""

    host: str
    upstream: str | None  # container name
    port: int | None = None
    message: str = ""  # the 503 text while stopped
    stopped: bool = False
    canary: str | None = None  # a second container (same port) that `canary_percent` of the users reach
    canary_percent: int = 0

    @property
    def serving(self) -> str | None:
        """The container that gets requests now (None while stopped)."""
        return None if self.stopped else self.upstream

    @property
    def applied(self) -> str:
        """What the gateway's shared dictionary holds for this route (see minicloud.lua)."""
        if not self.serving:
            return "!" + " ".join(self.message.split())
        target = f"{self.upstream}:{self.port}"
        return f"{target}|{self.canary}:{self.port}|{self.canary_percent}" if self.canary else target

    def line(self) -> str:
        message = " ".join(self.message.split())  # one line, no tabs
        target = ("!" + self.upstream if self.upstream else "-") if self.stopped else (self.upstream or "-")
        canary = f"\t{self.canary}\t{self.canary_percent}" if self.canary else ""
        return f"{self.host}\t{target}\t{self.port or ''}\t{message}{canary}\n"

    @classmethod
    def parse(cls, line: str) -> Route | None:
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 3 or not parts[0]:
            return None
        target = parts[1]
        stopped = target == "-" or target.startswith("!")
        upstream = target.lstrip("!") if target != "-" else None
        port = int(parts[2]) if parts[2].isdigit() else None
        canary = parts[4] if len(parts) > 5 and parts[4] else None
        percent = int(parts[5]) if canary and parts[5].isdigit() else 0
        return cls(parts[0], upstream or None, port, parts[3] if len(parts) > 3 else "", stopped, canary, percent)


class Edge:
    def __init__(self, client: docker.DockerClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.folder = settings.instance_dir() / "gateway"
        self.hosts_dir = self.folder / "hosts"
        self.certs = self.folder / "certs"
        self.routes_file = self.folder / "routes.tsv"

    @property
    def ca(self) -> ca.LocalCA:
        return ca.ensure_ca(self.settings.instance_dir() / "ca")

    def container(self) -> docker.models.containers.Container | None:
        try:
            return self.client.containers.get(self.settings.edge_container)
        except NotFound:
            return None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Route edits of every app of the instance go through here (each holds only its own env's lock)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ lifecycle
    def _prepare_files(self) -> None:
        for folder in (self.hosts_dir, self.certs, self.folder / "access"):  # access/: the metrics' access log
            folder.mkdir(parents=True, exist_ok=True)
        if not self.generation_file.is_file():
            self._write_generation("initial")
        self.routes_file.touch(exist_ok=True)
        # the JSON access log the instance's collector tails (proxied.conf includes it)
        self._write_if_changed(self.folder / METRICS_LOG_CONF,
                               "access_log /var/log/minicloud/access.log minicloud_json buffer=64k flush=1s;\n")
        self._migrate_route_files()
        cert, key = ca.issue(self.ca, DEFAULT_CERT_NAME, self.certs)
        self._write_if_changed(self.folder / "default.conf", (
            "server {\n"
            f"    listen {self.settings.gateway_port} ssl default_server;\n"
            f"    ssl_certificate {CONTAINER_CONF}/certs/{cert.name};\n"
            f"    ssl_certificate_key {CONTAINER_CONF}/certs/{key.name};\n"
            "    default_type text/plain;\n"
            '    location / { return 404 "minicloud: no app at $host (minicloud status ENV shows the URLs)\\n"; }\n'
            "}\n"))

    def _migrate_route_files(self) -> None:
        """Gateways before routes.tsv kept the upstream in `routes/HOST.conf`; carry those routes over."""
        old = self.folder / "routes"
        if not old.is_dir():
            return
        routes = {r.host: r for r in self.routes()}
        for conf in sorted(old.glob("*.conf")):
            host = conf.name[: -len(".conf")]
            words = conf.read_text().split()
            if host not in routes and "$upstream" in words:
                target = words[words.index("$upstream") + 3].rstrip(";")  # proxy_pass http://$upstream:PORT;
                port = target.rsplit(":", 1)[-1]
                upstream = words[words.index("$upstream") + 1].rstrip(";")
                routes[host] = Route(host, upstream, int(port) if port.isdigit() else None)
            self._write_if_changed(self.host_file(host), self._server_block(host))
            conf.unlink()
        self._write_routes(routes)
        old.rmdir()

    def ensure(self, progress: Progress | None = None) -> docker.models.containers.Container:
        progress = progress or NullProgress()
        image = images.ensure_recipe(self.client, "gateway", progress)
        port = self.settings.gateway_port
        self._prepare_files()
        current = self.container()
        if current is not None:
            wanted = current.labels.get("minicloud.port") == str(port) and current.image.tags[:1] == [image] \
                and (current.attrs.get("HostConfig") or {}).get("Sysctls") == UPSTREAM_SYSCTLS
            if wanted and current.status == "running":
                return current
            if wanted:
                current.start()
                self._wait_up(current)
                return current
            progress.report("replacing the gateway (its image or port changed)")
            current.remove(force=True)
        self._check_port_free(port)
        progress.report(f"starting the HTTPS gateway on 127.0.0.1:{port}")
        labels = self.settings.labels(role="gateway")
        labels.update({"minicloud.port": str(port), LABEL_IMAGE: "gateway"})
        try:
            container = self.client.containers.run(
                image, name=self.settings.edge_container, detach=True, labels=labels,
                ports={f"{port}/tcp": ("127.0.0.1", port)},
                volumes={str(self.folder): {"bind": CONTAINER_CONF, "mode": "ro"},
                         str(self.folder / "access"): {"bind": "/var/log/minicloud", "mode": "rw"}},
                restart_policy={"Name": "unless-stopped"}, log_config=LOG_CONFIG,
                # every proxied request opens a connection to its upstream: at a thousand requests a second
                # the default ports (28k, each held 60 s in TIME_WAIT after it closes) run out in half a
                # minute and connects fail (502). Reuse TIME_WAIT ports and take the whole range.
                sysctls=UPSTREAM_SYSCTLS,
            )
        except APIError as err:
            if "port is already allocated" in str(err) or "address already in use" in str(err):
                raise PortInUse(f"the gateway port {port} is taken", hint=_PORT_HINT) from None
            raise
        self._wait_up(container)
        return container

    def remove(self) -> None:
        """Remove the gateway container (its files stay: a later `env build` starts it again)."""
        edge = self.container()
        if edge is not None:
            edge.remove(force=True)

    def _check_port_free(self, port: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError as err:
                if err.errno == errno.EADDRINUSE:
                    raise PortInUse(f"the gateway port 127.0.0.1:{port} is taken by another program",
                                    hint=_PORT_HINT) from None
                raise

    def _wait_up(self, container: docker.models.containers.Container, timeout: float = 20) -> None:
        def up() -> bool:
            code, _ = container.exec_run(["curl", "-s", "-o", "/dev/null", "-f", f"{ADMIN}/health"])
            return code == 0

        def still_running() -> None:
            container.reload()
            if container.status != "running":
                raise MinicloudError("the gateway did not start", details=container.logs(tail=20).decode(errors="replace"))

        if not poll_until(up, timeout, 0.2, on_wait=still_running):
            raise MinicloudError("the gateway did not start", details=container.logs(tail=20).decode(errors="replace"))

    # ------------------------------------------------------------------ networks
    def attach(self, network: docker.models.networks.Network, aliases: list[str]) -> None:
        """Join an env's network, answering there to the env's public host names too (same URL inside)."""
        edge = self.container()
        assert edge is not None
        edge.reload()
        if network.name in edge.attrs["NetworkSettings"]["Networks"]:
            return
        network.connect(edge, aliases=aliases)

    def detach(self, network: docker.models.networks.Network) -> None:
        edge = self.container()
        if edge is None:
            return
        with contextlib.suppress(NotFound, APIError):
            network.disconnect(edge, force=True)

    # ------------------------------------------------------------------ hosts (reload)
    def host_file(self, host: str) -> Path:
        return self.hosts_dir / f"{host}.conf"

    def has_host(self, host: str) -> bool:
        return self.host_file(host).is_file()

    def _server_block(self, host: str) -> str:
        cert, key = ca.issue(self.ca, host, self.certs)
        return (f"# minicloud: the TLS server of {host}; which container serves it is in routes.tsv\n"
                "server {\n"
                f"    listen {self.settings.gateway_port} ssl;\n"
                f"    server_name {host};\n"
                f"    ssl_certificate {CONTAINER_CONF}/certs/{cert.name};\n"
                f"    ssl_certificate_key {CONTAINER_CONF}/certs/{key.name};\n"
                f"    location / {{ set $minicloud_route {host}; include /etc/nginx/minicloud/proxy.conf; }}\n"
                # minicloud's own services: kept-alive upstream connections (pooled.conf)
                f"    location /fn/ {{ set $minicloud_route {host}{FUNCTIONS_PATH}; "
                "include /etc/nginx/minicloud/pooled.conf; }\n"
                f"    location /cloud/ {{ set $minicloud_route {host}{DATA_PATH}; "
                "include /etc/nginx/minicloud/pooled.conf; }\n"
                "}\n")

    def add_host(self, host: str) -> None:
        """Make `host` a name the gateway serves (TLS certificate and server block); reloads only if new."""
        with self._locked():
            if self._write_if_changed(self.host_file(host), self._server_block(host)):
                self.reload()

    def remove_host(self, host: str) -> None:
        with self._locked():
            self._write_routes({r.host: r for r in self.routes() if r.host.split("/", 1)[0] != host})
            existed = self.host_file(host).is_file()
            self.host_file(host).unlink(missing_ok=True)
            if self.container() is not None:
                self._apply()
                if existed:
                    self.reload()

    @staticmethod
    def _write_if_changed(path: Path, text: str) -> bool:
        if path.is_file() and path.read_text() == text:
            return False
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}")
        tmp.write_text(text)
        tmp.replace(path)
        return True

    # ------------------------------------------------------------------ routes (no reload)
    def routes(self) -> list[Route]:
        if not self.routes_file.is_file():
            return []
        return [r for line in self.routes_file.read_text().splitlines(keepends=True) if (r := Route.parse(line))]

    def route(self, host: str) -> Route | None:
        return next((r for r in self.routes() if r.host == host), None)

    def upstream_of(self, host: str) -> str | None:
        """The container that serves `host`, or served it before a stop."""
        route = self.route(host)
        return route.upstream if route else None

    def set_route(self, host: str, upstream: str | None, port: int | None = None) -> None:
        """Point `host` at container `upstream:port` (None: answer 404 as an unknown host would).

        Returns once the gateway's workers route new requests there; nothing is reloaded.
        """
        self._put(Route(host, upstream, port if upstream else None))

    def set_canary(self, host: str, canary: str | None, percent: int = 0) -> None:
        """Send `percent` of the users of `host` to container `canary` (same port; sticky by a cookie the
        gateway sets), the others to the route's container; None: everyone to the route's container."""
        current = self.route(host)
        if current is None or not current.serving:
            raise MinicloudError(f"{host} has no serving release to split traffic with")
        self._put(Route(host, current.upstream, current.port, "", False, canary, percent if canary else 0))

    def stop_route(self, host: str, message: str) -> None:
        """Answer 503 with `message` for `host`, remembering which container served it."""
        current = self.route(host)
        self._put(Route(host, current.upstream if current else None, current.port if current else None,
                        message, stopped=True))

    def _put(self, route: Route) -> None:
        self.add_host(route.host.split("/", 1)[0])  # a route key is HOST, HOST/fn or HOST/cloud
        with self._locked():
            routes = {r.host: r for r in self.routes()}
            routes[route.host] = route
            self._write_routes(routes)
            self._apply(expect=route)

    def _write_routes(self, routes: dict[str, Route]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write_if_changed(self.routes_file, "".join(routes[h].line() for h in sorted(routes)))

    def _apply(self, expect: Route | None = None) -> None:
        """Have the gateway read routes.tsv again, and check it now routes `expect` as written."""
        edge = self.ensure()
        code, out = edge.exec_run(["curl", "-s", "-f", "-X", "POST", f"{ADMIN}/routes"])
        if code != 0:
            raise MinicloudError("the gateway did not take its new routes", details=out.decode(errors="replace"))
        if expect is not None:
            wanted = expect.applied
            applied = dict(line.split(" ", 1) for line in out.decode(errors="replace").splitlines() if " " in line)
            if applied.get(expect.host) != wanted:
                raise MinicloudError(f"the gateway routes {expect.host} to {applied.get(expect.host)!r}, "
                                     f"not {wanted!r}", hint="minicloud status ENV; the gateway's log may say why")

    def inflight(self, upstream: str, port: int) -> int:
        """Requests the gateway is proxying to `upstream:port` right now (0 when it cannot tell)."""
        edge = self.container()
        if edge is None:
            return 0
        code, out = edge.exec_run(["curl", "-s", "-f", f"{ADMIN}/inflight?upstream={upstream}:{port}"])
        text = out.decode(errors="replace").strip()
        return int(text) if code == 0 and text.lstrip("-").isdigit() else 0

    # ------------------------------------------------------------------ reload (hosts only)
    @property
    def generation_file(self) -> Path:
        return self.folder / "generation.conf"

    def _write_generation(self, token: str) -> None:
        self.generation_file.write_text(f'location = /_minicloud/generation {{ return 200 "{token}"; }}\n')

    def reload(self) -> None:
        """Apply added or removed hosts, and return once new connections get the new configuration.

        `nginx -s reload` only signals the master; until its new workers run, new connections may
        still reach old ones. Each reload carries a fresh generation token that we wait to see.
        """
        edge = self.ensure()  # also replaces an edge from an older recipe
        token = uuid.uuid4().hex[:12]
        self._write_generation(token)
        code, out = edge.exec_run(["nginx", "-t", "-q"])
        if code != 0:
            raise MinicloudError("the gateway configuration is invalid", details=out.decode(errors="replace"))
        code, out = edge.exec_run(["nginx", "-s", "reload"])
        if code != 0:
            raise MinicloudError("the gateway did not reload", details=out.decode(errors="replace"))

        def seen() -> bool:
            _, got = edge.exec_run(["curl", "-s", "--max-time", "1", f"{ADMIN}/generation"])
            return got.decode(errors="replace").strip() == token

        if not poll_until(seen, 10, 0.05):
            raise MinicloudError("the gateway did not apply its new configuration within 10 s",
                                 details=edge.logs(tail=20).decode(errors="replace"))

    # ------------------------------------------------------------------ probes
    def probe(self, upstream: str, port: int, path: str) -> int | None:
        """HTTP status of http://upstream:port/path as the gateway sees it (None: no answer)."""
        return self._curl(f"http://{upstream}:{port}{path}")

    def probe_route(self, host: str, path: str) -> int | None:
        """HTTP status of https://host/path through the gateway itself, as a client would get it."""
        port = self.settings.gateway_port
        return self._curl(f"https://{host}:{port}{path}", "-k", "--resolve", f"{host}:{port}:127.0.0.1")

    def wait_route(self, host: str, path: str, timeout: float = 10) -> bool:
        """Wait until the route answers 2xx: nginx caches names for a second, a restarted container
        may come back on another address."""
        def ok() -> bool:
            code = self.probe_route(host, path)
            return code is not None and 200 <= code < 300

        return bool(poll_until(ok, timeout, 0.2))

    def fetch(self, url: str, timeout: float = 5) -> tuple[int | None, bytes]:
        """GET `url` from inside the gateway (it is on every env's network): (status, body)."""
        edge = self.container()
        if edge is None:
            return None, b""
        marker = b"\n--minicloud-status:"
        _, out = edge.exec_run(["curl", "-s", "--max-time", str(timeout), "-w", marker.decode() + "%{http_code}",
                                url])
        body, _, code = out.rpartition(marker)
        text = code.decode(errors="replace").strip()
        return (int(text) if text.isdigit() and text != "000" else None), body

    def _curl(self, url: str, *options: str) -> int | None:
        edge = self.container()
        if edge is None:
            return None
        _, out = edge.exec_run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2",
                                *options, url])
        text = out.decode(errors="replace").strip()
        return int(text) if text.isdigit() and text != "000" else None


_PORT_HINT = "stop the program using it, or choose another port with MINICLOUD_GATEWAY_PORT=NNNN"
