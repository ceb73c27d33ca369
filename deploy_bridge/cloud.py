"""The verbs. The CLI and the language server both call these, and nothing else of deploy_bridge.

`Cloud(workspace)` binds one app (its minicloud.toml); every verb takes the environment name. Each verb
is a few named steps over the concerns that do the work: `rollout` (switching releases), `gateway`
(routes), `database`, `sandbox.platform`, `keeper`, `status`. Long verbs take a `Progress` and honour
its cancellation. What runs is read from Docker labels each time; the only other state is the
gateway's route per host (which container serves).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
from docker.errors import APIError, NotFound

from . import canary, engine, hosts, images, keeper, logs, metrics, swarm, variables
from .config import (
    LABEL_APP,
    LABEL_ENV,
    LABEL_FN_VERSIONS,
    LABEL_RELEASE,
    LABEL_WORKSPACE,
    workspace_state_dir,
)
from .credentials import credentials, credentials_path, data_secrets, secrets_path
from .database import Database
from .errors import BadInput, MinicloudError, NotBuilt
from .functions import Functions, Invocation, versions_label
from .gateway import FUNCTIONS_PATH, Edge
from .lock import EnvLock
from .model import DeployResult, EnvStatus, QueryResult, Release, TableInfo
from .progress import NullProgress, Progress
from .releases import ReleaseBuilder, list_releases, record_release, wait_healthy
from .roles import ALL_ROLES, FUNCTION_INSTANCE, SERVICE_ROLES, EnvParts
from .rollout import AppTarget, Rollout, clean_leftovers
from .status import container_status, derive_state, fill_stats, role_of, sort_containers
from .swarm_env import SwarmEnv
from .workspace import Workspace

SWARM_VERBS = ("env build, deploy (--canary too), canary, promote, status, scale, stop, start, restart, logs, "
               "metrics, top, alerts, fn deploy, fn invoke, fn list, releases, rollback, db and env destroy")


class Cloud(Workspace):
    """The verbs of one app; what needs no engine (manifest, URLs, variables) is `Workspace`'s."""

    def _client(self) -> docker.DockerClient:
        return engine.client()

    def _edge(self) -> Edge:
        return Edge(self._client(), self.settings)

    def _db(self, env: str) -> Database:
        if (on_swarm := self._swarm(env)) is not None:
            return on_swarm.database()
        return Database(self._client(), self.settings, self.app, env)

    def _swarm(self, env: str) -> SwarmEnv | None:
        """The env's swarm side when it runs on a swarm (`engine = "swarm"`); None for a local env."""
        self._check_env(env)
        if self.manifest.env(env).engine != "swarm":
            return None
        return SwarmEnv(self._client(), self.env_settings(env), self.manifest, env, builder=engine.build_client,
                        engine_socket=engine.engine_socket())

    def _check_local(self, env: str) -> None:
        """A verb of local envs only: a swarm env gets a clear refusal (an unknown env, UnknownEnv)."""
        self._check_env(env)
        if self.manifest.env(env).engine == "swarm":
            raise MinicloudError(f"env {env} runs on a swarm (engine = \"swarm\"), where this verb does not "
                                 "run yet", hint=f"on a swarm env minicloud runs {SWARM_VERBS}")

    def lock(self, env: str) -> EnvLock:
        """The lock every changing verb of this app's `env` holds."""
        return EnvLock(self.settings.instance_dir() / "locks", self.app, env)

    def _network(self, env: str) -> docker.models.networks.Network:
        try:
            network = self._client().networks.get(self.settings.network(self.app, env))
        except NotFound:
            raise NotBuilt(f"environment {env} of {self.app} is not built",
                           hint=f"minicloud env build {env}") from None
        owner = (network.attrs.get("Labels") or {}).get(LABEL_WORKSPACE)
        if owner and owner != str(self.workspace):
            # two folders with the same app name would share containers but not credentials
            raise MinicloudError(f"{self.app}/{env} belongs to another workspace: {owner}",
                                 hint=f"give this app another [app].name, or run `minicloud env destroy {env}` there")
        return network

    def containers(self, env: str, role: str | None = None, running_only: bool = False) -> list:
        """The env's containers (by label), optionally of one role. One removed between the engine's list and
        its inspection (a function instance the scheduler recycles) is left out, not an error."""
        return self._client().containers.list(
            all=not running_only, filters={"label": self.settings.label_filter(app=self.app, env=env, role=role)},
            ignore_removed=True)

    def _hosts(self, env: str) -> list[str]:
        s = self.settings
        return [s.app_host(self.app, env), s.sandbox_host(self.app, env)]

    def _mounts(self, env: str) -> dict[str, dict[str, str]]:
        """What the app (and each function) gets mounted read-only: the local CA, the sandbox's keys."""
        mounts = {self.ca_path(): {"bind": variables.CA_FILE, "mode": "ro"}}
        keys = self._sandbox_keys(env, create=False) if self.manifest.env(env).sandbox else None
        if keys:
            mounts[str(keys.app_private)] = {"bind": f"{variables.ALIPAY_KEYS_DIR}/app_private.pem", "mode": "ro"}
            mounts[str(keys.platform_public)] = {"bind": f"{variables.ALIPAY_KEYS_DIR}/platform_public.pem",
                                                 "mode": "ro"}
        return mounts

    def _target(self, env: str, release: str | None) -> AppTarget:
        return AppTarget(self._client(), self._edge(), self.manifest, env, self.settings.network(self.app, env),
                         self.settings.app_host(self.app, env),
                         variables.as_environment(self._variables(env, release)), self._mounts(env))

    # ----------------------------------------------------------------- environments
    def build_env(self, env: str, progress: Progress | None = None) -> DeployResult:
        """Network, database, sandbox, gateway route, and a first deploy of the app.

        A first build that fails leaves nothing behind; a rebuild that fails leaves the env as it was.
        """
        if (on_swarm := self._swarm(env)) is not None:
            return self._swarm_build(env, on_swarm, progress or NullProgress())
        self._check_local(env)
        progress = progress or NullProgress()
        client = self._client()
        with self.lock(env).hold("env build"):
            existed = bool(client.networks.list(names=[self.settings.network(self.app, env)]))
            had_volume = bool(client.volumes.list(filters={"name": self.settings.volume(self.app, env, "db")}))
            try:
                self._build_parts(env, progress)
                return self._deploy_locked(env, progress, time.monotonic())
            except BaseException:
                if not existed:
                    progress.report(f"the first build of {self.app}/{env} failed: removing what it made")
                    with contextlib.suppress(Exception):
                        self._teardown(env, remove_data=not had_volume, progress=NullProgress())
                raise

    def _build_parts(self, env: str, progress: Progress) -> None:
        client, s = self._client(), self.settings
        progress.report("preparing images", 5)
        edge = self._edge()
        wanted = [role for role in SERVICE_ROLES if role.enabled(self._parts(env, edge))]
        built = images.ensure_all(client, ["gateway", *{r.recipe for r in wanted}], progress)
        progress.check_cancelled()
        if self.manifest.has_server:
            images.runtime_image(client, self.manifest.runtime, self.manifest.images.get("runtime"), progress)
        edge.ensure(progress)  # first: a taken gateway port fails before anything else is made
        keeper.ensure(client, s, progress)
        metrics.ensure(client, s, self.manifest, env, edge, progress)  # the collector; the env's [alerts]
        progress.report("creating the network", 40)
        try:
            network = self._network(env)
        except NotBuilt:
            network = client.networks.create(s.network(self.app, env), driver="bridge", labels={
                **s.labels(app=self.app, env=env, role="network"), LABEL_WORKSPACE: str(self.workspace)})
        for host in self._hosts(env):
            edge.add_host(host)
        edge.attach(network, self._hosts(env))
        credentials(self.workspace, env, self.app)  # first: the variables every role hands on name them
        if self.manifest.data is not None:
            data_secrets(self.workspace, env)
        parts = self._parts(env, edge, sandbox_keys=self._sandbox_keys(env, create=True))
        for role in wanted:
            if role.enabled(parts):
                progress.report(f"starting the {role.name}", 45)
                role.ensure(parts, built[role.recipe], progress)
                progress.check_cancelled()
        hint = hosts.ensure_names(self._hosts(env))
        if hint:
            progress.report(hint)

    def _parts(self, env: str, edge: Edge, sandbox_keys=None) -> EnvParts:
        return EnvParts(self._client(), self.settings, edge, self.workspace, self.manifest, self.app, env,
                        self.settings.network(self.app, env), sandbox_keys,
                        variables.as_environment(self._variables(env, None)),
                        [f"{host}:{spec['bind']}:ro" for host, spec in self._mounts(env).items()])

    def destroy_env(self, env: str, with_data: bool = False, progress: Progress | None = None) -> None:
        if (on_swarm := self._swarm(env)) is not None:
            with self.lock(env).hold("env destroy"):
                on_swarm.destroy(with_data, progress)
            if not with_data:
                (progress or NullProgress()).report(f"kept the database volume {on_swarm.database().volume_name} "
                                                    "on its node (use --with-data to remove)")
            return
        self._check_local(env)
        progress = progress or NullProgress()
        with contextlib.suppress(NotBuilt):
            self._network(env)  # refuses to destroy an env that another workspace owns
        with self.lock(env).hold("env destroy"):
            self._teardown(env, remove_data=with_data, progress=progress)
        if not with_data:
            progress.report(f"kept the database volume {self.settings.volume(self.app, env, 'db')} "
                            "(use --with-data to remove)")

    def _teardown(self, env: str, remove_data: bool, progress: Progress) -> None:
        client, s = self._client(), self.settings
        edge = self._edge()
        progress.report("removing routes")  # first: the keeper brings back nothing that is routed no more
        for host in self._hosts(env):
            edge.remove_host(host)
        progress.report("removing containers")
        self._functions(env).remove(remove_code=True)  # the scheduler first: it would start instances again
        for container in self.containers(env):
            with contextlib.suppress(NotFound):
                container.remove(force=True)
        with contextlib.suppress(NotFound):
            network = client.networks.get(s.network(self.app, env))
            edge.detach(network)
            network.remove()
        progress.report("removing release images")
        for rel in list_releases(client, s, self.app, env, None):
            with contextlib.suppress(NotFound, APIError):
                client.images.remove(rel.image, force=True)
        hosts.remove_names(self._unused_host_names(env))
        if remove_data:
            progress.report("removing the data volumes and credentials")
            for role in SERVICE_ROLES:
                with contextlib.suppress(NotFound):
                    client.volumes.get(s.volume(self.app, env, role.name)).remove(force=True)
            credentials_path(self.workspace, env).unlink(missing_ok=True)
            secrets_path(self.workspace, env).unlink(missing_ok=True)
        if not client.networks.list(filters={"label": s.label_filter(role="network")}):
            progress.report("no environment is left: removing the gateway and the keeper")
            edge.remove()
            keeper.remove(client, s)
            metrics.remove(client, s)

    def _unused_host_names(self, env: str) -> list[str]:
        """The env's host names that no remaining network of any instance still needs."""
        wanted = [f"{LABEL_APP}={self.app}", f"{LABEL_ENV}={env}"]
        return [] if self._client().networks.list(filters={"label": wanted}) else self._hosts(env)

    # ----------------------------------------------------------------- releases
    def deploy(self, env: str, progress: Progress | None = None, canary: int | None = None,
               judge_seconds: float | None = None, all_at_once: bool = False) -> DeployResult:
        """Build and switch to a new release; with `canary`, send that percent of the users to it instead
        (and with `judge_seconds`, promote or abort it by its metrics after that long). The manifest's
        `[deploy] canary` makes every deploy a judged canary, unless `all_at_once` or nothing serves yet."""
        progress = progress or NullProgress()
        if (on_swarm := self._swarm(env)) is not None:
            serving = on_swarm.is_built() and any(t.state == "running" for t in on_swarm.tasks())
            canary, judge_seconds = self._configured_canary(canary, judge_seconds, all_at_once, serving, progress)
            if canary is not None:
                return self._swarm_canary_deploy(env, on_swarm, canary, judge_seconds, progress)
            return self._swarm_deploy(env, on_swarm, progress)
        self._check_local(env)
        started = time.monotonic()
        self._network(env)  # fails clearly when the env is not built
        canary, judge_seconds = self._configured_canary(canary, judge_seconds, all_at_once,
                                                        self._target(env, None).serving() is not None, progress)
        if canary is not None:
            return self._deploy_canary(env, canary, judge_seconds, progress, started)
        with self.lock(env).hold("deploy"):
            return self._deploy_locked(env, progress, started)

    def _configured_canary(self, canary: int | None, judge_seconds: float | None, all_at_once: bool,
                           serving: bool, progress: Progress) -> tuple[int | None, float | None]:
        """The manifest's `[deploy] canary` makes a deploy a judged canary, unless told `all_at_once` or
        nothing serves yet (the first deploy); a --canary given wins."""
        configured = self.manifest.canary
        if canary is None and configured is not None and not all_at_once and self.manifest.has_server and serving:
            canary, judge_seconds = configured.percent, judge_seconds or configured.judge_seconds
            progress.report(f"[deploy] canary: {canary}% of the users, judged over {judge_seconds:.0f} s", 1)
        return canary, judge_seconds

    # ----------------------------------------------------------------- swarm envs
    def _swarm_build(self, env: str, on_swarm: SwarmEnv, progress: Progress) -> DeployResult:
        with self.lock(env).hold("env build"):
            on_swarm.build(credentials(self.workspace, env, self.app), progress)
            if self.manifest.env(env).sandbox:
                self._sandbox_keys(env, create=True)
        return self._swarm_deploy(env, on_swarm, progress)

    def _swarm_files(self, env: str) -> dict[str, tuple[bytes, bool]]:
        """What a local app gets mounted (the CA, the sandbox's keys) as a swarm app's files; private keys
        as secrets."""
        return {spec["bind"]: (Path(host).read_bytes(), "private" in Path(spec["bind"]).name)
                for host, spec in self._mounts(env).items()}

    def _swarm_result(self, env: str, release: str, previous: str | None, started: float) -> DeployResult:
        return DeployResult(env, self.app, release, previous, self.url(env), round(time.monotonic() - started, 3))

    def _swarm_deploy(self, env: str, on_swarm: SwarmEnv, progress: Progress) -> DeployResult:
        started = time.monotonic()
        with self.lock(env).hold("deploy"):
            previous = self._swarm_prepare(env, on_swarm, progress)
            on_swarm.canary().refuse_if_running()
            environment, files = variables.as_environment(self._variables(env, None)), self._swarm_files(env)
            functions = self._functions_on(on_swarm)
            # the app and its functions as one release: its image records their versions (a rollback's)
            versions = functions.package(list(functions.specs), progress) if functions.specs else None
            if not self.manifest.has_server:  # functions alone: the release records their versions
                previous = on_swarm.functions_release()
                release = on_swarm.deploy_functions_only(versions or {}, environment, files, progress)
                progress.report(f"{release}: functions live at {self.url(env)}/fn/", 100)
                return self._swarm_result(env, release, previous, started)
            labels = {LABEL_FN_VERSIONS: versions_label(versions)} if versions is not None else None
            release, _ = on_swarm.deploy(environment, progress, files=files, labels=labels)
            if versions is not None:
                on_swarm.ensure_functions(versions, environment, files, progress)
        return self._swarm_result(env, release, previous, started)

    def _functions_on(self, on_swarm: SwarmEnv) -> Functions:
        """The functions' packaging, on the engine that builds the swarm env's releases."""
        return on_swarm.functions().local

    def _swarm_prepare(self, env: str, on_swarm: SwarmEnv, progress: Progress) -> str | None:
        """What every swarm deploy does first: a built env; the sandbox's packages and the data API's rules
        of now. The release serving before."""
        if not on_swarm.is_built():
            raise NotBuilt(f"environment {env} of {self.app} is not built on this swarm",
                           hint=f"minicloud env build {env}")
        previous = next((t.release for t in on_swarm.tasks() if t.state == "running"), None)
        keys = self._sandbox_keys(env, create=False) if self.manifest.env(env).sandbox else None
        if keys is not None:  # the granted packages of now
            on_swarm.ensure_sandbox(keys, self.workspace / "abilities", progress)
        if self.manifest.data is not None:  # the collections' rules of now
            on_swarm.ensure_data(keys, progress)
        return previous

    def _swarm_canary_deploy(self, env: str, on_swarm: SwarmEnv, percent: int, judge_seconds: float | None,
                             progress: Progress) -> DeployResult:
        """A grey release on a swarm env (swarm_canary.py); judged by the gateway's counts of each side."""
        if not self.manifest.has_server:
            raise BadInput("--canary splits the users of a server: this workspace has functions only")
        started = time.monotonic()
        grey = on_swarm.canary()
        with self.lock(env).hold("canary deploy"):
            previous = self._swarm_prepare(env, on_swarm, progress)
            release = grey.start(percent, variables.as_environment(self._variables(env, None)),
                                 self._swarm_files(env), progress)
            since = time.time()
        result = self._swarm_result(env, release, previous, started)
        result.canary = {"percent": percent, "state": "running"}
        if judge_seconds is None:
            progress.report(f"{release} takes {percent}% of the users (minicloud promote {env} or "
                            f"minicloud rollback {env})", 100)
            return result
        verdict = grey.judge(judge_seconds, since, progress)
        with self.lock(env).hold("canary judge"):
            if verdict.promote:
                grey.promote(variables.as_environment(self._variables(env, None)), self._swarm_files(env), progress)
            else:
                grey.abort(progress)
        result.canary = {"percent": percent, "state": "promoted" if verdict.promote else "aborted",
                         "reason": verdict.reason, "canary": verdict.canary, "baseline": verdict.baseline}
        progress.report(f"canary {release} {result.canary['state']}: {verdict.reason}", 100)
        return result

    def scale(self, env: str, replicas: int, progress: Progress | None = None) -> EnvStatus:
        """A swarm env's app tasks: `replicas` of them (0 stops the app)."""
        on_swarm = self._swarm(env)
        if on_swarm is None:
            raise BadInput(f"scale is for swarm envs (engine = \"swarm\"); env {env} runs one app container "
                           "on this machine")
        with self.lock(env).hold("scale"):
            on_swarm.scale(replicas, progress)
        return self.status(env)

    def _swarm_verb(self, env: str, verb, progress: Progress | None) -> EnvStatus:
        with self.lock(env).hold(verb.__name__):
            verb(progress or NullProgress())
        return self.status(env)

    def _swarm_status(self, env: str, on_swarm: SwarmEnv) -> EnvStatus:
        if not self.manifest.has_server:  # functions alone: they are what must answer
            live = on_swarm.functions().status(quiet=True) if on_swarm.is_built() else None
            state = "not-built" if not on_swarm.is_built() else ("running" if live is not None else "degraded")
            functions = {name: {k: v for k, v in fn.items() if k != "instances"}
                         for name, fn in (live or {}).get("functions", {}).items()}
            return EnvStatus(env, self.app, state, on_swarm.functions_release() if live else None, self.url(env),
                             functions=functions, tasks=[])
        service = on_swarm.service_spec()
        tasks = on_swarm.tasks()
        running = [t for t in tasks if t.state == "running"]
        if service is None:
            state = "not-built"
        elif service["replicas"] == 0:
            state = "stopped"
        else:
            state = "running" if len(running) == service["replicas"] == len(tasks) else "degraded"
        release = next((t.release for t in running), None)
        grey = on_swarm.tasks_of(on_swarm.canary().service())
        functions = {}
        if self.manifest.functions.functions and service is not None:
            live = on_swarm.functions().status(quiet=True) or {}
            functions = {name: {k: v for k, v in fn.items() if k != "instances"}
                         for name, fn in live.get("functions", {}).items()}
        return EnvStatus(env, self.app, state, release, self.url(env), functions=functions,
                         tasks=[t.as_dict() for t in [*tasks, *grey]])

    # ----------------------------------------------------------------- grey releases
    def _deploy_canary(self, env: str, percent: int, judge_seconds: float | None, progress: Progress,
                       started: float) -> DeployResult:
        if not self.manifest.has_server:
            raise BadInput("--canary splits the users of a server: this workspace has functions only")
        with self.lock(env).hold("canary deploy"):
            target = self._target(env, None)
            previous = self._current_release(env)
            release, tag = ReleaseBuilder(self._client(), self.settings, self.manifest, env).build(progress)
            self._edge().ensure(progress)
            canary.start(self._target(env, release), release, tag, percent, progress)
            since = time.time()
        result = DeployResult(env, self.app, release, previous, self.url(env), round(time.monotonic() - started, 3))
        result.canary = {"percent": percent, "state": "running"}
        if judge_seconds is None:
            progress.report(f"{release} takes {percent}% of the users (minicloud promote {env} or "
                            f"minicloud rollback {env})", 100)
            return result
        verdict = canary.wait_and_judge(target, since, judge_seconds, progress)
        with self.lock(env).hold("canary judge"):
            if verdict.promote:
                canary.promote(self._target(env, None), progress)
            else:
                canary.abort(self._target(env, None), progress)
        result.canary = {"percent": percent, "state": "promoted" if verdict.promote else "aborted",
                         "reason": verdict.reason, "canary": verdict.canary, "baseline": verdict.baseline}
        progress.report(f"canary {release} {result.canary['state']}: {verdict.reason}", 100)
        return result

    def canary_split(self, env: str) -> dict | None:
        """A running canary's percent and the two releases (what the editor's status bar shows); None: none."""
        if (on_swarm := self._swarm(env)) is not None:
            return on_swarm.canary().split()
        self._check_local(env)
        route = self._edge().route(self.settings.app_host(self.app, env))
        if route is None or not route.canary:
            return None
        releases = {c.name: c.labels.get(LABEL_RELEASE) for c in self.containers(env, role="app")}
        return {"percent": route.canary_percent, "serving": releases.get(route.upstream or ""),
                "canary": releases.get(route.canary)}

    def canary_status(self, env: str) -> dict:
        """The serving release and the canary side by side: requests, error rate, p95 since it started."""
        if (on_swarm := self._swarm(env)) is not None:
            return on_swarm.canary().side_by_side()
        self._check_local(env)
        self._network(env)
        target = self._target(env, None)
        name = target.canary()
        if name is None:
            raise MinicloudError(f"no canary runs in {self.app}/{env}", hint=f"minicloud deploy {env} --canary 10")
        started = self._client().containers.get(name).attrs["State"]["StartedAt"]
        import datetime as dt

        since = dt.datetime.fromisoformat(started[:26].rstrip("Z") + "+00:00").timestamp()
        return {**canary.side_by_side(target, since), "since": since}

    def _begin(self, env: str, progress: Progress | None) -> tuple[Progress, float]:
        """What every changing verb does first: a known env that is built; its progress and start time."""
        self._check_local(env)
        started = time.monotonic()
        self._network(env)  # fails clearly when the env is not built
        return progress or NullProgress(), started

    def promote(self, env: str, progress: Progress | None = None) -> DeployResult:
        """Move every user to the canary, the zero-failure way."""
        if (on_swarm := self._swarm(env)) is not None:
            started = time.monotonic()
            with self.lock(env).hold("promote"):
                previous = (on_swarm.service_spec() or {}).get("release")
                release = on_swarm.canary().promote(variables.as_environment(self._variables(env, None)),
                                                    self._swarm_files(env), progress or NullProgress())
            return self._swarm_result(env, release, previous, started)
        progress, started = self._begin(env, progress)
        with self.lock(env).hold("promote"):
            previous = self._current_release(env)
            release = canary.promote(self._target(env, None), progress)
        return DeployResult(env, self.app, release, previous, self.url(env), round(time.monotonic() - started, 3))

    def _deploy_locked(self, env: str, progress: Progress, started: float) -> DeployResult:
        """The app and the functions as one release: the release image records the functions' versions."""
        metrics.write_rules(self.settings, self.manifest, env)  # [alerts] as this deploy's manifest says
        functions = self._functions(env)
        versions = functions.package(list(functions.specs), progress) if functions.specs else None
        labels = {LABEL_FN_VERSIONS: versions_label(versions)} if versions is not None else None
        if not self.manifest.has_server:  # functions alone: the release records their versions
            release, _ = record_release(self._client(), self.settings, self.app, env,
                                        hashlib.sha256(labels[LABEL_FN_VERSIONS].encode()).hexdigest(), labels)
            previous = self._current_release(env)
            self._functions_live(env, versions, progress)
            progress.report(f"{release}: functions live at {self.url(env)}/fn/", 100)
            return DeployResult(env, self.app, release, previous, self.url(env),
                                round(time.monotonic() - started, 3))
        release, tag = ReleaseBuilder(self._client(), self.settings, self.manifest, env).build(progress, labels)
        result = self._roll(env, release, tag, progress, started, fresh=True)
        if versions is not None:
            self._functions_live(env, versions, progress)
        return result

    def _functions(self, env: str) -> Functions:
        return Functions(self._client(), self.settings, self.manifest, env)

    def _functions_live(self, env: str, versions: dict[str, str], progress: Progress) -> None:
        """Make these function versions take new invocations (the scheduler is started if needed)."""
        functions = self._functions(env)
        parts = self._parts(env, self._edge())
        functions.write_config(versions, parts.environment, parts.binds)
        functions.ensure_scheduler(images.ensure_recipe(self._client(), "sandbox", progress), parts.edge, progress)
        functions.wait_live(versions)
        progress.report(f"functions live: {', '.join(f'{n} {v}' for n, v in sorted(versions.items()))}")

    def _roll(self, env: str, release: str, image: str, progress: Progress, started: float,
              fresh: bool = False) -> DeployResult:
        self._edge().ensure(progress)
        rollout = Rollout(self._target(env, release), release, image, progress, fresh_image=fresh)
        rollout.run()
        seconds = (rollout.switched_at or time.monotonic()) - started  # until live (the drain comes after)
        progress.report(f"{release} is live at {self.url(env)}", 100)
        return DeployResult(env, self.app, release, rollout.previous, self.url(env), round(seconds, 3))

    def releases(self, env: str) -> list[Release]:
        if (on_swarm := self._swarm(env)) is not None:
            current = self.status(env).release
            image = self.settings.app_image(self.app, env, "")
            return [Release(r, f"{on_swarm.registry}/{image}{r}", "", r == current)
                    for r in reversed(on_swarm.releases())]
        self._check_local(env)
        return list_releases(self._client(), self.settings, self.app, env, self._current_release(env))

    def rollback(self, env: str, to: str | None = None, progress: Progress | None = None) -> DeployResult:
        if (on_swarm := self._swarm(env)) is not None:
            return self._swarm_rollback(env, on_swarm, to, progress or NullProgress())
        progress, started = self._begin(env, progress)
        with self.lock(env).hold("rollback"):
            current = self._current_release(env)
            if to is None and self._target(env, None).canary() is not None:  # a canary runs: remove it
                removed = canary.abort(self._target(env, None), progress)
                progress.report(f"canary {removed} removed; {current} serves every user", 100)
                return DeployResult(env, self.app, current or "", removed, self.url(env),
                                    round(time.monotonic() - started, 3))
            target = self._rollback_target(env, current, to)
            progress.report(f"rolling back to {target.id} (no rebuild)")
            if self.manifest.has_server:
                result = self._roll(env, target.id, target.image, progress, started)
            else:
                result = DeployResult(env, self.app, target.id, current, self.url(env), 0.0)
            recorded = self._client().images.get(target.image).labels.get(LABEL_FN_VERSIONS)
            if recorded:  # the functions as they were deployed with that release
                versions = {n: v for n, v in json.loads(recorded).items() if n in self.manifest.functions.functions}
                self._functions_live(env, versions, progress)
            if not self.manifest.has_server:  # live once the scheduler runs the versions
                result.seconds = round(time.monotonic() - started, 3)
            return result

    def _swarm_rollback(self, env: str, on_swarm: SwarmEnv, to: str | None, progress: Progress) -> DeployResult:
        started = time.monotonic()
        with self.lock(env).hold("rollback"):
            if not self.manifest.has_server:
                previous = on_swarm.functions_release()
                older = [r for r in on_swarm.releases() if previous is None or r < previous]
                if to is None and not older:
                    raise MinicloudError(f"no release of {self.app}/{env} older than {previous} to roll back to",
                                         hint=f"minicloud releases {env}")
                release = on_swarm.release_matching(to) if to is not None else older[-1]
                if release == previous:
                    raise MinicloudError(f"{release} is already the live release of {self.app}/{env}")
            else:
                previous = (on_swarm.service_spec() or {}).get("release")
                if to is None and on_swarm.canary().service() is not None:  # a canary runs: remove it
                    removed = on_swarm.canary().abort(progress)
                    progress.report(f"canary {removed} removed; {previous} serves every user", 100)
                    return DeployResult(env, self.app, previous or "", removed, self.url(env),
                                        round(time.monotonic() - started, 3))
            environment, files = variables.as_environment(self._variables(env, None)), self._swarm_files(env)
            if self.manifest.has_server:
                release, _ = on_swarm.rollback(environment, to, progress, files=files)
            recorded = on_swarm.release_labels(release).get(LABEL_FN_VERSIONS) if self.manifest.functions.functions \
                else None
            if recorded:  # the functions as they were deployed with that release
                versions = {n: v for n, v in json.loads(recorded).items() if n in self.manifest.functions.functions}
                on_swarm.ensure_functions(versions, environment, files, progress)
        return self._swarm_result(env, release, previous, started)

    def _rollback_target(self, env: str, current: str | None, to: str | None) -> Release:
        known = list_releases(self._client(), self.settings, self.app, env, current)
        if to is None:
            older = [r for r in known if current is None or r.id < current]
            if not older:
                raise MinicloudError(f"no release of {self.app}/{env} older than {current} to roll back to",
                                     hint=f"minicloud releases {env}")
            return older[0]
        matches = [r for r in known if r.id == to or r.id.startswith(to)]
        if len(matches) != 1:
            ids = ", ".join(r.id for r in known) or "none"
            what = "no" if not matches else "more than one"
            raise MinicloudError(f"{what} release of {self.app}/{env} matches {to!r} (known: {ids})")
        if matches[0].id == current:
            raise MinicloudError(f"{matches[0].id} is already the running release of {self.app}/{env}")
        return matches[0]

    def _current_release(self, env: str) -> str | None:
        """The release of the container the route names (serving now, or before a stop); with functions
        alone, the newest release whose functions are the live ones."""
        if not self.manifest.has_server:
            live = self._functions(env).live_versions()
            for rel in list_releases(self._client(), self.settings, self.app, env, None):
                recorded = self._client().images.get(rel.image).labels.get(LABEL_FN_VERSIONS)
                if recorded and json.loads(recorded) == live:
                    return rel.id
            return None
        serving = self._edge().upstream_of(self.settings.app_host(self.app, env))
        for c in self.containers(env, role="app"):
            if c.name == serving:
                return c.labels.get(LABEL_RELEASE)
        return None

    # ----------------------------------------------------------------- functions
    def fn_deploy(self, env: str, names: list[str] | None = None, progress: Progress | None = None) -> dict:
        """Function code only: no image is built; in-flight invocations finish on the old version."""
        if (on_swarm := self._swarm(env)) is not None:
            return self._swarm_fn_deploy(env, on_swarm, names, progress or NullProgress())
        self._check_local(env)
        progress = progress or NullProgress()
        started = time.monotonic()
        functions = self._functions(env)
        if not functions.specs:
            raise BadInput(f"{self.manifest.path} has no [functions.NAME] table", hint="add one, e.g. [functions.hello]")
        functions.check_sources(names)  # a bad name or missing code is said before anything else
        self._network(env)
        with self.lock(env).hold("fn deploy"):
            wanted = names or list(functions.specs)
            versions = {**{n: v for n, v in functions.live_versions().items() if n in functions.specs},
                        **functions.package(wanted, progress)}
            missing = [n for n in functions.specs if n not in versions]
            versions.update(functions.package(missing, progress))  # functions not deployed yet come along
            self._functions_live(env, versions, progress)
        return {"env": env, "app": self.app, "versions": versions, "seconds": round(time.monotonic() - started, 3)}

    def _swarm_fn_deploy(self, env: str, on_swarm: SwarmEnv, names: list[str] | None, progress: Progress) -> dict:
        started = time.monotonic()
        functions = self._functions_on(on_swarm)
        if not functions.specs:
            raise BadInput(f"{self.manifest.path} has no [functions.NAME] table", hint="add one, e.g. [functions.hello]")
        functions.check_sources(names)
        if not on_swarm.is_built():
            raise NotBuilt(f"environment {env} of {self.app} is not built on this swarm", hint=f"minicloud env build {env}")
        with self.lock(env).hold("fn deploy"):
            live = {n: v for n, v in on_swarm.functions().live_versions().items() if n in functions.specs}
            versions = {**live, **functions.package(names or list(functions.specs), progress)}
            versions.update(functions.package([n for n in functions.specs if n not in versions], progress))
            on_swarm.ensure_functions(versions, variables.as_environment(self._variables(env, None)),
                                      self._swarm_files(env), progress)
        return {"env": env, "app": self.app, "versions": versions, "seconds": round(time.monotonic() - started, 3)}

    def fn_invoke(self, env: str, name: str, event: object) -> Invocation:
        on_swarm = self._swarm(env)
        if on_swarm is None:
            self._check_local(env)
        # a swarm env's URL may name a gateway port of its own (its settings')
        functions = self._functions(env) if on_swarm is None else self._functions_on(on_swarm)
        functions.check_sources([name])
        return functions.invoke(name, event, self.ca_path(),
                                address=swarm.env_gateway_address(self, env) if on_swarm is not None else None)

    def fn_list(self, env: str) -> dict:
        """Each function's version, instances, queue, invocations, errors and p95; each runtime's pool."""
        if (on_swarm := self._swarm(env)) is not None:
            return {"env": env, "app": self.app, **(on_swarm.functions().status() or {})}
        self._check_local(env)
        self._network(env)
        return {"env": env, "app": self.app, **self._functions(env).status()}

    # ----------------------------------------------------------------- start / stop / restart
    def stop(self, env: str, progress: Progress | None = None) -> EnvStatus:
        if (on_swarm := self._swarm(env)) is not None:
            return self._swarm_verb(env, on_swarm.stop, progress)
        self._check_local(env)
        progress = progress or NullProgress()
        self._network(env)
        with self.lock(env).hold("stop"):
            edge = self._edge()
            # the route first: the keeper brings back only what is routed
            edge.stop_route(self.settings.app_host(self.app, env), f"{self.app}/{env} is stopped (minicloud start {env})")
            edge.stop_route(self.settings.sandbox_host(self.app, env), f"the sandbox of {self.app}/{env} is stopped")
            if self.manifest.functions.functions:
                edge.stop_route(self.settings.app_host(self.app, env) + FUNCTIONS_PATH,
                                f"the functions of {self.app}/{env} are stopped (minicloud start {env})")
            for role in ("app", FUNCTION_INSTANCE, *(r.name for r in reversed(SERVICE_ROLES))):
                for c in self.containers(env, role=role, running_only=True):
                    progress.report(f"stopping {c.name}")
                    c.stop(timeout=15)
        return self.status(env, stats=False)

    def start(self, env: str, progress: Progress | None = None) -> EnvStatus:
        """Start what is stopped; the app's serving container again (or the newest release)."""
        if (on_swarm := self._swarm(env)) is not None:
            return self._swarm_verb(env, on_swarm.start, progress)
        return self._bring_up(env, progress or NullProgress(), verb="start")

    def restart(self, env: str, progress: Progress | None = None) -> EnvStatus:
        """A fresh container of the running release, switched to with no failed request; the database
        and the sandbox are started if they are down (their connections and data stay)."""
        if (on_swarm := self._swarm(env)) is not None:
            return self._swarm_verb(env, on_swarm.restart, progress)
        return self._bring_up(env, progress or NullProgress(), verb="restart")

    def _bring_up(self, env: str, progress: Progress, verb: str) -> EnvStatus:
        self._check_local(env)
        self._network(env)
        with self.lock(env).hold(verb):
            edge = self._edge()
            edge.ensure(progress)
            keeper.ensure(self._client(), self.settings, progress)
            self._start_services(env, edge, progress)
            if not self.manifest.has_server:  # functions alone: the scheduler is all there is to start
                return self.status(env, stats=False)
            target = self._target(env, None)
            clean_leftovers(target, progress)
            route = edge.route(target.host)
            serving = next((c for c in self.containers(env, role="app") if route and c.name == route.upstream), None)
            if verb == "start" and serving is not None:
                self._start_serving(env, serving, edge, progress)
            else:
                release = serving.labels.get(LABEL_RELEASE) if serving is not None else None
                chosen = next((r for r in self.releases(env) if r.id == release or release is None), None)
                if chosen is None:
                    raise NotBuilt(f"{self.app}/{env} has no release to start", hint=f"minicloud deploy {env}")
                self._roll(env, chosen.id, chosen.image, progress, time.monotonic())
        return self.status(env, stats=False)

    def _start_services(self, env: str, edge: Edge, progress: Progress) -> None:
        parts = self._parts(env, edge)
        for role in SERVICE_ROLES:
            for c in parts.containers(role.name):
                if c.status != "running":
                    progress.report(f"starting {c.name}")
                    c.start()
                role.started(parts, c, progress)

    def _start_serving(self, env: str, container, edge: Edge, progress: Progress) -> None:
        m = self.manifest
        progress.report(f"starting {container.name}")
        container.start()
        container.reload()
        wait_healthy(container, lambda: edge.probe(container.name, m.port, m.health), m, progress)
        edge.set_route(self.settings.app_host(self.app, env), container.name, m.port)

    # ----------------------------------------------------------------- observing
    def status(self, env: str, stats: bool = True) -> EnvStatus:
        if (on_swarm := self._swarm(env)) is not None:
            return self._swarm_status(env, on_swarm)
        self._check_local(env)
        url = self.url(env)
        try:
            self._network(env)
        except NotBuilt:
            return EnvStatus(env, self.app, "not-built", None, url)
        edge = self._edge()
        route = edge.route(self.settings.app_host(self.app, env))
        containers = self.containers(env)
        out = []
        for c in containers:
            role = role_of(c)
            health = None
            if c.status == "running" and role == "app":
                code = edge.probe(c.name, self.manifest.port, self.manifest.health)
                health = "healthy" if code and 200 <= code < 300 else "unhealthy"
            out.append(container_status(c, role, health))
        edge_container = edge.container()
        if edge_container is not None:
            out.append(container_status(edge_container, "gateway", None))
        if stats:
            # from the collector's background samples when they are fresh; the engine only for the others
            running = [c for c in containers if c.status == "running"] + (
                [edge_container] if edge_container is not None and edge_container.status == "running" else [])
            sampled = metrics.recent_samples(self.settings)
            for row in out:
                if row.name in sampled:
                    row.cpu_percent, row.mem_bytes = round(sampled[row.name][0], 2), sampled[row.name][1]
            fill_stats([c for c in running if c.name not in sampled], out)
        sort_containers(out)
        serving = route.serving if route else None
        # what a client gets: the health path through the gateway itself
        code = edge.probe_route(self.settings.app_host(self.app, env), self.manifest.health) if serving else None
        answers = code is not None and 200 <= code < 300
        state = derive_state(out, serving, bool(route and route.stopped), answers)
        current = self._current_release(env)
        functions = {}
        if self.manifest.functions.functions:
            live = self._functions(env).status(quiet=True)
            functions = {name: {k: v for k, v in fn.items() if k != "instances"}
                         for name, fn in (live or {}).get("functions", {}).items()}
            if not self.manifest.has_server:  # functions alone: they are what must answer
                fn_route = edge.route(self.settings.app_host(self.app, env) + FUNCTIONS_PATH)
                state = derive_state(out, None, bool(fn_route and fn_route.stopped), False, functions_only=live is not None)
        collections = None
        if self.manifest.data is not None and state in ("running", "degraded"):
            from .data import DataClient

            with contextlib.suppress(MinicloudError):
                collections = DataClient(self, env).collections()
        return EnvStatus(env, self.app, state, current, url, out,
                         list_releases(self._client(), self.settings, self.app, env, current), functions, collections)

    def log_batches(self, env: str, *, follow: bool = False, since: str | None = None, tail: int | None = None,
                    grep: str | None = None, roles: list[str] | None = None, fn: str | None = None,
                    stop: threading.Event | None = None) -> Iterator[list]:
        """The env's logs as they arrive, in batches (see `logs.read_batches`)."""
        on_swarm = self._swarm(env)
        if on_swarm is None:
            self._check_local(env)
        roles = roles or list(ALL_ROLES)
        unknown = set(roles) - set(ALL_ROLES)
        if unknown:
            raise BadInput(f"--role {', '.join(sorted(unknown))}: expected one of {', '.join(ALL_ROLES)}")
        if on_swarm is not None:
            return logs.read_batches(lambda: on_swarm.log_sources(roles), follow=follow, since=since, tail=tail,
                                     grep=grep, stop=stop)
        self._network(env)
        hostnames = tuple(self._hosts(env))

        # an invocation's lines are tagged "[NAME REQUEST-ID]" by the function's agent
        accept = (lambda text: text.startswith(f"[{fn} ")) if fn else None

        def sources() -> list:
            found = [logs.make_source(c, accept if role_of(c) == FUNCTION_INSTANCE else None)
                     for c in self.containers(env) if role_of(c) in roles]
            if "gateway" in roles and (edge := self._edge().container()) is not None:
                # the gateway is shared: keep the lines about this env's hosts
                found.append(logs.make_source(edge, lambda text: any(h in text for h in hostnames)))
            return found

        return logs.read_batches(sources, follow=follow, since=since, tail=tail, grep=grep, stop=stop)

    def events(self, stop: threading.Event) -> Iterator[dict]:
        """Docker events about this instance's containers, until `stop` is set."""
        client = self._client()
        stream = client.events(decode=True, filters={"label": [f"minicloud.instance={self.settings.instance}"]})
        closer = threading.Thread(target=lambda: (stop.wait(), stream.close()), daemon=True)
        closer.start()
        try:
            for event in stream:
                if stop.is_set():
                    return
                yield event
        except Exception:  # noqa: BLE001 - a closed stream ends the iteration
            return

    # ----------------------------------------------------------------- database
    def db_credentials(self, env: str):
        creds = credentials(self.workspace, env, self.app, create=False)
        if creds is None:
            raise NotBuilt(f"environment {env} of {self.app} has no database yet", hint=f"minicloud env build {env}")
        return creds

    def db_query(self, env: str, sql: str) -> list[QueryResult]:
        """Run SQL; one result per statement that returns rows."""
        return self._db(env).query_all(self.db_credentials(env), sql)

    # ----------------------------------------------------------------- the collector's store
    def metrics(self, env: str, since: float | None = None) -> dict:
        """The env's 10 s series since `since` (default: the last hour), per release and container."""
        since = since if since is not None else time.time() - 3600
        if (on_swarm := self._swarm(env)) is not None:
            with on_swarm.metrics().snapshot() as store:
                return metrics.series(self.settings, self.app, env, since, store)
        self._check_local(env)
        return metrics.series(self.settings, self.app, env, since)

    def live_metrics(self, env: str, routes_since: float | None = None) -> dict:
        """The last ~10–20 s of the env (what `top` shows), and the alerts firing; with `routes_since`, also
        its requests per route since then (`routes`: the editor's hover on a handler)."""
        if (on_swarm := self._swarm(env)) is not None:
            with on_swarm.metrics().snapshot() as store:
                live = metrics.live(self.settings, self.app, env, store=store)
                if routes_since is not None:
                    live["routes"] = metrics.routes(self.settings, self.app, env, routes_since, store)
                return live
        self._check_local(env)
        live = metrics.live(self.settings, self.app, env)
        if routes_since is not None:
            live["routes"] = metrics.routes(self.settings, self.app, env, routes_since)
        return live

    def alerts(self, env: str, since: float | None = None) -> dict:
        """The env's alerts fired and resolved since `since` (default: the last 24 h), and those firing."""
        since = since if since is not None else time.time() - 86400
        if (on_swarm := self._swarm(env)) is not None:
            with on_swarm.metrics().snapshot() as store:
                return metrics.alerts(self.settings, self.app, env, since, store)
        self._check_local(env)
        return metrics.alerts(self.settings, self.app, env, since)

    def db_schema(self, env: str) -> list[TableInfo]:
        """Tables, columns and row counts of the env's database (one query, for the server's index)."""
        return self._db(env).schema(self.db_credentials(env))

    def db_shell_command(self, env: str) -> tuple[list[str], dict[str, str]]:
        """argv and environment for an interactive `mariadb` shell in the env's database container."""
        creds = self.db_credentials(env)
        container = self._db(env).container()
        if container is None:
            raise MinicloudError(f"the database of {self.app}/{env} is not running", hint=f"minicloud start {env}")
        name = container.name
        return (["docker", "exec", "-it", "-e", "MYSQL_PWD", name, "mariadb", "-u", creds.user, creds.database],
                {**os.environ, "MYSQL_PWD": creds.password})


__all__ = ["Cloud", "NullProgress", "workspace_state_dir"]
