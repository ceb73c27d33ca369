"""Where a swarm env's images go: minicloud's own registry on the swarm, or the one the env names.

minicloud's own registry (an env without `registry = "HOST:PORT"`) is a service of the swarm, one for every
env of the instance: Debian's docker-registry (the `registry` recipe), one task pinned to the manager
node with the blobs on a named volume there, its port published in host mode on that node (the routing
mesh needs IPVS). Every node pulls `MANAGER_ADDRESS:PORT/REPO:TAG`. The registry speaks plain HTTP, so
each node's engine lists that address in `insecure-registries` (README: "Past one machine").

The registry's own image cannot come from a registry: it is built on the build engine and, when that is
not the manager's, copied to the manager's engine (`docker save | docker load`) once.

A release is pushed by the build engine, which reaches the registry one of three ways:
  - it is the manager's engine: `127.0.0.1:PORT` (loopback is trusted as plain HTTP by every engine);
  - it runs on this machine (a unix socket): through a tunnel this process opens on 127.0.0.1 to the
    registry's address — the way Kamal reaches a registry over SSH, and the build engine needs no setting;
  - otherwise straight to MANAGER_ADDRESS:PORT (that engine lists it in `insecure-registries` too).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import docker
from docker.errors import APIError, ImageNotFound, NotFound
from docker.types import EndpointSpec, Mount, RestartPolicy, ServiceMode

from . import images, registry, swarm
from .config import Settings
from .errors import MinicloudError
from .progress import NullProgress, Progress

PORT = registry.DEFAULT_PORT


class ImageRoute:
    """Pushes images from the build engine to a registry that every node pulls from as `address`."""

    def __init__(self, builder: docker.DockerClient, address: str, *, own_on: str | None = None) -> None:
        # own_on: the node id the registry runs on when it is minicloud's own (plain HTTP, tunnel allowed)
        self.builder, self.address, self.own_on = builder, address, own_on

    def push(self, image: str, progress: Progress | None = None) -> str:
        """Push `image`; the reference the nodes pull it by (ADDRESS/REPO:TAG)."""
        if self.own_on is None:
            return registry.push(self.builder, image, self.address, progress=progress)
        port = self.address.rsplit(":", 1)[1]
        if _node_id(self.builder) == self.own_on:
            return self._push_as(image, f"127.0.0.1:{port}", progress)
        if _is_local(self.builder):
            with tunnel(self.address) as local:
                return self._push_as(image, local, progress)
        return registry.push(self.builder, image, self.address, progress=progress)

    def _push_as(self, image: str, reachable: str, progress: Progress | None) -> str:
        """Push through another address of the same registry; tag the image as the nodes name it."""
        pushed = registry.push(self.builder, image, reachable, progress=progress)
        repo, tag = pushed.removeprefix(f"{reachable}/").rsplit(":", 1)
        self.builder.images.get(pushed).tag(f"{self.address}/{repo}", tag)
        if reachable.startswith("127.0.0.1:") and reachable.rsplit(":", 1)[1] != self.address.rsplit(":", 1)[1]:
            with contextlib.suppress(APIError, NotFound):  # a tunnel's port: a name of no use later
                self.builder.images.remove(pushed, noprune=True)
        return f"{self.address}/{repo}:{tag}"


def _node_id(client: docker.DockerClient) -> str | None:
    with contextlib.suppress(APIError):
        return (client.info().get("Swarm") or {}).get("NodeID") or None
    return None


def _is_local(client: docker.DockerClient) -> bool:
    """The engine listens on this machine, in this network namespace (its 127.0.0.1 is ours)."""
    url = client.api.base_url
    return url.startswith("http+docker://localhost") or any(
        url.startswith(p) for p in ("http://127.0.0.1", "http://localhost", "https://127.0.0.1", "https://localhost"))


@contextlib.contextmanager
def tunnel(address: str) -> Iterator[str]:
    """A TCP tunnel from 127.0.0.1:(a free port) to `address` while the block runs; yields 127.0.0.1:PORT."""
    host, port = address.rsplit(":", 1)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(1 << 16):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection((host, int(port)), timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pump, args=(a, b), daemon=True, name="registry-tunnel").start()

    thread = threading.Thread(target=serve, daemon=True, name="registry-tunnel")
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        listener.close()


class SwarmRegistry:
    """minicloud's own registry on the swarm of `manager`: one per instance, shared by its swarm envs."""

    def __init__(self, manager: docker.DockerClient, builder: docker.DockerClient, settings: Settings,
                 port: int = PORT) -> None:
        self.manager, self.builder, self.settings, self.port = manager, builder, settings, port

    @property
    def service_name(self) -> str:
        return f"{self.settings.prefix}-registry"

    @property
    def volume_name(self) -> str:
        return f"{self.settings.prefix}-registry-data"

    def labels(self) -> dict[str, str]:
        return self.settings.labels(role="registry")

    def service(self):
        return swarm.find_service(self.manager, self.service_name)

    def node(self) -> str:
        """The node it runs on (its placement), or for a new one the manager's own node."""
        return swarm.pinned_node(self.service()) or swarm.own_node(self.manager)

    def address(self) -> str:
        """HOST:PORT as every node names it: the address its node has in the swarm."""
        node = self.node()
        row = next((r for r in swarm.node_table(self.manager) if r["id"] == node), None)
        if row is None or not row["address"]:
            raise MinicloudError(f"the registry's node {node[:12]} is not in the swarm any more",
                                 hint=f"docker service rm {self.service_name}; the next deploy starts it again")
        return f"{row['address']}:{self.port}"

    def route(self, progress: Progress | None = None) -> ImageRoute:
        """Run the registry when it does not; the route the build engine's images take to it."""
        self.ensure(progress)
        return ImageRoute(self.builder, self.address(), own_on=self.node())

    def ensure(self, progress: Progress | None = None, timeout: float = 60) -> None:
        progress = progress or NullProgress()
        swarm.require_manager(self.manager)
        if self.service() is None:
            image = self._image_on_manager(progress)
            node = self.node()
            progress.report(f"starting minicloud's registry on port {self.port} of the manager")
            self.manager.services.create(
                image=image, name=self.service_name, labels=self.labels(), container_labels=self.labels(),
                # a network of its own: a task on none gets the engine's default bridge, which an engine may
                # lack (`--bridge=none`), and then its published port leads nowhere
                networks=[self._network().id],
                mounts=[Mount(registry.DATA_PATH, self.volume_name, type="volume", labels=self.labels())],
                endpoint_spec=EndpointSpec(mode="dnsrr", ports={self.port: (registry.CONTAINER_PORT, "tcp", "host")}),
                mode=ServiceMode("replicated", replicas=1), constraints=[f"node.id=={node}"],
                restart_policy=RestartPolicy(condition="any", delay=1_000_000_000))
        self._wait_ready(timeout)

    def _network(self):
        found = [n for n in self.manager.networks.list(names=[self.service_name]) if n.name == self.service_name]
        return found[0] if found else self.manager.networks.create(self.service_name, driver="overlay",
                                                                   labels=self.labels())

    def _image_on_manager(self, progress: Progress) -> str:
        """The registry's image on the manager's engine, named as if it were in the registry itself: the node
        asks for the image before it starts the task, and a name on Docker Hub would wait for an answer
        that may never come (no route out), where this address refuses at once and the local image is used."""
        local = images.ensure_recipe(self.builder, "registry", progress)
        named = f"{self.address()}/{local}"
        if _node_id(self.builder) != _node_id(self.manager):
            try:
                self.manager.images.get(local)
            except ImageNotFound:
                progress.report("copying the registry's image to the manager's engine (once)")
                self.manager.images.load(self.builder.images.get(local).save(named=True))
        repo, tag = named.rsplit(":", 1)
        self.manager.images.get(local).tag(repo, tag)
        return named

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        address, why = self.address(), "no task yet"
        while time.monotonic() < deadline:
            service = self.service()
            for task in service.tasks(filters={"desired-state": "running"}) if service else []:
                status = task.get("Status") or {}
                why = f"{status.get('State')} {status.get('Err') or ''}".strip()
            problem = registry.not_answering(address)
            if problem is None:
                return
            why = f"{why}; {problem}"
            time.sleep(0.25)
        raise MinicloudError(f"minicloud's registry does not answer at http://{address}/v2/ after {timeout:.0f} s "
                             f"({why})", hint=f"docker service ps {self.service_name} --no-trunc (on the manager)")

    def remove(self, with_data: bool = False) -> None:
        """The service and its network; with `with_data`, the volume (every pushed image) too."""
        with contextlib.suppress(NotFound):
            self.manager.services.get(self.service_name).remove()
        deadline = time.monotonic() + 30
        leftovers = [lambda: self.manager.networks.get(self.service_name).remove()]
        if with_data:
            leftovers.append(lambda: self.manager.volumes.get(self.volume_name).remove())
        for remove in leftovers:
            while True:  # in use until the task is gone
                try:
                    remove()
                    break
                except NotFound:
                    break
                except APIError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.25)
