"""Switching an env's app to a release with no failed request: the steps of deploy, rollback and restart.

    clean leftovers → start the new container → wait until healthy (as the gateway sees it)
    → switch the route → drain the old → prune old images

Safe to kill at any point: the new container gets its restart policy before the route names it, so
whatever serves can come back by itself; anything a killed run left (a new container that never
served, an old one never drained) is not named by the route, and the next verb's first step removes it.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass

import docker
from docker.errors import APIError, NotFound

from .config import LABEL_RELEASE, LOG_CONFIG
from .errors import Cancelled
from .gateway import Edge
from .manifest import Manifest
from .polling import poll_until
from .progress import Progress
from .releases import prune_releases, wait_healthy

RESTART_POLICY = {"Name": "unless-stopped"}


@dataclass
class AppTarget:
    """Where the app of one env runs: what the steps need to know, read from the workspace."""

    client: docker.DockerClient
    edge: Edge
    manifest: Manifest
    env: str
    network: str
    host: str
    environment: dict[str, str]
    mounts: dict[str, dict[str, str]]

    @property
    def app(self) -> str:
        return self.manifest.name

    def app_containers(self, running_only: bool = False) -> list:
        settings = self.edge.settings
        return self.client.containers.list(
            all=not running_only, filters={"label": settings.label_filter(app=self.app, env=self.env, role="app")})

    def serving(self) -> str | None:
        """The container the route names (serving now, or before a stop)."""
        return self.edge.upstream_of(self.host)

    def canary(self) -> str | None:
        """The canary container the route sends some users to, if a canary runs."""
        route = self.edge.route(self.host)
        return route.canary if route else None


class Rollout:
    def __init__(self, target: AppTarget, release: str, image: str, progress: Progress,
                 fresh_image: bool = False) -> None:
        self.target, self.release, self.image, self.progress = target, release, image, progress
        self.fresh_image = fresh_image  # built by this deploy: removed again if it never serves
        self.previous: str | None = None
        self.switched_at: float | None = None  # when the gateway began sending requests to the new release

    def run(self) -> None:
        self.previous = self.current_release()
        clean_leftovers(self.target, self.progress)
        container = self.start_new()
        try:
            self.wait_until_healthy(container)
            self.switch(container)
            self.switched_at = time.monotonic()
        except BaseException as err:
            self.discard(container)
            if isinstance(err, KeyboardInterrupt):
                raise Cancelled(f"deploy of {self.release} interrupted; "
                                f"{self.previous or 'nothing'} still serves") from None
            raise
        self.drain_old(keep=container.name)
        prune_releases(self.target.client, self.target.edge.settings, self.target.app, self.target.env,
                       self.target.manifest.keep_releases, protect={self.release, self.previous or ""})

    def current_release(self) -> str | None:
        serving = self.target.serving()
        for c in self.target.app_containers():
            if c.name == serving:
                return c.labels.get(LABEL_RELEASE)
        return None

    # ------------------------------------------------------------------ the steps
    def start_new(self):
        t, settings = self.target, self.target.edge.settings
        name = settings.container(t.app, t.env, "app", self.release)
        if name == t.serving():  # a restart: the same release runs beside itself for a moment
            name = f"{name}-{uuid.uuid4().hex[:4]}"
        with contextlib.suppress(NotFound):
            t.client.containers.get(name).remove(force=True)
        self.progress.report(f"starting release {self.release}", 70)
        return t.client.containers.run(
            self.image, name=name, detach=True, init=True, network=t.network, environment=t.environment,
            volumes=t.mounts, labels=settings.labels(app=t.app, env=t.env, role="app", release=self.release),
            log_config=LOG_CONFIG)

    def wait_until_healthy(self, container) -> None:
        m = self.target.manifest
        self.progress.report(f"waiting for {m.health} to answer 2xx", 80)
        wait_healthy(container, lambda: self.target.edge.probe(container.name, m.port, m.health), m, self.progress)
        self.progress.check_cancelled()

    def switch(self, container) -> None:
        # the restart policy first: from the moment the route names it, it must come back by itself
        container.update(restart_policy=RESTART_POLICY)
        self.progress.report("switching the gateway", 90)
        self.target.edge.set_route(self.target.host, container.name, self.target.manifest.port)

    def drain_old(self, keep: str) -> None:
        old = [c for c in self.target.app_containers() if c.name != keep]
        if old:
            drain(self.target, old, self.progress)

    def discard(self, container) -> None:
        """The new release never served: it leaves nothing behind, and the old one keeps serving."""
        with contextlib.suppress(Exception):
            container.remove(force=True)
        if self.fresh_image:  # a release that never served is not one to roll back to
            with contextlib.suppress(Exception):
                self.target.client.images.remove(self.image, force=True)
        self.progress.report(f"release {self.release} removed; {self.previous or 'no release'} still serves")


def drain(target: AppTarget, containers: list, progress: Progress) -> None:
    """Stop containers the route no longer names once the gateway has no request in flight to them
    (at least `drain_seconds`, at most `drain_timeout`), then remove them."""
    m = target.manifest
    running = [c for c in containers if c.status in ("running", "restarting")]
    if running:
        progress.report(f"draining {', '.join(c.name for c in running)} (up to {m.drain_timeout}s)", 95)
        started = time.monotonic()

        def drained() -> bool:
            idle = all(target.edge.inflight(c.name, m.port) <= 0 for c in running)
            return idle and time.monotonic() - started >= m.drain_seconds

        if not poll_until(drained, m.drain_timeout, 0.1):
            progress.report(f"requests still in flight after drain_timeout = {m.drain_timeout}s; stopping anyway")
    for c in containers:
        with contextlib.suppress(NotFound, APIError):
            if c.status in ("running", "restarting"):
                c.stop(timeout=10)
            c.remove(force=True)


def clean_leftovers(target: AppTarget, progress: Progress) -> None:
    """What an interrupted verb left: app containers the route does not name (drained, then removed),
    and a serving container without its restart policy."""
    serving = target.serving()
    canary = target.canary()
    leftovers = []
    for c in target.app_containers():
        if c.name in (serving, canary):
            if (c.attrs.get("HostConfig", {}).get("RestartPolicy") or {}).get("Name") != RESTART_POLICY["Name"]:
                c.update(restart_policy=RESTART_POLICY)
        else:
            leftovers.append(c)
    if leftovers:
        progress.report(f"cleaning up after an interrupted run: {', '.join(c.name for c in leftovers)}")
        drain(target, leftovers, progress)


__all__ = ["AppTarget", "Rollout", "clean_leftovers", "drain"]
