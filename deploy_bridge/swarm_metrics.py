"""The metrics and alerts of a swarm env: the collector program of one machine (services/collector.py) as
a service of one task, beside the env's gateway on one manager node.

The env's gateway writes its JSON access log onto its own volume (with the address of the task that
answered each request); the collector reads it there, asks the manager's API which task had that address
(its container labels: app, env, role, release), keeps metrics.db on a volume of its own and evaluates the
env's `[alerts]` (a Swarm config: a changed rule is a new config and a restart, which loses no request).
Both services are pinned to one node, where the gateway's volume is. CPU and memory are sampled for the
env's containers on that node only: a node's cgroups are its own.

`minicloud metrics`, `top` and `alerts` read a consistent copy of metrics.db, made by SQLite's online
backup inside the task and copied out through the engine, with the same readers as on one machine.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
from docker.types import Mount

from . import images, swarm
from .config import Settings
from .errors import MinicloudError
from .manifest import Manifest
from .progress import NullProgress, Progress
from .services.alert_rules import parse_rule
from .swarm_files import SwarmFiles
from .swarm_registry import ImageRoute

PORT = 9100  # its Prometheus endpoint, on the env's network
SNAPSHOT = "/tmp/minicloud-metrics-snapshot.db"
PROBE = ["python3", "-c", f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{PORT}/health', timeout=2)"]
BACKUP = ("import sqlite3; s = sqlite3.connect('file:/metrics/metrics.db?mode=ro', uri=True, timeout=10); "
          f"d = sqlite3.connect('{SNAPSHOT}.new'); s.backup(d); d.close(); "
          f"import os; os.replace('{SNAPSHOT}.new', '{SNAPSHOT}')")


class SwarmMetrics:
    def __init__(self, manager: docker.DockerClient, builder: docker.DockerClient, settings: Settings,
                 manifest: Manifest, env: str, engine_socket: str) -> None:
        self.manager, self.builder, self.settings, self.manifest = manager, builder, settings, manifest
        self.app, self.env = manifest.name, env
        self.engine_socket = engine_socket  # the manager's engine socket, as its node names it
        self.name = settings.container(self.app, env, "collector")
        self.volume_name = settings.volume(self.app, env, "collector")  # the series: the env's data

    def labels(self) -> dict[str, str]:
        return self.settings.labels(app=self.app, env=self.env, role="collector")

    def service(self):
        return swarm.find_service(self.manager, self.name)

    def rules(self) -> bytes:
        """The env's `[alerts]` as the collector reads them (metrics.write_rules' format)."""
        alerts = dict(self.manifest.alerts)
        webhook = alerts.pop("webhook", None)
        rules = [parse_rule(text, name).to_json() for name, text in sorted(alerts.items())]
        return json.dumps({"app": self.app, "env": self.env, "rules": rules, "webhook": webhook}, indent=2).encode()

    def ensure(self, network, gateway_service: str, gateway_volume: str, node: str, route: ImageRoute,
               progress: Progress | None = None) -> None:
        """Run it beside the gateway (on `node`, reading the access log on `gateway_volume`) with today's rules."""
        progress = progress or NullProgress()
        image = route.push(images.ensure_recipe(self.builder, "sandbox", progress), progress)
        store = SwarmFiles(self.manager, self.name, self.labels())
        configs = [store.config(f"/rules/{self.app}.{self.env}.json", self.rules())]
        service = self.service()
        spec = {
            "image": image, "name": self.name, "labels": self.labels(), "container_labels": self.labels(),
            "command": ["python3", "-m", "deploy_bridge.services.collector", "--instance", self.settings.instance,
                        "--only", f"{self.app}.{self.env}", "--data", "/metrics", "--access", "/access",
                        "--rules", "/rules", "--listen", f"0.0.0.0:{PORT}", "--edge", gateway_service],
            "configs": configs, "networks": [network.id],
            "mounts": [Mount("/metrics", self.volume_name, type="volume", labels=self.labels()),
                       Mount("/access", gateway_volume, type="volume"),
                       # whoever has the socket controls the engine: as the local collector, minicloud's own code
                       Mount("/var/run/docker.sock", self.engine_socket, type="bind"),
                       Mount("/host/cgroup", "/sys/fs/cgroup", type="bind", read_only=True)],
            **swarm.one_pinned_task(service, self.manager),
            "constraints": [f"node.id=={node}"],  # where the gateway's volume is
        }
        swarm.create_or_update(self.manager, service, spec, progress,
                               f"starting the metrics collector as service {self.name}",
                               "updating the metrics collector (its image or the env's [alerts] changed)")
        swarm.wait_for_task(self.manager, self.name, self.settings.label_filter(app=self.app, env=self.env,
                                                                                role="collector"),
                            PROBE, f"the metrics collector of {self.app}/{self.env}",
                            f"docker service logs {self.name} (on the manager)")
        store.remove_unused()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Path]:
        """A consistent copy of the env's metrics.db here, for the one-machine readers; removed after."""
        container = self._container()
        code, out = container.exec_run(["python3", "-c", BACKUP])
        if code != 0:
            raise MinicloudError(f"the metrics of {self.app}/{self.env} could not be read: "
                                 f"{out.decode(errors='replace').strip()[-300:]}",
                                 hint=f"docker service logs {self.name} (on the manager)")
        stream, _ = container.get_archive(SNAPSHOT)
        with tempfile.TemporaryDirectory(prefix="minicloud-metrics-") as folder:
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                member = tar.getmember(Path(SNAPSHOT).name)
                data = tar.extractfile(member)
                assert data is not None
                path = Path(folder) / "metrics.db"
                path.write_bytes(data.read())
            yield path

    def _container(self):
        return swarm.task_container(self.manager, self.name, f"the metrics collector of {self.app}/{self.env}")
