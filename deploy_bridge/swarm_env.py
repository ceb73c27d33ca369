"""An env on Docker Swarm (`[env.NAME] engine = "swarm"`): the app as a replicated service.

The engine is the swarm manager Docker's own settings name (DOCKER_HOST, a context; `ssh://` works).
Each verb is a few steps over the manager's API:

    build     the overlay network, minicloud's registry (swarm_registry.py, unless the env names one) and
              the database (swarm_db.py); the sandbox (swarm_sandbox.py) and the data API (swarm_data.py)
              are ensured at each deploy, with the keys, packages and rules of that moment
    deploy    build the release image on the build engine → push it to the registry (every node pulls
              from there) → create or update the app service → wait until every task runs the release
              and is healthy (or Swarm rolled the update back: the deploy fails, naming why) → the
              gateway and the metrics collector (swarm_metrics.py) → the functions (swarm_functions.py);
              a grey release is swarm_canary.py
    rollback  the service to an earlier release's image in the registry (the previous one by default),
              and the functions to the versions that release recorded
    scale     the service's replica count
    stop      0 tasks (the count kept in a label), `start` brings it back; `restart` replaces every task
    logs      the service logs of the app (and a canary), database, sandbox, data API, gateway and the
              functions' scheduler, and the function instances' logs, each line with its task's release
    tasks     the running tasks with node, state, health and release
    releases  the registry's tags of the app's repository
    destroy   every service of the env, their Swarm files and the overlay network; the volumes only
              with `--with-data`

The update is Swarm's own rolling update: parallelism 1, start-first (a new task is healthy before
an old one stops), rollback on failure; the health check is the manifest's `health` path asked by curl
inside the task; a stopping task is sent no SIGTERM and gets the app's drain time (see `app_spec`). The env's
HTTPS gateway is a service too (swarm_gateway.py), routing the env's host to `tasks.SERVICE`. There is no IPVS on every kernel (not on
this project's test machine), so the service uses endpoint mode `dnsrr`: `tasks.SERVICE` names each task.

Labels stay the truth: the service, its tasks' containers, the network and the images carry the same
`minicloud.*` labels as a local env's containers; the release of each task is its container label.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import APIError, NotFound
from docker.types import EndpointSpec, Healthcheck, RollbackConfig, ServiceMode, UpdateConfig

from . import logs, registry, swarm
from .config import LABEL_FN_VERSIONS, LABEL_RELEASE, Settings
from .credentials import DbCredentials
from .errors import MinicloudError, ReleaseUnhealthy
from .functions import PORT as FUNCTIONS_PORT
from .functions import versions_label
from .gateway import FUNCTIONS_PATH
from .manifest import Manifest
from .progress import NullProgress, Progress
from .releases import ReleaseBuilder, record_release
from .sandbox.platform import PORT as SANDBOX_PORT
from .swarm_canary import SwarmCanary
from .swarm_data import SwarmData
from .swarm_db import SwarmDatabase
from .swarm_files import SwarmFiles
from .swarm_functions import SwarmFunctions
from .swarm_gateway import SwarmGateway
from .swarm_metrics import SwarmMetrics
from .swarm_registry import ImageRoute, SwarmRegistry
from .swarm_sandbox import SwarmSandbox

SECOND = 1_000_000_000  # Swarm's durations are nanoseconds
LABEL_STOPPED_AT = "minicloud.stopped.replicas"  # on a stopped app service: how many tasks `start` brings back


@dataclass
class Task:
    id: str
    slot: int | None
    node: str  # the node's hostname
    state: str  # Swarm's: new, pending, preparing, starting, running, failed, shutdown…
    desired: str
    release: str | None
    error: str
    canary: bool = False  # a task of the env's grey release (swarm_canary.py), not of the app service

    @property
    def health(self) -> str:
        """Swarm reports a task with a health check `running` only once it is healthy, `starting` before."""
        return {"running": "healthy", "starting": "starting"}.get(self.state, "-")

    def as_dict(self) -> dict:
        return {"id": self.id[:12], "slot": self.slot, "node": self.node, "state": self.state, "health": self.health,
                "desired": self.desired, "release": self.release, "error": self.error, "canary": self.canary}


class SwarmEnv:
    """The verbs of one app's env on a swarm, through the manager `manager`."""

    def __init__(self, manager: docker.DockerClient, settings: Settings, manifest: Manifest, env: str,
                 builder: docker.DockerClient | Callable[[], docker.DockerClient] | None = None,
                 engine_socket: str = "/var/run/docker.sock") -> None:
        self.manager, self.settings, self.manifest, self.env = manager, settings, manifest, env
        self.engine_socket = engine_socket  # the manager's engine socket on its node (the collector's)
        # where release images are built and pushed from: the manager's engine unless told (a local engine
        # with its build cache, as Kamal builds, when this machine reaches the registry too); a function
        # that makes the client is called on first use (reading verbs never need it)
        self._builder = builder
        self.config = manifest.env(env)
        self.app = manifest.name
        self._route: ImageRoute | None = None

    @functools.cached_property
    def builder(self) -> docker.DockerClient:
        made = self._builder
        return made() if callable(made) else (made or self.manager)

    # ------------------------------------------------------------------ names
    @property
    def service_name(self) -> str:
        return self.settings.container(self.app, self.env, "app")

    @property
    def network_name(self) -> str:
        return self.settings.network(self.app, self.env)

    @property
    def registry(self) -> str:
        """The registry's address as the nodes name it (the env's `registry`, else minicloud's own)."""
        return self.config.registry or self.own_registry().address()

    def own_registry(self) -> SwarmRegistry:
        return SwarmRegistry(self.manager, self.builder, self.settings)

    def image_route(self, progress: Progress | None = None) -> ImageRoute:
        """How images reach the registry (minicloud's own is started when it does not run)."""
        if self._route is None:
            self._route = (ImageRoute(self.builder, self.config.registry) if self.config.registry
                           else self.own_registry().route(progress))
        return self._route

    def labels(self, role: str, release: str | None = None) -> dict[str, str]:
        return self.settings.labels(app=self.app, env=self.env, role=role, release=release)

    # ------------------------------------------------------------------ the network
    def ensure_network(self) -> docker.models.networks.Network:
        """The env's attachable overlay network: the app's tasks, and later the gateway, meet on it."""
        swarm.require_manager(self.manager)
        return self._network() or self.manager.networks.create(self.network_name, driver="overlay", attachable=True,
                                            labels=self.labels("network"))

    # ------------------------------------------------------------------ env build
    def build(self, creds: DbCredentials, progress: Progress | None = None) -> None:
        """What the app needs before its first deploy: the overlay network and the database service."""
        progress = progress or NullProgress()
        network = self.ensure_network()
        self.database().ensure_service(network, creds, self.image_route(progress), progress)

    def database(self) -> SwarmDatabase:
        return SwarmDatabase(self.manager, self.builder, self.settings, self.app, self.env)

    def is_built(self) -> bool:
        """`env build` made the env's network (a deploy needs nothing else from it to run)."""
        return self._network() is not None

    # ------------------------------------------------------------------ deploy
    def deploy(self, environment: dict[str, str], progress: Progress | None = None,
               files: dict[str, tuple[bytes, bool]] | None = None,
               labels: dict[str, str] | None = None) -> tuple[str, str]:
        """Build, push and roll out a new release; (release id, the image as the nodes pull it).

        `files`: what the app reads besides its image (path in the container -> content, secret or not):
        the local CA's certificate, the sandbox's keys; Swarm configs and secrets here."""
        progress = progress or NullProgress()
        swarm.require_manager(self.manager)
        route = self.image_route(progress)
        network = self.ensure_network()
        release, tag = ReleaseBuilder(self.builder, self.settings, self.manifest, self.env).build(progress, labels)
        progress.check_cancelled()
        image = route.push(tag, progress)
        self.roll_out(image, release, environment, network, progress, files or {})
        self.ensure_edge(network, route, progress)
        return release, image

    def ensure_edge(self, network, route: ImageRoute, progress: Progress) -> None:
        """The env's gateway with today's routes, and its metrics collector beside it (with today's [alerts])."""
        gateway = self.gateway()
        gateway.ensure(network, self.routes(), route, progress)
        self.metrics().ensure(network, gateway.service_name, gateway.volume_name, gateway.node() or "", route,
                              progress)

    def functions(self) -> SwarmFunctions:
        return SwarmFunctions(self.manager, self.builder, self.settings, self.manifest, self.env, self.engine_socket)

    def ensure_functions(self, versions: dict[str, str], environment: dict[str, str],
                         files: dict[str, tuple[bytes, bool]], progress: Progress | None = None) -> None:
        """Make these function versions live on the manager (the scheduler is started if needed)."""
        self.functions().ensure(self.ensure_network(), versions, environment, files, self.image_route(progress),
                                progress)

    def metrics(self) -> SwarmMetrics:
        return SwarmMetrics(self.manager, self.builder, self.settings, self.manifest, self.env, self.engine_socket)

    def routes(self) -> dict[str, tuple[str, int]]:
        """What the env's gateway serves: host -> (upstream, port); the tasks of each service by name."""
        s = self.settings
        found = ({s.app_host(self.app, self.env): (f"tasks.{self.service_name}", self.manifest.port)}
                 if self.manifest.has_server else {})
        if self.config.sandbox and self.sandbox().service() is not None:
            found[s.sandbox_host(self.app, self.env)] = (f"tasks.{self.sandbox().name}", SANDBOX_PORT)
        if self.manifest.functions.functions:  # HOST/fn/: the functions' scheduler
            found[s.app_host(self.app, self.env) + FUNCTIONS_PATH] = (f"tasks.{self.functions().name}", FUNCTIONS_PORT)
        return {**found, **self.data().routes()}

    def data(self) -> SwarmData:
        return SwarmData(self.manager, self.builder, self.settings, self.manifest, self.manifest.path.parent, self.env)

    def ensure_data(self, sandbox_keys, progress: Progress | None = None) -> None:
        """The data API (`[data]`): its PostgreSQL and server, with today's rules."""
        self.data().ensure(self.ensure_network(), sandbox_keys, self.image_route(progress), progress)

    def sandbox(self) -> SwarmSandbox:
        return SwarmSandbox(self.manager, self.builder, self.settings, self.app, self.env)

    def ensure_sandbox(self, keys, abilities: Path, progress: Progress | None = None) -> None:
        """The env's sandbox open platform, with these keys and granted packages."""
        self.sandbox().ensure(self.ensure_network(), keys, abilities, self.image_route(progress), progress)

    def canary(self) -> SwarmCanary:
        return SwarmCanary(self)

    def gateway(self) -> SwarmGateway:
        return SwarmGateway(self.manager, self.builder, self.settings, self.app, self.env)

    def roll_out(self, image: str, release: str, environment: dict[str, str], network, progress: Progress,
                 files: dict[str, tuple[bytes, bool]]) -> None:
        """Create the app service running `image`, or update it to it, and wait until it converged."""
        spec = self.app_spec(image, release, environment, network, files)
        service = self._service()
        before = self._update_started(service)
        if service is None:
            progress.report(f"creating service {self.service_name} ({self.config.replicas} tasks)")
            self.manager.services.create(**spec)
        else:
            progress.report(f"updating service {self.service_name} to {release}, one task at a time")
            service.update(**spec)
        self.wait_converged(release, progress, since=before)

    @staticmethod
    def _update_started(service) -> str | None:
        """When the service's last update began: an update status from before ours is not ours."""
        return ((service.attrs.get("UpdateStatus") or {}).get("StartedAt")) if service is not None else None

    def app_spec(self, image: str, release: str, environment: dict[str, str], network,
              files: dict[str, tuple[bytes, bool]], name: str | None = None, replicas: int | None = None) -> dict:
        """The app service's spec (or, by `name` and `replicas`, a canary's: the same app beside it)."""
        m = self.manifest
        name = name or self.service_name
        role = "app" if name == self.service_name else "canary"
        store = SwarmFiles(self.manager, name, self.labels(role))
        configs = [store.config(path, data) for path, (data, secret) in sorted(files.items()) if not secret]
        secrets = [store.secret(path, data) for path, (data, secret) in sorted(files.items()) if secret]
        health = (f"curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:{m.port}{m.health} || exit 1")
        update = UpdateConfig(parallelism=1, delay=0, failure_action="rollback", monitor=3 * SECOND,
                              order="start-first")
        rollback = RollbackConfig(parallelism=1, delay=0, failure_action="pause", monitor=5 * SECOND,
                                  order="start-first")
        return {
            "image": image, "name": name,
            # the tasks are the app's code either way (logs, metrics); the service says which it is
            "labels": self.labels(role), "container_labels": self.labels("app", release),
            "env": [f"{k}={v}" for k, v in environment.items()],
            "networks": [network.id], "endpoint_spec": EndpointSpec(mode="dnsrr"),
            "configs": configs, "secrets": secrets,
            "mode": ServiceMode("replicated", replicas=self._replicas_now() if replicas is None else replicas),
            "constraints": list(self.config.placement), "init": True,
            "healthcheck": Healthcheck(test=["CMD-SHELL", health], interval=1 * SECOND, timeout=3 * SECOND,
                                       retries=3, start_period=m.health_timeout * SECOND),
            # A stopping task is out of `tasks.SERVICE` already; it gets no SIGTERM (a Node or Python app
            # without a handler would drop its requests in flight) but SIGCONT, which stops nothing, and is
            # killed after the drain time. Swarm's update does not wait for it: the next task goes on.
            "stop_signal": "SIGCONT", "stop_grace_period": self.grace_seconds() * SECOND,
            "update_config": update, "rollback_config": rollback,
        }

    def grace_seconds(self) -> int:
        m = self.manifest
        return max(m.drain_timeout, m.drain_seconds, 1)

    def _replicas_now(self) -> int:
        """The running service keeps its count (a `scale`); a new one gets the manifest's."""
        service = self._service()
        if service is not None:
            mode = service.attrs["Spec"]["Mode"].get("Replicated") or {}
            if "Replicas" in mode:
                return int(mode["Replicas"])
        return self.config.replicas

    def service_spec(self) -> dict | None:
        """What the app service is asked to run: {"replicas", "image"}; None when there is no service."""
        service = self._service()
        if service is None:
            return None
        spec = service.attrs["Spec"]
        container = spec["TaskTemplate"]["ContainerSpec"]
        return {"replicas": int((spec["Mode"].get("Replicated") or {}).get("Replicas", 0)),
                "image": container["Image"].split("@")[0], "release": (container.get("Labels") or {}).get(LABEL_RELEASE)}

    def _service(self):
        try:
            return self.manager.services.get(self.service_name)
        except NotFound:
            return None
        except APIError:
            swarm.require_manager(self.manager)  # "not a swarm manager" says why and how to fix it
            raise

    def wait_converged(self, release: str | None, progress: Progress, timeout: float | None = None,
                       since: str | None = None) -> None:
        """Until every wanted task runs (healthy) `release` and no update is under way; ReleaseUnhealthy when Swarm
        rolled the update back or the deadline passes. `since`: the update status before the change (ignored)."""
        timeout = timeout or self.manifest.health_timeout + 60
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            service = self._service()
            if service is None:
                raise ReleaseUnhealthy(f"service {self.service_name} is gone")
            update = service.attrs.get("UpdateStatus") or {}
            state = update.get("State", "") if since is None or update.get("StartedAt") != since else ""
            if state in ("rollback_completed", "rollback_paused", "paused"):
                raise ReleaseUnhealthy(f"the update of {self.service_name} to {release} failed and Swarm "
                                   f"{'rolled it back' if state.startswith('rollback') else 'paused it'}: "
                                   f"{update.get('Message', '')}",
                                   details=self._task_errors(), hint=f"minicloud logs {self.env}")
            want = (service.attrs["Spec"]["Mode"].get("Replicated") or {}).get("Replicas", 0)
            tasks = [t for t in self.tasks() if t.desired == "running"]
            running = [t for t in tasks if t.state == "running" and (release is None or t.release == release)]
            if len(running) == want == len(tasks) and state in ("", "completed"):
                return  # "updating" lasts until the monitor period after the last task: a rollback may come
            now = f"{len(running)}/{want} tasks run {release or 'the service'}"
            if now != last:
                progress.report(now)
                last = now
            progress.check_cancelled()
            if time.monotonic() > deadline:
                raise ReleaseUnhealthy(f"{self.service_name}: {now} after {timeout:.0f} s", details=self._task_errors())
            time.sleep(0.25)

    def _task_errors(self) -> str:
        return "\n".join(f"task {t.slot} on {t.node}: {t.state} {t.error}" for t in self.tasks(all_tasks=True)
                         if t.error)[-2000:]

    # ------------------------------------------------------------------ reading
    def tasks(self, all_tasks: bool = False) -> list[Task]:
        """The app service's tasks (running or wanted to, unless `all_tasks`), by slot."""
        return self.tasks_of(self._service(), all_tasks)

    def tasks_of(self, service, all_tasks: bool = False) -> list[Task]:
        if service is None:
            return []
        nodes = {n.id: (n.attrs.get("Description") or {}).get("Hostname", n.id[:12]) for n in self.manager.nodes.list()}
        out = []
        for t in service.tasks() if all_tasks else service.tasks(filters={"desired-state": "running"}):
            spec = (t.get("Spec") or {}).get("ContainerSpec") or {}
            status = t.get("Status") or {}
            out.append(Task(t["ID"], t.get("Slot"), nodes.get(t.get("NodeID", ""), "?"), status.get("State", "?"),
                            t.get("DesiredState", "?"), (spec.get("Labels") or {}).get(LABEL_RELEASE),
                            status.get("Err", ""), canary=service.name != self.service_name))
        out.sort(key=lambda t: (t.slot or 0, t.state != "running"))
        return out

    def release_labels(self, release: str) -> dict[str, str]:
        """The labels a release's image has in the registry (the function versions it was deployed with)."""
        repo = self.settings.app_image(self.app, self.env, "x").split(":")[0]
        return registry.image_labels(self.registry, repo, f"{self.env}-{release}")

    def releases(self) -> list[str]:
        if not self.config.registry and self.own_registry().service() is None:
            return []  # nothing was pushed yet
        repo = self.settings.app_image(self.app, self.env, "x").split(":")[0]
        prefix = f"{self.env}-"
        return sorted(t[len(prefix):] for t in registry.tags(self.registry, repo) if t.startswith(prefix))

    def log_sources(self, roles: list[str]) -> list:
        """The app's and the gateway's service logs as `logs.read_batches` sources (each line with its task's
        release, read from the task's spec: labels stay the truth)."""
        releases: dict[str, str | None] = {}

        def release_of(task_id: str) -> str | None:
            if task_id not in releases:
                releases.update({t.id: t.release for t in [*self.tasks(all_tasks=True),
                                                           *self.tasks_of(self.canary().service(), all_tasks=True)]})
            return releases.get(task_id)

        found = self.functions().log_sources(roles)
        data = self.data()
        for role, name in (("app", self.service_name), ("app", self.canary().service_name), ("db", self.database().name),
                           ("sandbox", self.sandbox().name), ("data", data.api_name), ("datadb", data.store_name),
                           ("gateway", self.gateway().service_name)):
            if role in roles:
                with contextlib.suppress(NotFound):
                    found.append(logs.service_source(self.manager.services.get(name), role,
                                                     release_of if role == "app" else lambda _: None))
        return found

    # ------------------------------------------------------------------ changing
    def restart(self, progress: Progress | None = None) -> None:
        """Fresh tasks of the running release, one at a time, start-first (Swarm's forced update)."""
        progress = progress or NullProgress()
        service = self._require_service()
        before = self._update_started(service)
        service.force_update()
        self.wait_converged((self.service_spec() or {}).get("release"), progress, since=before)

    def stop(self, progress: Progress | None = None) -> None:
        """No app task runs; the count it had is kept on the service (a label) for `start`."""
        service = self._require_service()
        replicas = (self.service_spec() or {}).get("replicas", 0)
        if replicas:
            labels = {**(service.attrs["Spec"].get("Labels") or {}), LABEL_STOPPED_AT: str(replicas)}
            service.update(mode=ServiceMode("replicated", replicas=0), labels=labels)
        self.wait_converged(None, progress or NullProgress())

    def start(self, progress: Progress | None = None) -> None:
        """The count the app had before `stop` (else the manifest's `replicas`)."""
        service = self._require_service()
        labels = dict(service.attrs["Spec"].get("Labels") or {})
        replicas = int(labels.pop(LABEL_STOPPED_AT, 0)) or self.config.replicas
        if (self.service_spec() or {}).get("replicas") == 0:
            service.update(mode=ServiceMode("replicated", replicas=replicas), labels=labels)
        self.wait_converged(None, progress or NullProgress())

    def _require_service(self):
        if not self.manifest.has_server:
            raise MinicloudError(f"{self.app} is functions alone: env {self.env} has no app service to scale, stop "
                                 "or restart", hint="its instances come and go with the invocations (reserved and "
                                                    "max_instances in [functions.NAME])")
        service = self._service()
        if service is None:
            raise MinicloudError(f"env {self.env} has no app service on this swarm", hint=f"minicloud deploy {self.env}")
        return service

    def rollback(self, environment: dict[str, str], to: str | None = None,
                 progress: Progress | None = None, files: dict[str, tuple[bytes, bool]] | None = None) -> tuple[str, str]:
        """Roll the service to an earlier release from the registry (no rebuild); (release, image).

        Without `to`: the release the service ran before its last update (Swarm's previous spec); with it,
        a release id or a unique prefix of one."""
        progress = progress or NullProgress()
        service = self._require_service()
        current = (self.service_spec() or {}).get("release")
        if to is None:
            previous = ((service.attrs.get("PreviousSpec") or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}
            release = (previous.get("Labels") or {}).get(LABEL_RELEASE)
            if not release or release == current:
                raise MinicloudError(f"env {self.env} has no earlier release to go back to",
                                     hint=f"minicloud releases {self.env}, then rollback {self.env} --to RELEASE")
        else:
            release = self.release_matching(to)
        image = f"{self.registry}/{self.settings.app_image(self.app, self.env, release)}"
        progress.report(f"rolling {self.env} back to {release}")
        self.roll_out(image, release, environment, self.ensure_network(), progress, files or {})
        return release, image

    def release_matching(self, to: str) -> str:
        """The one release whose id starts with `to`; MinicloudError naming the known ones otherwise."""
        known = self.releases()
        matches = [r for r in known if r.startswith(to)]
        if len(matches) != 1:
            raise MinicloudError(f"{'no' if not matches else 'more than one'} release of {self.env} "
                                 f"starts with {to!r} (releases: {', '.join(reversed(known)) or 'none'})")
        return matches[0]

    # ------------------------------------------------------------------ a workspace of functions alone
    def deploy_functions_only(self, versions: dict[str, str], environment: dict[str, str],
                              files: dict[str, tuple[bytes, bool]], progress: Progress) -> str:
        """No app service: the release is an image of labels only (the functions' versions), pushed like any
        release, so `releases` and `rollback` read it; the gateway routes HOST/fn/ to the scheduler."""
        swarm.require_manager(self.manager)
        route = self.image_route(progress)
        network = self.ensure_network()
        recorded = versions_label(versions)
        release, tag = record_release(self.builder, self.settings, self.app, self.env,
                                      hashlib.sha256(recorded.encode()).hexdigest(), {LABEL_FN_VERSIONS: recorded})
        route.push(tag, progress)
        self.ensure_edge(network, route, progress)
        self.ensure_functions(versions, environment, files, progress)
        return release

    def functions_release(self) -> str | None:
        """With functions alone: the newest release whose recorded versions are the live ones."""
        live = self.functions().live_versions()
        for release in reversed(self.releases()) if live else []:
            recorded = self.release_labels(release).get(LABEL_FN_VERSIONS)
            if recorded and json.loads(recorded) == live:
                return release
        return None

    def scale(self, replicas: int, progress: Progress | None = None) -> None:
        progress = progress or NullProgress()
        if not 0 <= replicas <= 50:
            raise MinicloudError(f"scale: {replicas} tasks; from 0 to 50")
        service = self._require_service()
        before = self._update_started(service)
        service.scale(replicas)
        self.wait_converged(None, progress, since=before)

    def destroy(self, with_data: bool = False, progress: Progress | None = None) -> None:
        """The env's services, their Swarm files and the network; the volumes (database, sandbox) only
        `with_data`. Everything is asked to go at once, then swept until Swarm lets go of it."""
        progress = progress or NullProgress()
        gateway, sandbox, database = self.gateway(), self.sandbox(), self.database()
        data, grey, collector, functions = self.data(), self.canary(), self.metrics(), self.functions()
        owners = [(self.service_name, self.labels("app")), (grey.service_name, self.labels("canary")),
                  (collector.name, collector.labels()), (gateway.service_name, gateway.labels()),
                  (functions.name, functions.labels()),
                  (sandbox.name, sandbox.labels()), *data.owners(), (database.name, database.labels())]
        for name, _ in owners:
            with contextlib.suppress(NotFound):
                self.manager.services.get(name).remove()
                progress.report(f"removed service {name}")
        stores = [SwarmFiles(self.manager, name, labels) for name, labels in owners]
        # the gateway's routes and the functions' code (packaged here again at each deploy) are not the user's
        # data: they go with the env
        kept = [database.volume_name, sandbox.volume_name, collector.volume_name, *data.volumes()]
        volumes = [gateway.volume_name, *functions.remove(), *(kept if with_data else [])]
        progress.report(f"waiting for the tasks to stop (an app task drains up to {self.grace_seconds()} s)")
        deadline = time.monotonic() + 90
        while True:
            # each in use until the services' tasks are gone from every node (a stopping app task drains first)
            pending = []
            for store in stores:
                store.remove_unused()
                pending += [item.name for item in store.left()]
            for volume in volumes:
                try:
                    self.manager.volumes.get(volume).remove()
                except NotFound:
                    pass
                except APIError:
                    pending.append(volume)
            if network := self._network():
                with contextlib.suppress(NotFound, APIError):
                    network.remove()
                pending.append(self.network_name)
            if not pending:
                return
            if time.monotonic() > deadline:
                raise MinicloudError(f"still in use after 90 s: {', '.join(pending)}",
                                     hint="docker service ps / docker network inspect (on the manager) name the users")
            time.sleep(0.25)

    def _network(self):
        return next((n for n in self.manager.networks.list(names=[self.network_name]) if n.name == self.network_name),
                    None)
