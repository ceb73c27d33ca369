"""The connection to the Docker engine, with a clear error when none answers."""

from __future__ import annotations

import contextlib
import functools
import os

import docker
from docker.errors import DockerException

from .errors import EngineUnavailable

_HINT = ("start a Docker engine: `scripts/ensure-docker.sh` installs Debian's docker.io and starts dockerd "
         "(as root), or run `sudo systemctl start docker`; set DOCKER_HOST if the engine listens elsewhere")


@functools.cache
def _client_for(host: str | None) -> docker.DockerClient:
    return docker.from_env(timeout=120)


def client() -> docker.DockerClient:
    """A client that has answered a ping. Cached per DOCKER_HOST; re-pinged on every call (~1 ms)."""
    host = os.environ.get("DOCKER_HOST")
    try:
        c = _client_for(host)
        c.ping()
        return c
    except (DockerException, OSError) as err:
        _client_for.cache_clear()
        where = host or "unix:///var/run/docker.sock"
        raise EngineUnavailable(f"no Docker engine answers at {where} ({type(err).__name__})", hint=_HINT) from None


def build_client() -> docker.DockerClient:
    """The engine that builds and pushes a swarm env's releases: MINICLOUD_BUILD_HOST (e.g. this machine's
    engine, with its build cache, while DOCKER_HOST names a remote manager); else the DOCKER_HOST one."""
    host = os.environ.get("MINICLOUD_BUILD_HOST")
    if not host:
        return client()
    try:
        c = docker.DockerClient(base_url=host, timeout=120)
        c.ping()
        return c
    except (DockerException, OSError) as err:
        raise EngineUnavailable(f"no Docker engine answers at MINICLOUD_BUILD_HOST={host} ({type(err).__name__})",
                                hint="unset MINICLOUD_BUILD_HOST to build on the swarm manager, or start that "
                                     "engine") from None


def remove_instance(docker_client: docker.DockerClient, instance: str) -> None:
    """Remove everything labelled with a minicloud instance: containers, networks, volumes, images.

    The labels are the truth about what an instance made; the shared image cache carries no instance
    label and is kept. Used by the tests and the benchmark to remove exactly their own throw-away cloud.
    """
    label = {"label": f"minicloud.instance={instance}"}
    # first what starts containers by itself: the keeper (killed ones), the functions schedulers (instances)
    for role in ("keeper", "functions", "collector"):
        for container in docker_client.containers.list(all=True, filters={"label": [
                f"minicloud.instance={instance}", f"minicloud.role={role}"]}):
            with contextlib.suppress(DockerException):
                container.remove(force=True)
    for kind, remove in (
        (docker_client.containers.list(all=True, filters=label), lambda c: c.remove(force=True)),
        (docker_client.networks.list(filters=label), lambda n: n.remove()),
        (docker_client.volumes.list(filters=label), lambda v: v.remove(force=True)),
        (docker_client.images.list(filters=label), lambda i: docker_client.images.remove(i.id, force=True)),
    ):
        for item in kind:
            with contextlib.suppress(DockerException):
                remove(item)
