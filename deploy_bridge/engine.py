"""The connection to the Docker engine, with a clear error when none answers."""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass, field
from typing import Any

import docker
from docker.errors import DockerException

from .errors import EngineUnavailable

_HINT = ("start a Docker engine: `scripts/ensure-docker.sh` installs Debian's docker.io and starts dockerd "
         "(as root), or run `sudo systemctl start docker`; set DOCKER_HOST if the engine listens elsewhere")


@dataclass(frozen=True)
class EngineAddress:
    """Where Docker's own settings point, read as the docker CLI reads them: DOCKER_HOST; else the context
    that DOCKER_CONTEXT names or `docker context use` chose (in DOCKER_CONFIG or ~/.docker); else the local
    socket (`url` None)."""

    url: str | None
    context: str | None = None  # the context's name, when one chose the engine
    tls: Any = field(default=None, compare=False)  # the context's TLS settings (docker.tls.TLSConfig)

    @property
    def described(self) -> str:
        where = self.url or "unix:///var/run/docker.sock"
        return f"{where} (docker context {self.context})" if self.context else where


def engine_address() -> EngineAddress:
    host = os.environ.get("DOCKER_HOST")
    if host:
        return EngineAddress(host)
    from docker.context import ContextAPI
    from docker.context.config import get_current_context_name

    name = os.environ.get("DOCKER_CONTEXT") or get_current_context_name()
    if name in ("", "default"):
        return EngineAddress(None)
    context = ContextAPI.get_context(name)
    if context is None or not context.Host:
        chosen = "DOCKER_CONTEXT" if os.environ.get("DOCKER_CONTEXT") else "`docker context use`"
        raise EngineUnavailable(f"the docker context {name!r} ({chosen} chose it) does not exist or names no engine",
                                hint="docker context ls shows the contexts; `docker context use default` is the "
                                     "local engine")
    return EngineAddress(context.Host, name, context.TLSConfig or None)


def engine_url() -> str:
    """The engine's URL as Docker's settings name it (the local socket's when none does)."""
    return engine_address().url or "unix:///var/run/docker.sock"


def engine_socket() -> str:
    """The engine's socket on its own machine (a swarm env's collector mounts it there): the path of a
    unix:// URL, else Docker's default, which a tcp:// or ssh:// engine's machine has."""
    url = engine_url()
    return url[len("unix://"):] if url.startswith("unix://") else "/var/run/docker.sock"


@functools.cache
def _client_for(address: EngineAddress) -> docker.DockerClient:
    # ssh:// through the system's ssh client, as the docker CLI does (its keys, agent and ~/.ssh/config)
    over_ssh = (address.url or "").startswith("ssh://")
    if address.context is None:
        return docker.from_env(timeout=120, use_ssh_client=over_ssh)
    return docker.DockerClient(base_url=address.url, tls=address.tls or False, timeout=120, use_ssh_client=over_ssh)


def _why(err: Exception) -> str:
    """The error's kind and its first line, short: "Install paramiko…" or "Permission denied" say what to do."""
    first = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {first[:160]}" if first else type(err).__name__


def client() -> docker.DockerClient:
    """A client that has answered a ping. Cached per engine address; re-pinged on every call (~1 ms)."""
    address = engine_address()
    try:
        c = _client_for(address)
        c.ping()
        return c
    except (DockerException, OSError) as err:
        _client_for.cache_clear()
        raise EngineUnavailable(f"no Docker engine answers at {address.described} ({_why(err)})",
                                hint=_HINT) from None


def build_client() -> docker.DockerClient:
    """The engine that builds and pushes a swarm env's releases: MINICLOUD_BUILD_HOST (e.g. this machine's
    engine, with its build cache, while DOCKER_HOST names a remote manager); else the DOCKER_HOST one."""
    host = os.environ.get("MINICLOUD_BUILD_HOST")
    if not host:
        return client()
    try:
        c = docker.DockerClient(base_url=host, timeout=120, use_ssh_client=host.startswith("ssh://"))
        c.ping()
        return c
    except (DockerException, OSError) as err:
        raise EngineUnavailable(f"no Docker engine answers at MINICLOUD_BUILD_HOST={host} ({_why(err)})",
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
