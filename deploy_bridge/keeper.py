"""The keeper container of an instance (its program: services/keeper.py): one per instance, beside
the gateway, so that a killed container of a running env comes back without anyone at the keyboard."""

from __future__ import annotations

import contextlib
import os
from urllib.parse import urlparse

import docker
from docker.errors import NotFound

from . import engine, images
from .config import LOG_CONFIG, Settings
from .progress import NullProgress, Progress

ROLE = "keeper"


def container_name(settings: Settings) -> str:
    return f"{settings.prefix}-keeper"


def engine_socket() -> str | None:
    """The engine's unix socket on this machine, or None for a remote engine (no keeper then)."""
    parsed = urlparse(engine.engine_url())
    return parsed.path if parsed.scheme == "unix" and os.path.exists(parsed.path) else None


def ensure(client: docker.DockerClient, settings: Settings, progress: Progress | None = None) -> None:
    progress = progress or NullProgress()
    sock = engine_socket()
    if sock is None:
        progress.report("no local engine socket: killed containers are not brought back by themselves "
                        "(run `minicloud start ENV`)")
        return
    image = images.ensure_recipe(client, "sandbox", progress)
    name = container_name(settings)
    try:
        current = client.containers.get(name)
        if current.image.tags[:1] == [image]:
            if current.status != "running":
                current.start()
            return
        current.remove(force=True)
    except NotFound:
        pass
    gateway_folder = settings.instance_dir() / "gateway"
    gateway_folder.mkdir(parents=True, exist_ok=True)
    client.containers.run(
        image, name=name, detach=True, labels=settings.labels(role=ROLE), network_mode="none",
        command=["python3", "-m", "deploy_bridge.services.keeper", "--instance", settings.instance,
                 "--routes", "/gateway/routes.tsv"],
        volumes={sock: {"bind": "/var/run/docker.sock", "mode": "rw"},
                 str(gateway_folder): {"bind": "/gateway", "mode": "ro"}},
        restart_policy={"Name": "unless-stopped"}, log_config=LOG_CONFIG)


def remove(client: docker.DockerClient, settings: Settings) -> None:
    with contextlib.suppress(NotFound):
        client.containers.get(container_name(settings)).remove(force=True)
