"""The sandbox role of an env: its container (program: services/sandbox_server.py), volume and host."""

from __future__ import annotations

import contextlib
from pathlib import Path

import docker
from docker.errors import NotFound

from ..config import LOG_CONFIG, Settings
from ..errors import MinicloudError
from ..gateway import Edge
from ..polling import poll_until
from ..releases import tail_logs

PORT = 8080
HEALTH = "/_sandbox/health"


def ensure(client: docker.DockerClient, settings: Settings, edge: Edge, app: str, env: str, image: str,
           network: str, keys, abilities: Path) -> None:
    """Run the env's sandbox (the same one again when its image did not change) and route its host."""
    name = settings.container(app, env, "sandbox")
    host = settings.sandbox_host(app, env)
    abilities.mkdir(exist_ok=True)
    with contextlib.suppress(NotFound):
        old = client.containers.get(name)
        if old.image.tags[:1] == [image] and old.status == "running":
            edge.set_route(host, name, PORT)
            return
        old.remove(force=True)
    volume = settings.volume(app, env, "sandbox")
    labels = settings.labels(app=app, env=env, role="sandbox")
    try:
        client.volumes.get(volume)
    except NotFound:
        client.volumes.create(volume, labels=labels)
    # the platform's private key is mounted, never copied into the image
    container = client.containers.run(
        image, name=name, detach=True, labels=labels, network=network,
        command=["python3", "-m", "deploy_bridge.services.sandbox_server", "--port", str(PORT),
                 "--app-id", keys.app_id, "--key-id", keys.key_id,
                 "--platform-private-key", "/keys/platform_private.pem",
                 "--app-public-key", "/keys/app_public.pem",
                 "--abilities", "/abilities", "--state", "/data/state.json", "--env", env],
        volumes={str(keys.platform_private): {"bind": "/keys/platform_private.pem", "mode": "ro"},
                 str(keys.app_public): {"bind": "/keys/app_public.pem", "mode": "ro"},
                 str(keys.platform_public): {"bind": "/keys/platform_public.pem", "mode": "ro"},
                 str(abilities.resolve()): {"bind": "/abilities", "mode": "ro"},
                 volume: {"bind": "/data", "mode": "rw"}},
        restart_policy={"Name": "unless-stopped"}, log_config=LOG_CONFIG,
    )
    wait_ready(edge, container)
    edge.set_route(host, name, PORT)


def wait_ready(edge: Edge, container) -> None:
    def exited() -> None:
        container.reload()
        if container.status == "exited":
            raise MinicloudError("the sandbox open platform did not start", details=tail_logs(container))

    if not poll_until(lambda: edge.probe(container.name, PORT, HEALTH) == 200, 20, 0.2, on_wait=exited):
        raise MinicloudError("the sandbox open platform did not start", details=tail_logs(container))
