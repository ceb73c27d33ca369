"""The sandbox open platform of a swarm env: the same program as on one machine, as a service of one task.

Its keys and the env's granted ability packages come as Swarm files (swarm_files.py): the platform's
private key a secret, the public keys and the packages configs. A grant (`minicloud abilities grant`)
changes the packages; the next `deploy` or `env build` rolls the sandbox to them. Its state (test users,
auth codes) is on a volume, so the task is pinned to the manager node like the database. The env's gateway
routes the sandbox's host to it, and answers to that name on the env's network, so the app reaches
`ALIPAY_GATEWAY` as on one machine.
"""

from __future__ import annotations

from pathlib import Path

import docker
from docker.types import Mount

from . import images, swarm
from .config import Settings
from .progress import NullProgress, Progress
from .sandbox.platform import HEALTH, PORT
from .swarm_files import SwarmFiles
from .swarm_registry import ImageRoute

# asked inside the task: the image has Python, not curl
PROBE = ["python3", "-c", f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{PORT}{HEALTH}', timeout=2)"]


class SwarmSandbox:
    def __init__(self, manager: docker.DockerClient, builder: docker.DockerClient, settings: Settings,
                 app: str, env: str) -> None:
        self.manager, self.builder, self.settings, self.app, self.env = manager, builder, settings, app, env
        self.name = settings.container(app, env, "sandbox")
        self.volume_name = settings.volume(app, env, "sandbox")

    def labels(self) -> dict[str, str]:
        return self.settings.labels(app=self.app, env=self.env, role="sandbox")

    def service(self):
        return swarm.find_service(self.manager, self.name)

    def ensure(self, network, keys, abilities: Path, route: ImageRoute, progress: Progress | None = None) -> None:
        """Run it with these keys and packages (a changed one rolls the task); wait until it answers."""
        progress = progress or NullProgress()
        image = route.push(images.ensure_recipe(self.builder, "sandbox", progress), progress)
        store = SwarmFiles(self.manager, self.name, self.labels())
        configs = [store.config("/keys/app_public.pem", keys.app_public.read_bytes()),
                   store.config("/keys/platform_public.pem", keys.platform_public.read_bytes()),
                   *(store.config(f"/abilities/{p.name}", p.read_bytes())
                     for p in sorted(abilities.glob("*.json")) if abilities.is_dir())]
        secrets = [store.secret("/keys/platform_private.pem", keys.platform_private.read_bytes())]
        service = self.service()
        spec = {
            "image": image, "name": self.name, "labels": self.labels(), "container_labels": self.labels(),
            "command": ["python3", "-m", "deploy_bridge.services.sandbox_server", "--port", str(PORT),
                        "--app-id", keys.app_id, "--key-id", keys.key_id,
                        "--platform-private-key", "/keys/platform_private.pem",
                        "--app-public-key", "/keys/app_public.pem",
                        "--abilities", "/abilities", "--state", "/data/state.json", "--env", self.env],
            "configs": configs, "secrets": secrets, "networks": [network.id],
            # its state is on a volume of one node
            "mounts": [Mount("/data", self.volume_name, type="volume", labels=self.labels())],
            **swarm.one_pinned_task(service, self.manager),
        }
        swarm.create_or_update(self.manager, service, spec, progress,
                               f"starting the sandbox open platform as service {self.name}",
                               "updating the sandbox (its image, keys or granted packages changed)")
        self.wait_ready()
        store.remove_unused()

    def wait_ready(self, timeout: float = 60) -> None:
        swarm.wait_for_task(self.manager, self.name, self.settings.label_filter(app=self.app, env=self.env,
                                                                                role="sandbox"),
                            PROBE, f"the sandbox of {self.app}/{self.env}", f"minicloud logs {self.env} --role sandbox",
                            timeout)
