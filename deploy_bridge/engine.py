"""The connection to the Docker engine, with a clear error when none answers."""

from __future__ import annotations

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


def engine_available() -> bool:
    try:
        client()
        return True
    except EngineUnavailable:
        return False
