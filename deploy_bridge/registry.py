"""A local image registry: Debian's docker-registry (the CNCF distribution registry), run on the host engine.

Host-side helpers, docker-py only (plus the registry's HTTP API through the standard library):
- `ensure_registry(client, settings_or_name, port)` runs the `registry` recipe image as a plain container
  publishing its port on the host engine, its blobs on a named volume, labelled; returns its address.
- `push(client, image, address)` tags an image ADDRESS/REPO:TAG and pushes it; progress errors become a
  MinicloudError naming the image and the registry.
- `tags(address, repo)` lists a repository's tags (`GET /v2/REPO/tags/list`).

The registry speaks plain HTTP. Every engine treats `127.0.0.0/8` as an insecure registry by default, so
`127.0.0.1:PORT` works without configuration on the engine that runs it; other engines must list the
address in `insecure-registries` (or reach it on a loopback address, as tests/swarm_lab.py arranges).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

import docker
from docker.errors import APIError, ImageNotFound, NotFound
from docker.utils import parse_repository_tag

from . import images
from .errors import MinicloudError, PortInUse

CONTAINER_PORT = 5000
DATA_PATH = "/var/lib/docker-registry"
LABEL_REGISTRY = "minicloud.registry"  # the registry's name, on its container and volume
LABEL_CONFIG = "minicloud.registry.config"  # what it was created from: a changed setting recreates it
DEFAULT_NAME = "minicloud-registry"
DEFAULT_PORT = 5000


@dataclass(frozen=True)
class RegistrySettings:
    name: str = DEFAULT_NAME
    port: int = DEFAULT_PORT
    # host addresses the port is published on; engines on this machine reach 127.0.0.1
    bind: tuple[str, ...] = ("127.0.0.1",)
    volume: str | None = None  # default: "<name>-data"
    labels: Mapping[str, str] = field(default_factory=dict)  # extra labels on the container and volume

    @property
    def volume_name(self) -> str:
        return self.volume or f"{self.name}-data"

    @property
    def address(self) -> str:
        host = next((b for b in self.bind if b.startswith("127.")), None)
        if host is None:
            host = "127.0.0.1" if "0.0.0.0" in self.bind else self.bind[0]
        return f"{host}:{self.port}"


def _settings(settings_or_name: RegistrySettings | str, port: int | None, bind: Iterable[str] | None,
              labels: Mapping[str, str] | None) -> RegistrySettings:
    s = RegistrySettings(name=settings_or_name) if isinstance(settings_or_name, str) else settings_or_name
    changes: dict = {}
    if port is not None:
        changes["port"] = port
    if bind is not None:
        changes["bind"] = tuple(bind)
    if labels:
        changes["labels"] = {**s.labels, **labels}
    if changes:
        s = replace(s, **changes)
    if not s.bind:
        raise MinicloudError(f"registry {s.name}: no address to publish port {s.port} on")
    return s


def ensure_registry(client: docker.DockerClient, settings_or_name: RegistrySettings | str,
                    port: int | None = None, *, bind: Iterable[str] | None = None,
                    labels: Mapping[str, str] | None = None, progress=None, timeout: float = 30.0) -> str:
    """Run the registry (built from the `registry` recipe when missing) and return its address HOST:PORT.

    Idempotent: a running registry of the same name and settings is kept; one created from other settings
    (another port, image or volume) is replaced, its volume (the pushed images) kept.
    """
    s = _settings(settings_or_name, port, bind, labels)
    image = images.ensure_recipe(client, "registry", progress)
    recipe = json.dumps([image, s.port, sorted(s.bind), s.volume_name])
    config = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    container = _container(client, s.name)
    if container is not None and container.labels.get(LABEL_CONFIG) != config:
        container.remove(force=True)
        container = None
    own = {**s.labels, LABEL_REGISTRY: s.name}
    if container is None:
        try:
            client.volumes.get(s.volume_name)
        except NotFound:
            client.volumes.create(s.volume_name, labels=own)
        try:
            container = client.containers.create(
                image, name=s.name, detach=True, labels={**own, LABEL_CONFIG: config},
                ports={f"{CONTAINER_PORT}/tcp": [(b, s.port) for b in s.bind]},
                volumes={s.volume_name: {"bind": DATA_PATH, "mode": "rw"}},
                restart_policy={"Name": "unless-stopped"})
        except APIError as err:
            raise MinicloudError(f"cannot create the registry container {s.name}: "
                                 f"{err.explanation or err}") from None
    if container.status != "running":
        try:
            container.start()
        except APIError as err:
            text = str(err.explanation or err)
            container.remove(force=True)
            if "address already in use" in text or "port is already allocated" in text:
                raise PortInUse(f"the registry cannot publish port {s.port}: it is in use ({text[:200]})",
                                hint="choose another port for the registry") from None
            raise MinicloudError(f"the registry {s.name} does not start: {text[:300]}") from None
    _wait_ready(client, s, timeout)
    return s.address


def _container(client: docker.DockerClient, name: str):
    try:
        return client.containers.get(name)
    except NotFound:
        return None


def _wait_ready(client: docker.DockerClient, s: RegistrySettings, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            with _get(f"http://{s.address}/v2/", 2) as resp:
                if resp.status == 200:
                    return
        except (OSError, urllib.error.URLError) as err:
            last = str(err)
        container = _container(client, s.name)
        if container is None or container.status in ("exited", "dead"):
            logs = container.logs(tail=15).decode(errors="replace") if container else ""
            raise MinicloudError(f"the registry {s.name} stopped while starting", details=logs or None)
        if time.monotonic() > deadline:
            raise MinicloudError(f"the registry {s.name} does not answer on http://{s.address}/v2/ after "
                                 f"{timeout:.0f} s ({last})")
        time.sleep(0.1)


def remove_registry(client: docker.DockerClient, name: str = DEFAULT_NAME, *, volume: bool = False,
                    volume_name: str | None = None) -> None:
    """Remove the registry container; with `volume`, its volume (every pushed image) too."""
    container = _container(client, name)
    if container is not None:
        container.remove(force=True)
    if volume:
        with contextlib.suppress(NotFound):
            client.volumes.get(volume_name or f"{name}-data").remove(force=True)


# ------------------------------------------------------------------------------------------ push


def _split(image: str) -> tuple[str, str]:
    """REPO and TAG of a reference, the registry host (if any) dropped: a.b:5000/x/y:1 -> (x/y, 1)."""
    repo, tag = parse_repository_tag(image)
    if "@" in image and tag and tag.startswith("sha256:"):
        raise MinicloudError(f"cannot push {image}: a reference by digest has no tag to push")
    first, _, rest = repo.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        repo = rest
    return repo, tag or "latest"


def push(client: docker.DockerClient, image: str, address: str, *, progress=None) -> str:
    """Tag `image` as ADDRESS/REPO:TAG and push it; return that reference."""
    repo, tag = _split(image)
    target = f"{address}/{repo}"
    try:
        client.images.get(image).tag(target, tag)
    except ImageNotFound:
        raise MinicloudError(f"cannot push {image}: there is no such image on this engine") from None
    if progress is not None:
        progress.report(f"pushing {image} to the registry at {address}")
    try:
        for chunk in client.api.push(target, tag=tag, stream=True, decode=True):
            error = chunk.get("error") or (chunk.get("errorDetail") or {}).get("message")
            if error:
                raise _push_failed(image, address, str(error))
    except APIError as err:
        raise _push_failed(image, address, str(err.explanation or err)) from None
    return f"{target}:{tag}"


def _push_failed(image: str, address: str, error: str) -> MinicloudError:
    if "HTTP response to HTTPS client" in error:
        hint = (f"this engine does not trust {address} as an insecure (plain HTTP) registry: push to a "
                f"127.0.0.1 address, or add {address} to insecure-registries in the engine's daemon.json")
    elif any(s in error.lower() for s in ("connection refused", "no such host", "dial tcp", "i/o timeout")):
        hint = f"is the registry running and published at {address}? (registry.ensure_registry)"
    else:
        hint = f"check the registry's log (docker logs {DEFAULT_NAME} or the name it was given)"
    return MinicloudError(f"pushing {image} to the registry at {address} failed: {error.strip()[:300]}",
                          hint=hint)


# ---------------------------------------------------------------------------------- HTTP API


# the registry is local: never through a proxy named in the environment
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(url: str, timeout: float, headers: Mapping[str, str] | None = None, method: str = "GET"):
    request = urllib.request.Request(url, headers=dict(headers or {}), method=method)
    return _opener.open(request, timeout=timeout)


def not_answering(address: str, timeout: float = 2.0) -> str | None:
    """None when the registry at ADDRESS answers `GET /v2/` with 200; else why not."""
    try:
        with _get(f"http://{address}/v2/", timeout) as resp:
            return None if resp.status == 200 else f"http://{address}/v2/ answered {resp.status}"
    except (OSError, urllib.error.URLError) as err:
        return f"http://{address}/v2/: {err}"


def tags(address: str, repo: str, *, timeout: float = 10.0) -> list[str]:
    """The tags of REPO in the registry at ADDRESS, sorted; [] when the repository does not exist."""
    repo = repo.removeprefix(f"{address}/")
    url = f"http://{address}/v2/{repo}/tags/list"
    try:
        with _get(url, timeout) as resp:
            body = json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return []
        raise MinicloudError(f"the registry at {address} answered {err.code} to {url}") from None
    except (OSError, ValueError) as err:
        raise MinicloudError(f"cannot list the tags of {repo} in the registry at {address}: {err}",
                             hint="is the registry running? (registry.ensure_registry)") from None
    return sorted(body.get("tags") or [])


MANIFEST_TYPES = ("application/vnd.docker.distribution.manifest.v2+json, "
                  "application/vnd.docker.distribution.manifest.list.v2+json, "
                  "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json")


def manifest_digest(address: str, repo: str, tag: str, *, timeout: float = 10.0) -> str:
    """The digest of REPO:TAG in the registry (sha256:…), to pin a service to exactly what was pushed."""
    repo = repo.removeprefix(f"{address}/")
    url = f"http://{address}/v2/{repo}/manifests/{tag}"
    try:
        with _get(url, timeout, {"Accept": MANIFEST_TYPES}, method="HEAD") as resp:
            digest = resp.headers.get("Docker-Content-Digest")
    except urllib.error.HTTPError as err:
        raise MinicloudError(f"{repo}:{tag} is not in the registry at {address} ({err.code})") from None
    except OSError as err:
        raise MinicloudError(f"cannot reach the registry at {address}: {err}") from None
    if not digest:
        raise MinicloudError(f"the registry at {address} gave no digest for {repo}:{tag}")
    return digest


def image_labels(address: str, repo: str, tag: str, *, timeout: float = 10.0) -> dict[str, str]:
    """The labels of REPO:TAG's image in the registry (its config's), e.g. the function versions a release
    was deployed with; {} when it has none."""
    repo = repo.removeprefix(f"{address}/")
    try:
        with _get(f"http://{address}/v2/{repo}/manifests/{tag}", timeout,
                  {"Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                             "application/vnd.oci.image.manifest.v1+json"}) as resp:
            config = json.loads(resp.read())["config"]["digest"]
        with _get(f"http://{address}/v2/{repo}/blobs/{config}", timeout) as resp:
            return (json.loads(resp.read()).get("config") or {}).get("Labels") or {}
    except urllib.error.HTTPError as err:
        raise MinicloudError(f"{repo}:{tag} is not in the registry at {address} ({err.code})") from None
    except (OSError, ValueError, KeyError) as err:
        raise MinicloudError(f"cannot read {repo}:{tag} in the registry at {address}: {err}") from None
