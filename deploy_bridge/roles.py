"""The service roles of an env: what runs beside the app (the database, the sandbox open platform).

A role is one class here, registered in `SERVICE_ROLES`; `Cloud` builds, starts, stops and removes an
env by going through the registry, and status, logs and cleanup find a role's containers by its label.
To add a role (cloud functions, a data API): write its class, give it an image recipe if it needs one,
and register it. The app itself is not a service role: it is switched by `rollout.py`, and the gateway
and keeper are one per instance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import docker

from . import images
from .config import Settings
from .credentials import credentials
from .data import DataApiRole, DataStoreRole
from .database import Database
from .errors import MinicloudError
from .gateway import FUNCTIONS_PATH, Edge
from .polling import poll_until
from .progress import Progress
from .sandbox import platform as sandbox_platform


@dataclass
class EnvParts:
    """What a role's steps need to know about the env they act on."""

    client: docker.DockerClient
    settings: Settings
    edge: Edge
    workspace: Path
    manifest: object  # deploy_bridge.manifest.Manifest
    app: str
    env: str
    network: str
    sandbox_keys: object = None  # codegen.keys.EnvKeys, for the sandbox
    environment: dict = field(default_factory=dict)  # what the app gets injected: functions get it too
    binds: list = field(default_factory=list)  # the app's read-only mounts (CA, sandbox keys), "HOST:PATH:ro"

    def containers(self, role: str) -> list:
        return self.client.containers.list(
            all=True, filters={"label": self.settings.label_filter(app=self.app, env=self.env, role=role)})


class ServiceRole(Protocol):
    name: str
    recipe: str  # the image recipe it runs (images.RECIPES)
    has_volume: bool  # a named volume `Settings.volume(app, env, name)`, removed only --with-data

    def enabled(self, parts: EnvParts) -> bool: ...

    def ensure(self, parts: EnvParts, image: str, progress: Progress) -> None:
        """Make it run (env build): create what is missing, keep what exists."""

    def started(self, parts: EnvParts, container, progress: Progress) -> None:
        """After `start` (or a restart of the env) started its container: wait until it serves."""


class DatabaseRole:
    name, recipe, has_volume = "db", "mariadb", True

    def enabled(self, parts: EnvParts) -> bool:
        return True

    def ensure(self, parts: EnvParts, image: str, progress: Progress) -> None:
        override = parts.manifest.images.get("db")
        image = images.official_image(parts.client, override, progress) if override else image
        creds = credentials(parts.workspace, parts.env, parts.app)
        Database(parts.client, parts.settings, parts.app, parts.env).ensure(image, parts.network, creds, progress)

    def started(self, parts: EnvParts, container, progress: Progress) -> None:
        creds = credentials(parts.workspace, parts.env, parts.app, create=False)
        if creds:
            Database(parts.client, parts.settings, parts.app, parts.env).wait_ready(creds)


class SandboxRole:
    name, recipe, has_volume = "sandbox", "sandbox", True

    def enabled(self, parts: EnvParts) -> bool:
        return parts.manifest.env(parts.env).sandbox

    def ensure(self, parts: EnvParts, image: str, progress: Progress) -> None:
        progress.report("starting the sandbox open platform", 55)
        sandbox_platform.ensure(parts.client, parts.settings, parts.edge, parts.app, parts.env, image, parts.network,
                                parts.sandbox_keys, parts.workspace / "abilities")

    def started(self, parts: EnvParts, container, progress: Progress) -> None:
        sandbox_platform.wait_ready(parts.edge, container)
        parts.edge.set_route(parts.settings.sandbox_host(parts.app, parts.env), container.name, sandbox_platform.PORT)


class FunctionsRole:
    """The env's functions scheduler (services/scheduler.py); it runs the instances (role "function")."""

    name, recipe, has_volume = "functions", "sandbox", False

    def enabled(self, parts: EnvParts) -> bool:
        return bool(parts.manifest.functions.functions)

    def _functions(self, parts: EnvParts):
        from .functions import Functions

        return Functions(parts.client, parts.settings, parts.manifest, parts.env)

    def ensure(self, parts: EnvParts, image: str, progress: Progress) -> None:
        functions = self._functions(parts)
        versions = functions.package(list(functions.specs), progress)
        functions.write_config(versions, parts.environment, parts.binds)
        functions.ensure_scheduler(image, parts.edge, progress)
        functions.wait_live(versions)

    def started(self, parts: EnvParts, container, progress: Progress) -> None:
        from .functions import Functions

        functions = self._functions(parts)
        if not poll_until(lambda: functions.status(quiet=True) is not None, 30, 0.1):
            raise MinicloudError("the functions scheduler did not start")
        parts.edge.set_route(parts.settings.app_host(parts.app, parts.env) + FUNCTIONS_PATH, container.name,
                             Functions.port)


# in the order they start; they stop in the reverse order, after the app
SERVICE_ROLES: tuple[ServiceRole, ...] = (DatabaseRole(), SandboxRole(), DataStoreRole(), FunctionsRole(),
                                          DataApiRole())
FUNCTION_INSTANCE = "function"  # the role of the instances the functions scheduler runs
# every role whose containers an env's logs and status show
ALL_ROLES: tuple[str, ...] = ("app", *(r.name for r in SERVICE_ROLES), FUNCTION_INSTANCE, "gateway")
