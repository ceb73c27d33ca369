"""The files a swarm service reads, as Swarm configs — and secrets, for keys.

A node may be another machine, so nothing a service reads can be a bind mount of this machine's files.
Each file becomes a Swarm config (a secret for a private key: kept encrypted in the swarm's store and
given to a task in tmpfs, never on a node's disk), mounted at its path in the container. Configs and
secrets are immutable, so the name carries a hash of the content: a changed file is a new one, and the
service's update rolls it out; `remove_unused` then drops the old ones Swarm lets go of.
"""

from __future__ import annotations

import contextlib
import hashlib

import docker
from docker.errors import APIError, NotFound
from docker.types import ConfigReference, SecretReference


class SwarmFiles:
    """Configs and secrets of one service, named `SERVICE-config-HASH` / `SERVICE-secret-HASH`."""

    def __init__(self, manager: docker.DockerClient, service: str, labels: dict[str, str]) -> None:
        self.manager, self.service, self.labels = manager, service, labels

    def config(self, path: str, data: bytes, mode: int = 0o444) -> ConfigReference:
        stored = self._stored("config", path, data)
        return ConfigReference(stored.id, stored.name, filename=path, mode=mode)

    def secret(self, path: str, data: bytes, mode: int = 0o400) -> SecretReference:
        """`path`: absolute, or a name under /run/secrets."""
        stored = self._stored("secret", path, data)
        return SecretReference(stored.id, stored.name, filename=path, mode=mode)

    def _stored(self, kind: str, path: str, data: bytes):
        digest = hashlib.sha256(path.encode() + b"\0" + data).hexdigest()[:12]
        name = f"{self.service}-{kind}-{digest}"
        store = self.manager.configs if kind == "config" else self.manager.secrets
        found = next((item for item in store.list(filters={"name": name}) if item.name == name), None)
        return found or store.create(name=name, data=data, labels=self.labels)

    def left(self) -> list:
        """Its configs and secrets that exist."""
        prefix = f"{self.service}-"
        return [item for item in [*self.manager.configs.list(), *self.manager.secrets.list()]
                if item.name.startswith(prefix) and (item.name[len(prefix):].split("-")[0] in ("config", "secret"))]

    def remove_unused(self) -> None:
        """Those no task uses any more (Swarm refuses to remove one in use)."""
        for item in self.left():
            with contextlib.suppress(APIError, NotFound):
                item.remove()


def differs(service, image: str, configs: list, secrets: list) -> bool:
    """The running spec has another image, or other configs or secrets, than these."""
    container = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]
    have = sorted(c["ConfigName"] for c in container.get("Configs") or [])
    have_secrets = sorted(s["SecretName"] for s in container.get("Secrets") or [])
    return (container.get("Image", "").split("@")[0] != image.split("@")[0]
            or have != sorted(r["ConfigName"] for r in configs)
            or have_secrets != sorted(s["SecretName"] for s in secrets))
