"""The data API of a swarm env (`[data]`): PostgreSQL and the API server as services, as on one machine.

Both are pinned to the manager node, where their volumes live (the documents; the uploaded files): like
the MariaDB, the data is single-node and its loss is a restore. The API reads its settings (the server
credential, the collections' rules) from a Swarm secret, and the app's key to sign its calls to the sandbox
from another; it reaches PostgreSQL and the sandbox by their service names on the env's overlay network.
The env's gateway sends `HOST/cloud/` to it over kept-alive connections, as it does on one machine, so
functions, the app and front ends call the same URL (`MINICLOUD_DATA_URL`).
"""

from __future__ import annotations

import json
from pathlib import Path

import docker
from docker.types import Healthcheck, Mount

from . import images, swarm
from .config import Settings
from .credentials import data_secrets
from .data import API_PORT, API_ROLE, DATABASE, HEALTH, PG_PORT, STORE_ROLE, api_config, api_dsn
from .gateway import DATA_PATH
from .manifest import Manifest
from .progress import NullProgress, Progress
from .swarm_files import SwarmFiles
from .swarm_registry import ImageRoute

SECOND = 1_000_000_000
PG_DATA = "/var/lib/postgresql/data"
PG_READY = ["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(PG_PORT)]
API_PROBE = ["python3", "-c", "import urllib.request; "
             f"urllib.request.urlopen('http://127.0.0.1:{API_PORT}{HEALTH}', timeout=2)"]


class SwarmData:
    def __init__(self, manager: docker.DockerClient, builder: docker.DockerClient, settings: Settings,
                 manifest: Manifest, workspace: Path, env: str) -> None:
        self.manager, self.builder, self.settings, self.manifest = manager, builder, settings, manifest
        self.workspace, self.app, self.env = workspace, manifest.name, env
        self.store_name = settings.container(self.app, env, STORE_ROLE)
        self.api_name = settings.container(self.app, env, API_ROLE)

    @property
    def enabled(self) -> bool:
        return self.manifest.data is not None

    def labels(self, role: str) -> dict[str, str]:
        return self.settings.labels(app=self.app, env=self.env, role=role)

    def volumes(self) -> list[str]:
        return [self.settings.volume(self.app, self.env, role) for role in (STORE_ROLE, API_ROLE)]

    def owners(self) -> list[tuple[str, dict[str, str]]]:
        """(service, labels) of each service: what `destroy` removes, with their Swarm files."""
        return [(self.api_name, self.labels(API_ROLE)), (self.store_name, self.labels(STORE_ROLE))]

    def routes(self) -> dict[str, tuple[str, int]]:
        if not self.enabled or swarm.find_service(self.manager, self.api_name) is None:
            return {}
        return {self.settings.app_host(self.app, self.env) + DATA_PATH: (f"tasks.{self.api_name}", API_PORT)}

    def ensure(self, network, sandbox_keys, route: ImageRoute, progress: Progress | None = None) -> None:
        """PostgreSQL, then the API with today's settings (a changed rule or key rolls its task)."""
        progress = progress or NullProgress()
        made = data_secrets(self.workspace, self.env)
        if swarm.find_service(self.manager, self.store_name) is None:
            image = route.push(images.ensure_recipe(self.builder, "postgres", progress), progress)
            progress.report(f"starting PostgreSQL (the data API's documents) as service {self.store_name}")
            self.manager.services.create(
                image=image, name=self.store_name, labels=self.labels(STORE_ROLE),
                container_labels=self.labels(STORE_ROLE),
                env=[f"POSTGRES_PASSWORD={made.pg_password}", f"POSTGRES_DB={DATABASE}"],
                mounts=[Mount(PG_DATA, self.volumes()[0], type="volume", labels=self.labels(STORE_ROLE))],
                networks=[network.id], **swarm.one_pinned_task(None, self.manager),
                healthcheck=Healthcheck(test=["CMD", *PG_READY], interval=1 * SECOND, timeout=3 * SECOND, retries=5,
                                        start_period=90 * SECOND),
                stop_grace_period=30 * SECOND)
        swarm.wait_for_task(self.manager, self.store_name, self._filter(STORE_ROLE), PG_READY,
                            f"PostgreSQL of {self.app}/{self.env}", f"minicloud logs {self.env} --role datadb", 120)
        self._ensure_api(network, sandbox_keys, route, progress)

    def _ensure_api(self, network, sandbox_keys, route: ImageRoute, progress: Progress) -> None:
        image = route.push(images.ensure_recipe(self.builder, "sandbox", progress), progress)
        config = api_config(self.settings, self.manifest, self.workspace, self.app, self.env, sandbox_keys)
        store = SwarmFiles(self.manager, self.api_name, self.labels(API_ROLE))
        # the settings hold the server credential: a secret, like the app's key
        secrets = [store.secret("/config/config.json", json.dumps(config, sort_keys=True, indent=1).encode())]
        configs = []
        if sandbox_keys is not None:
            secrets.append(store.secret("/keys/app_private.pem", sandbox_keys.app_private.read_bytes()))
            configs.append(store.config("/keys/platform_public.pem", sandbox_keys.platform_public.read_bytes()))
        service = swarm.find_service(self.manager, self.api_name)
        spec = {
            "image": image, "name": self.api_name, "labels": self.labels(API_ROLE),
            "container_labels": self.labels(API_ROLE),
            "command": ["python3", "-m", "deploy_bridge.services.data_api"],
            "env": [f"DATA_DSN={api_dsn(self.settings, self.workspace, self.app, self.env)}",
                    "DATA_CONFIG=/config/config.json", f"PORT={API_PORT}"],
            "configs": configs, "secrets": secrets, "networks": [network.id],
            # the uploaded files are on a volume of one node
            "mounts": [Mount("/data", self.volumes()[1], type="volume", labels=self.labels(API_ROLE))],
            **swarm.one_pinned_task(service, self.manager),
        }
        swarm.create_or_update(self.manager, service, spec, progress, f"starting the data API as service {self.api_name}",
                               "updating the data API (its image, settings or keys changed)")
        swarm.wait_for_task(self.manager, self.api_name, self._filter(API_ROLE), API_PROBE,
                            f"the data API of {self.app}/{self.env}", f"minicloud logs {self.env} --role data")
        store.remove_unused()

    def _filter(self, role: str) -> list[str]:
        return self.settings.label_filter(app=self.app, env=self.env, role=role)
