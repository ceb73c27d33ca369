"""The edge gateway: one nginx per instance on 127.0.0.1:PORT, HTTPS for every app and sandbox host.

A route is one small nginx server block per host name, in `<home>/<instance>/gateway/routes/`. Switching
a release rewrites the block to name the new container and reloads nginx, which is graceful: requests in
flight finish on the old workers, new ones go to the new container. Nothing is lost in the switch.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import time
import uuid
from pathlib import Path

import docker
from docker.errors import APIError, NotFound

from . import ca, images
from .config import LABEL_IMAGE, LOG_CONFIG, Settings
from .errors import MinicloudError, PortInUse
from .progress import NullProgress, Progress

CONTAINER_CONF = "/etc/minicloud"


class Edge:
    def __init__(self, client: docker.DockerClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.folder = settings.instance_dir() / "gateway"
        self.routes = self.folder / "routes"
        self.certs = self.folder / "certs"

    @property
    def ca(self) -> ca.LocalCA:
        return ca.ensure_ca(self.settings.instance_dir() / "ca")

    def container(self) -> docker.models.containers.Container | None:
        try:
            return self.client.containers.get(self.settings.edge_container)
        except NotFound:
            return None

    # ------------------------------------------------------------------ lifecycle
    def ensure(self, progress: Progress | None = None) -> docker.models.containers.Container:
        progress = progress or NullProgress()
        image = images.ensure_recipe(self.client, "gateway", progress)
        port = self.settings.gateway_port
        self.routes.mkdir(parents=True, exist_ok=True)
        self.certs.mkdir(parents=True, exist_ok=True)
        if not self.generation_file.is_file():
            self._write_generation("initial")
        self.ca  # noqa: B018 - create the CA before the first certificate is needed
        current = self.container()
        if current is not None:
            wanted = current.labels.get("minicloud.port") == str(port) and current.image.tags[:1] == [image]
            if wanted and current.status == "running":
                return current
            if wanted:
                current.start()
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
                volumes={str(self.folder): {"bind": CONTAINER_CONF, "mode": "ro"}},
                restart_policy={"Name": "unless-stopped"}, log_config=LOG_CONFIG,
            )
        except APIError as err:
            if "port is already allocated" in str(err) or "address already in use" in str(err):
                raise PortInUse(f"the gateway port {port} is taken", hint=_PORT_HINT) from None
            raise
        self._wait_up(container)
        return container

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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code, _ = container.exec_run(["curl", "-s", "-o", "/dev/null", "http://127.0.0.1:8080/_minicloud/health"])
            if code == 0:
                return
            container.reload()
            if container.status != "running":
                break
            time.sleep(0.2)
        logs = container.logs(tail=20).decode(errors="replace")
        raise MinicloudError("the gateway did not start", details=logs)

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

    # ------------------------------------------------------------------ routes
    def route_file(self, host: str) -> Path:
        return self.routes / f"{host}.conf"

    def set_route(self, host: str, upstream: str | None, port: int | None = None, stopped_message: str = "") -> None:
        """Point `host` at container `upstream:port`, or answer 503 with `stopped_message` when None."""
        cert, key = ca.issue(self.ca, host, self.certs)
        if upstream:
            body = (f"        set $upstream {upstream};\n"
                    f"        proxy_pass http://$upstream:{port};\n"
                    "        proxy_http_version 1.1;\n"
                    "        proxy_set_header Host $host;\n"
                    "        proxy_set_header X-Forwarded-For $remote_addr;\n"
                    "        proxy_set_header X-Forwarded-Proto https;\n"
                    "        proxy_set_header Upgrade $http_upgrade;\n"
                    "        proxy_set_header Connection $connection_upgrade;\n"
                    "        proxy_connect_timeout 3s;\n"
                    "        proxy_read_timeout 300s;\n")
        else:
            text = (stopped_message or "stopped").replace('"', "'")
            body = f'        default_type text/plain;\n        return 503 "minicloud: {text}\\n";\n'
        conf = (f"# minicloud route for {host} (managed: rewritten on deploy, rollback, stop, start)\n"
                "server {\n"
                f"    listen {self.settings.gateway_port} ssl;\n"
                f"    server_name {host};\n"
                f"    ssl_certificate {CONTAINER_CONF}/certs/{cert.name};\n"
                f"    ssl_certificate_key {CONTAINER_CONF}/certs/{key.name};\n"
                "    location / {\n" + body + "    }\n}\n")
        path = self.route_file(host)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(conf)
        tmp.replace(path)
        self.reload()

    def upstream_of(self, host: str) -> str | None:
        path = self.route_file(host)
        if not path.is_file():
            return None
        for line in path.read_text().splitlines():
            parts = line.split()
            if parts[:2] == ["set", "$upstream"]:
                return parts[2].rstrip(";")
        return None

    def remove_route(self, host: str) -> None:
        self.route_file(host).unlink(missing_ok=True)
        if self.container() is not None:
            self.reload()

    @property
    def generation_file(self) -> Path:
        return self.folder / "generation.conf"

    def _write_generation(self, token: str) -> None:
        self.generation_file.write_text(f'location = /_minicloud/generation {{ return 200 "{token}"; }}\n')

    def reload(self) -> None:
        """Apply the routes, and return once new connections get the new configuration.

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
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            _, seen = edge.exec_run(["curl", "-s", "--max-time", "1", "http://127.0.0.1:8080/_minicloud/generation"])
            if seen.decode(errors="replace").strip() == token:
                return
            time.sleep(0.05)
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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.probe_route(host, path)
            if code is not None and 200 <= code < 300:
                return True
            time.sleep(0.2)
        return False

    def _curl(self, url: str, *options: str) -> int | None:
        edge = self.container()
        if edge is None:
            return None
        _, out = edge.exec_run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2",
                                *options, url])
        text = out.decode(errors="replace").strip()
        return int(text) if text.isdigit() and text != "000" else None


_PORT_HINT = "stop the program using it, or choose another port with MINICLOUD_GATEWAY_PORT=NNNN"
