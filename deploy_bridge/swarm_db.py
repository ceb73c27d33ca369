"""The MariaDB of a swarm env: a service of one task, pinned to the node that holds its volume.

A swarm moves tasks between nodes; a database's files do not move with them. So the service has a
placement constraint on one node, the one it was first created on (the manager minicloud talks to),
and its named volume lives there. The database is single-node: losing that node loses the data, which
comes back by a restore (README says so). The app's tasks reach it on the env's overlay network by the
same name as on one machine (`db`, MYSQL_HOST), so an app moves from local to swarm unchanged.

Queries (`minicloud db`, the editor's tables) run `mariadb` inside the task's container through the
manager's engine, as they do in the local container: the task runs on the manager by construction.
"""

from __future__ import annotations

import time

import docker
from docker.types import Healthcheck, Mount, NetworkAttachmentConfig

from . import images, swarm
from .config import Settings
from .credentials import DB_ALIAS, DbCredentials
from .database import Database
from .errors import MinicloudError
from .progress import NullProgress, Progress
from .swarm_registry import ImageRoute

SECOND = 1_000_000_000
DATA_DIR = "/var/lib/mysql"
# the task is healthy once the app's user gets an answer (the entrypoint creates it on a new volume)
HEALTH = 'MYSQL_PWD="$MYSQL_PASSWORD" mariadb -u "$MYSQL_USER" "$MYSQL_DATABASE" -e "SELECT 1" >/dev/null'


class SwarmDatabase(Database):
    """`Database`'s queries against the task's container; `ensure_service` and `remove` run the service."""

    def __init__(self, manager: docker.DockerClient, builder: docker.DockerClient, settings: Settings, app: str,
                 env: str) -> None:
        super().__init__(manager, settings, app, env)
        self.builder = builder

    def labels(self) -> dict[str, str]:
        return self.settings.labels(app=self.app, env=self.env, role="db")

    def service(self):
        return swarm.find_service(self.client, self.name)

    def container(self) -> docker.models.containers.Container | None:
        """The task's container on the manager's engine (None when no task runs there)."""
        found = self.client.containers.list(filters={"label": self.settings.label_filter(
            app=self.app, env=self.env, role="db")})
        return found[0] if found else None

    def pinned_node(self) -> str:
        """The node the database lives on: the service's constraint, or (a new one) the manager's own node."""
        return swarm.pinned_node(self.service()) or swarm.own_node(self.client)

    def ensure_service(self, network, creds: DbCredentials, route: ImageRoute,
                       progress: Progress | None = None) -> None:
        """Run the database service (kept when it runs; its volume's data is kept always) and wait until it answers."""
        progress = progress or NullProgress()
        if self.service() is None:
            image = route.push(images.ensure_recipe(self.builder, "mariadb", progress), progress)
            kept = any(v.name == self.volume_name for v in self.client.volumes.list(filters={"name": self.volume_name}))
            progress.report(f"database volume {self.volume_name} found: its data is kept" if kept else
                            f"starting MariaDB as service {self.name}, pinned to this node (its volume lives here)")
            self.client.services.create(
                image=image, name=self.name, labels=self.labels(), container_labels=self.labels(),
                env=[f"MYSQL_DATABASE={creds.database}", f"MYSQL_USER={creds.user}",
                     f"MYSQL_PASSWORD={creds.password}"],
                mounts=[Mount(DATA_DIR, self.volume_name, type="volume", labels=self.labels())],
                networks=[NetworkAttachmentConfig(network.id, aliases=[DB_ALIAS])],
                **swarm.one_pinned_task(None, self.client),
                healthcheck=Healthcheck(test=["CMD-SHELL", HEALTH], interval=1 * SECOND, timeout=5 * SECOND,
                                        retries=5, start_period=90 * SECOND),
                stop_grace_period=30 * SECOND)
        self.wait_ready(creds)

    def wait_ready(self, creds: DbCredentials, timeout: float = 120) -> None:
        """Until the task runs on this engine and the app's user gets an answer; MinicloudError naming why not."""
        deadline = time.monotonic() + timeout
        why = "no task yet"
        while time.monotonic() < deadline:
            service = self.service()
            if service is None:
                raise MinicloudError(f"the database service {self.name} is gone")
            for task in service.tasks(filters={"desired-state": "running"}):
                status = task.get("Status") or {}
                why = f"{status.get('State')} {status.get('Err') or ''}".strip()
            container = self.container()
            if container is not None and container.status == "running":
                code, _ = container.exec_run(["sh", "-c", HEALTH])
                if code == 0:
                    return
                why = "MariaDB does not answer yet"
            time.sleep(0.5)
        raise MinicloudError(f"the database service {self.name} is not ready after {timeout:.0f} s ({why})",
                             hint=f"docker service ps {self.name} --no-trunc (on the manager)")

    def _run(self, creds: DbCredentials, sql: str, output: str) -> str:
        if self.container() is None:
            raise MinicloudError(f"the database of {self.app}/{self.env} has no running task on this engine "
                                 f"(it is pinned to node {self.pinned_node()[:12]})",
                                 hint=f"minicloud env build {self.env} starts it; DOCKER_HOST must name that node")
        return super()._run(creds, sql, output)
