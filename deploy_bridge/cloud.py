"""The verbs. The CLI and the language server both call these, and nothing else of deploy_bridge.

`Cloud(workspace)` binds one app (its minicloud.toml). Every method takes the environment name.
Long verbs take a `Progress` (see progress.py) and honour its cancellation. What runs is read from
Docker labels each time; the only other state is the gateway's route per host (which container serves).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
from docker.errors import APIError, NotFound

from . import engine, hosts, images, logs, variables
from .config import (
    LABEL_APP,
    LABEL_ENV,
    LABEL_RELEASE,
    LABEL_ROLE,
    LABEL_WORKSPACE,
    LOG_CONFIG,
    ROLES,
    workspace_state_dir,
)
from .credentials import credentials, credentials_path
from .database import Database
from .errors import Cancelled, DeployBusy, MinicloudError, NotBuilt
from .gateway import Edge
from .model import DeployResult, EnvStatus, LogLine, QueryResult, Release, TableInfo
from .progress import NullProgress, Progress
from .releases import ReleaseBuilder, list_releases, prune_releases, tail_logs, wait_healthy
from .workspace import Workspace


class Cloud(Workspace):
    """The verbs of one app; what needs no engine (manifest, URLs, variables) is `Workspace`'s."""

    def _client(self) -> docker.DockerClient:
        return engine.client()

    def _edge(self) -> Edge:
        return Edge(self._client(), self.settings)

    def _db(self, env: str) -> Database:
        return Database(self._client(), self.settings, self.app, env)

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

    def _containers(self, env: str, role: str | None = None, all: bool = True) -> list:
        return self._client().containers.list(
            all=all, filters={"label": self.settings.label_filter(app=self.app, env=env, role=role)})

    @contextlib.contextmanager
    def _lock(self, env: str, verb: str) -> Iterator[None]:
        """One changing verb per app and env at a time; a second one is refused with who holds it."""
        folder = self.settings.instance_dir() / "locks"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.app}-{env}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = path.read_text().strip() or "another process"
                raise DeployBusy(f"{self.app}/{env} is busy: {holder}",
                                 hint="wait for it to finish, then run the command again") from None
            os.ftruncate(fd, 0)
            os.write(fd, f"{verb} by pid {os.getpid()} since {time.strftime('%H:%M:%S')}".encode())
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)

    # ----------------------------------------------------------------- environments
    def build_env(self, env: str, progress: Progress | None = None) -> DeployResult:
        """Network, database, sandbox, gateway route, and a first deploy of the app."""
        self._check_env(env)
        progress = progress or NullProgress()
        client, s = self._client(), self.settings
        with self._lock(env, "env build"):
            progress.report("preparing images", 5)
            needed = ["mariadb", "gateway"] + (["sandbox"] if self._sandbox_enabled(env) else [])
            built = images.ensure_all(client, needed, progress)
            progress.check_cancelled()
            images.runtime_image(client, self.manifest.runtime, self.manifest.images.get("runtime"), progress)
            edge = self._edge()
            edge.ensure(progress)  # first: a taken gateway port fails before anything else is made
            progress.report("creating the network", 40)
            try:
                network = self._network(env)
            except NotBuilt:
                network = client.networks.create(s.network(self.app, env), driver="bridge", labels={
                    **s.labels(app=self.app, env=env, role="network"), LABEL_WORKSPACE: str(self.workspace)})
            creds = credentials(self.workspace, env, self.app)
            db_image = self.manifest.images.get("db") and images._official(client, self.manifest.images["db"], progress)
            progress.report("starting the database", 45)
            self._db(env).ensure(db_image or built["mariadb"], network.name, creds, progress)
            progress.check_cancelled()
            edge.attach(network, [s.app_host(self.app, env), s.sandbox_host(env)])
            if self._sandbox_enabled(env):
                progress.report("starting the sandbox open platform", 55)
                self._ensure_sandbox(env, built["sandbox"], network.name, edge)
            names = [s.app_host(self.app, env), s.sandbox_host(env)]
            hint = hosts.ensure_names(names)
            if hint:
                progress.report(hint)
        return self.deploy(env, progress, _first=True)

    def _sandbox_enabled(self, env: str) -> bool:
        return self.manifest.env(env).sandbox and _sandbox_available()

    def _ensure_sandbox(self, env: str, image: str, network: str, edge: Edge) -> None:
        client, s = self._client(), self.settings
        keys = self._sandbox_keys(env, create=True)
        name = s.container(self.app, env, "sandbox")
        abilities = self.workspace / "abilities"
        abilities.mkdir(exist_ok=True)
        with contextlib.suppress(NotFound):
            old = client.containers.get(name)
            if old.image.tags[:1] == [image] and old.status == "running":
                edge.set_route(s.sandbox_host(env), name, 8080)
                return
            old.remove(force=True)
        volume = s.volume(self.app, env, "sandbox")
        labels = s.labels(app=self.app, env=env, role="sandbox")
        try:
            client.volumes.get(volume)
        except NotFound:
            client.volumes.create(volume, labels=labels)
        # the platform's private key is mounted, never copied into the image
        container = client.containers.run(
            image, name=name, detach=True, labels=labels, network=network,
            command=["python3", "-m", "deploy_bridge.sandbox.server", "--port", "8080",
                     "--app-id", keys.app_id, "--key-id", keys.key_id,
                     "--platform-private-key", "/keys/platform_private.pem",
                     "--app-public-key", "/keys/app_public.pem",
                     "--abilities", "/abilities", "--state", "/data/state.json"],
            volumes={str(keys.platform_private): {"bind": "/keys/platform_private.pem", "mode": "ro"},
                     str(keys.app_public): {"bind": "/keys/app_public.pem", "mode": "ro"},
                     str(keys.platform_public): {"bind": "/keys/platform_public.pem", "mode": "ro"},
                     str(abilities.resolve()): {"bind": "/abilities", "mode": "ro"},
                     volume: {"bind": "/data", "mode": "rw"}},
            restart_policy={"Name": "unless-stopped"}, log_config=LOG_CONFIG,
        )
        deadline = time.monotonic() + 20
        while edge.probe(name, 8080, "/_sandbox/health") != 200:
            container.reload()
            if container.status == "exited" or time.monotonic() > deadline:
                raise MinicloudError("the sandbox open platform did not start", details=tail_logs(container))
            time.sleep(0.2)
        edge.set_route(s.sandbox_host(env), name, 8080)

    def destroy_env(self, env: str, with_data: bool = False, progress: Progress | None = None) -> None:
        self._check_env(env)
        progress = progress or NullProgress()
        client, s = self._client(), self.settings
        with contextlib.suppress(NotBuilt):
            self._network(env)  # refuses to destroy an env that another workspace owns
        with self._lock(env, "env destroy"):
            progress.report("removing containers")
            for container in self._containers(env):
                container.remove(force=True)
            edge = self._edge()
            # openapi.ENV.localhost is shared by the apps of ENV: remove it only if it is ours
            sandbox_route = edge.upstream_of(s.sandbox_host(env))
            hosts_to_remove = [s.app_host(self.app, env)]
            if sandbox_route in (None, s.container(self.app, env, "sandbox")):
                hosts_to_remove.append(s.sandbox_host(env))
            for host in hosts_to_remove:
                if edge.route_file(host).is_file():
                    edge.remove_route(host) if edge.container() else edge.route_file(host).unlink(missing_ok=True)
            others = client.containers.list(filters={"label": s.label_filter(env=env, role="sandbox")})
            if s.sandbox_host(env) in hosts_to_remove and others and edge.container() is not None:
                edge.set_route(s.sandbox_host(env), others[0].name, 8080)  # another app of ENV keeps its sandbox
            with contextlib.suppress(NotFound):
                network = client.networks.get(s.network(self.app, env))
                edge.detach(network)
                network.remove()
            progress.report("removing release images")
            for rel in list_releases(client, s, self.app, env, None):
                with contextlib.suppress(NotFound, APIError):
                    client.images.remove(rel.image, force=True)
            hosts.remove_names(self._unused_host_names(env))
            if with_data:
                progress.report("removing the data volumes and credentials (--with-data)")
                for role in ("db", "sandbox"):
                    with contextlib.suppress(NotFound):
                        client.volumes.get(s.volume(self.app, env, role)).remove(force=True)
                credentials_path(self.workspace, env).unlink(missing_ok=True)
            else:
                progress.report(f"kept the database volume {s.volume(self.app, env, 'db')} (use --with-data to remove)")

    def _unused_host_names(self, env: str) -> list[str]:
        """The env's host names that no remaining network of any instance still needs."""
        def in_use(**labels: str) -> bool:
            wanted = [f"{k}={v}" for k, v in labels.items()]
            return bool(self._client().networks.list(filters={"label": wanted}))

        s = self.settings
        unused = []
        if not in_use(**{LABEL_APP: self.app, LABEL_ENV: env}):
            unused.append(s.app_host(self.app, env))
        if not in_use(**{LABEL_ENV: env}):
            unused.append(s.sandbox_host(env))  # openapi.ENV.localhost is shared by the apps of ENV
        return unused

    # ----------------------------------------------------------------- releases
    def deploy(self, env: str, progress: Progress | None = None, _first: bool = False) -> DeployResult:
        self._check_env(env)
        progress = progress or NullProgress()
        started = time.monotonic()
        self._network(env)  # fails clearly when the env is not built
        with self._lock(env, "deploy"):
            release, tag = ReleaseBuilder(self._client(), self.settings, self.manifest, env).build(progress)
            return self._switch_to(env, release, tag, progress, started, fresh=True)

    def releases(self, env: str) -> list[Release]:
        self._check_env(env)
        return list_releases(self._client(), self.settings, self.app, env, self._current_release(env))

    def rollback(self, env: str, to: str | None = None, progress: Progress | None = None) -> DeployResult:
        self._check_env(env)
        progress = progress or NullProgress()
        started = time.monotonic()
        self._network(env)
        with self._lock(env, "rollback"):
            current = self._current_release(env)
            known = list_releases(self._client(), self.settings, self.app, env, current)
            if to is None:
                older = [r for r in known if current is None or r.id < current]
                if not older:
                    raise MinicloudError(f"no release of {self.app}/{env} older than {current} to roll back to",
                                         hint=f"minicloud releases {env}")
                target = older[0]
            else:
                matches = [r for r in known if r.id == to or r.id.startswith(to)]
                if len(matches) != 1:
                    ids = ", ".join(r.id for r in known) or "none"
                    what = "no" if not matches else "more than one"
                    raise MinicloudError(f"{what} release of {self.app}/{env} matches {to!r} (known: {ids})")
                target = matches[0]
            if target.id == current:
                raise MinicloudError(f"{target.id} is already the running release of {self.app}/{env}")
            progress.report(f"rolling back to {target.id} (no rebuild)")
            return self._switch_to(env, target.id, target.image, progress, started)

    def _current_release(self, env: str) -> str | None:
        upstream = self._edge().upstream_of(self.settings.app_host(self.app, env))
        running = self._containers(env, role="app", all=False)
        for c in running:
            if c.name == upstream:
                return c.labels.get(LABEL_RELEASE)
        return running[0].labels.get(LABEL_RELEASE) if len(running) == 1 else None

    def _switch_to(self, env: str, release: str, tag: str, progress: Progress, started: float,
                   fresh: bool = False) -> DeployResult:
        """Run `tag` beside the current release, wait for health, switch the route, drain, stop the old."""
        client, s, m = self._client(), self.settings, self.manifest
        network = self._network(env)
        edge = self._edge()
        edge.ensure(progress)
        edge.attach(network, [s.app_host(self.app, env), s.sandbox_host(env)])
        host = s.app_host(self.app, env)
        previous = self._current_release(env)
        name = s.container(self.app, env, "app", release)
        with contextlib.suppress(NotFound):
            client.containers.get(name).remove(force=True)  # a stale one from an interrupted run
        mounts = {self.ca_path(): {"bind": variables.CA_FILE, "mode": "ro"}}
        keys = self._sandbox_keys(env, create=False) if m.env(env).sandbox else None
        if keys:
            mounts[str(keys.app_private)] = {"bind": f"{variables.ALIPAY_KEYS_DIR}/app_private.pem", "mode": "ro"}
            mounts[str(keys.platform_public)] = {"bind": f"{variables.ALIPAY_KEYS_DIR}/platform_public.pem",
                                                 "mode": "ro"}
        environment = variables.as_environment(self._variables(env, release))
        progress.report(f"starting release {release}", 70)
        container = client.containers.run(
            tag, name=name, detach=True, init=True, network=network.name, environment=environment, volumes=mounts,
            labels=s.labels(app=self.app, env=env, role="app", release=release), log_config=LOG_CONFIG)
        switched = False
        try:
            progress.report(f"waiting for {m.health} to answer 2xx", 80)
            wait_healthy(container, lambda: edge.probe(name, m.port, m.health), m, progress)
            progress.check_cancelled()
            progress.report("switching the gateway", 90)
            edge.set_route(host, name, m.port)
            switched = True
        except BaseException as err:
            # the old release keeps serving; the new one leaves nothing behind
            with contextlib.suppress(Exception):
                container.remove(force=True)
            if fresh:  # a release that never served is not one to roll back to
                with contextlib.suppress(Exception):
                    client.images.remove(tag, force=True)
            if isinstance(err, KeyboardInterrupt):
                raise Cancelled(f"deploy of {release} interrupted; {previous or 'nothing'} still serves") from None
            raise
        finally:
            if not switched:
                progress.report(f"release {release} removed; {previous or 'no release'} still serves")
        container.update(restart_policy={"Name": "unless-stopped"})
        seconds = time.monotonic() - started
        old = [c for c in self._containers(env, role="app") if c.name != name]
        if old:
            progress.report(f"draining the old release for {m.drain_seconds}s", 95)
            time.sleep(m.drain_seconds)
            for c in old:
                with contextlib.suppress(NotFound, APIError):
                    c.stop(timeout=10)
                    c.remove()
        prune_releases(client, s, self.app, env, m.keep_releases, protect={release, previous or ""})
        progress.report(f"{release} is live at {self.url(env)}", 100)
        return DeployResult(env, self.app, release, previous, self.url(env), round(seconds, 3))

    # ----------------------------------------------------------------- start / stop / restart
    def stop(self, env: str, progress: Progress | None = None) -> EnvStatus:
        self._check_env(env)
        progress = progress or NullProgress()
        self._network(env)
        with self._lock(env, "stop"):
            edge = self._edge()
            edge.set_route(self.settings.app_host(self.app, env), None,
                           stopped_message=f"{self.app}/{env} is stopped (minicloud start {env})")
            for role in ("app", "sandbox", "db"):
                for c in self._containers(env, role=role, all=False):
                    progress.report(f"stopping {c.name}")
                    c.stop(timeout=15)
        return self.status(env, stats=False)

    def start(self, env: str, progress: Progress | None = None) -> EnvStatus:
        return self._bring_up(env, progress, restart=False)

    def restart(self, env: str, progress: Progress | None = None) -> EnvStatus:
        return self._bring_up(env, progress, restart=True)

    def _bring_up(self, env: str, progress: Progress | None, restart: bool) -> EnvStatus:
        self._check_env(env)
        self._network(env)
        with self._lock(env, "restart" if restart else "start"):
            self._start_all(env, progress or NullProgress(), restart=restart)
        return self.status(env, stats=False)

    def _start_all(self, env: str, progress: Progress, restart: bool) -> None:
        s, m = self.settings, self.manifest
        edge = self._edge()
        edge.ensure(progress)
        creds = credentials(self.workspace, env, self.app, create=False)
        for role in ("db", "sandbox", "app"):
            containers = self._containers(env, role=role)
            if role == "app":
                # the release the route names, else the newest container
                upstream = edge.upstream_of(s.app_host(self.app, env))
                containers = [c for c in containers if c.name == upstream] or sorted(
                    containers, key=lambda c: c.labels.get(LABEL_RELEASE, ""))[-1:]
                if not containers:
                    raise NotBuilt(f"{self.app}/{env} has no release to start", hint=f"minicloud deploy {env}")
            for c in containers:
                progress.report(f"{'restarting' if restart else 'starting'} {c.name}")
                c.restart(timeout=15) if restart else c.start()
                if role == "db" and creds:
                    self._db(env).wait_ready(creds)
                if role == "sandbox":
                    edge.set_route(s.sandbox_host(env), c.name, 8080)
                if role == "app":
                    c.reload()
                    wait_healthy(c, lambda c=c: edge.probe(c.name, m.port, m.health), m, progress)
                    edge.set_route(s.app_host(self.app, env), c.name, m.port)
                    edge.wait_route(s.app_host(self.app, env), m.health)

    # ----------------------------------------------------------------- observing
    def status(self, env: str, stats: bool = True) -> EnvStatus:
        self._check_env(env)
        s = self.settings
        url = self.url(env)
        try:
            self._network(env)
        except NotBuilt:
            return EnvStatus(env, self.app, "not-built", None, url)
        containers = self._containers(env)
        edge = self._edge()
        edge_container = edge.container()
        current = self._current_release(env)
        out = []
        for c in containers:
            role = c.labels.get(LABEL_ROLE, "?")
            health = None
            if c.status == "running" and role == "app":
                code = edge.probe(c.name, self.manifest.port, self.manifest.health)
                health = "healthy" if code and 200 <= code < 300 else "unhealthy"
            out.append(_container_status(c, role, health))
        if edge_container is not None:
            out.append(_container_status(edge_container, "gateway", None))
        if stats:
            _fill_stats([c for c in containers if c.status == "running"] +
                        ([edge_container] if edge_container is not None and edge_container.status == "running" else []),
                        out)
        order = {r: i for i, r in enumerate(ROLES)}
        out.sort(key=lambda c: (order.get(c.role, 9), c.name))
        app_running = [c for c in out if c.role == "app" and c.state == "running"]
        others_down = [c for c in out if c.role in ("db", "sandbox") and c.state != "running"]
        if not any(c.state == "running" for c in out if c.role != "gateway"):
            state = "stopped"
        elif app_running and not others_down and all(c.health == "healthy" for c in app_running):
            state = "running"
        else:
            state = "degraded"
        return EnvStatus(env, self.app, state, current, url, out,
                         list_releases(self._client(), s, self.app, env, current))

    def logs(self, env: str, *, follow: bool = False, since: str | None = None, tail: int | None = None,
             grep: str | None = None, roles: list[str] | None = None,
             stop: threading.Event | None = None) -> Iterator[LogLine]:
        for batch in self.log_batches(env, follow=follow, since=since, tail=tail, grep=grep, roles=roles, stop=stop):
            yield from batch

    def log_batches(self, env: str, *, follow: bool = False, since: str | None = None, tail: int | None = None,
                    grep: str | None = None, roles: list[str] | None = None,
                    stop: threading.Event | None = None) -> Iterator[list[LogLine]]:
        """The env's logs as they arrive, in batches (see `logs.read_batches`)."""
        self._check_env(env)
        roles = roles or list(ROLES)
        unknown = set(roles) - set(ROLES)
        if unknown:
            raise MinicloudError(f"--role {', '.join(sorted(unknown))}: expected one of {', '.join(ROLES)}")
        self._network(env)
        hostnames = (self.settings.app_host(self.app, env), self.settings.sandbox_host(env))

        def sources() -> list:
            found = [logs.make_source(c) for c in self._containers(env)
                     if c.labels.get(LABEL_ROLE) in roles]
            if "gateway" in roles and (edge := self._edge().container()) is not None:
                # the gateway is shared: keep the lines about this env's hosts
                found.append(logs._Source(edge, "gateway", lambda text: any(h in text for h in hostnames)))
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

    def db_query(self, env: str, sql: str) -> QueryResult:
        self._check_env(env)
        return self._db(env).query(self.db_credentials(env), sql)

    def db_schema(self, env: str) -> list[TableInfo]:
        """Tables, columns and row counts of the env's database (one query, for the server's index)."""
        self._check_env(env)
        return self._db(env).schema(self.db_credentials(env))

    def db_shell_command(self, env: str) -> tuple[list[str], dict[str, str]]:
        """argv and environment for an interactive `mariadb` shell in the env's database container."""
        creds = self.db_credentials(env)
        name = self.settings.container(self.app, env, "db")
        return (["docker", "exec", "-it", "-e", "MYSQL_PWD", name, "mariadb", "-u", creds.user, creds.database],
                {**os.environ, "MYSQL_PWD": creds.password})


def _sandbox_available() -> bool:
    return (Path(__file__).parent / "sandbox" / "server.py").is_file()


def _container_status(c, role: str, health: str | None):
    from .model import ContainerStatus

    return ContainerStatus(role=role, name=c.name, state=c.status, health=health,
                           release=c.labels.get(LABEL_RELEASE))


def _fill_stats(containers: list, out: list) -> None:
    """CPU and memory, all containers at once (the engine takes ~1 s per sample)."""
    by_name = {c.name: c for c in out}

    def sample(container):
        try:
            return container.name, container.stats(stream=False)
        except (NotFound, APIError):
            return container.name, None

    if not containers:
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(containers))) as pool:
        for name, st in pool.map(sample, containers):
            if not st or name not in by_name:
                continue
            cpu, pre = st.get("cpu_stats", {}), st.get("precpu_stats", {})
            delta = cpu.get("cpu_usage", {}).get("total_usage", 0) - pre.get("cpu_usage", {}).get("total_usage", 0)
            system = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
            cpus = cpu.get("online_cpus") or len(cpu.get("cpu_usage", {}).get("percpu_usage") or [1])
            by_name[name].cpu_percent = round(delta / system * cpus * 100, 2) if system > 0 else 0.0
            mem = st.get("memory_stats", {})
            usage = mem.get("usage")
            if usage is not None:
                cache = mem.get("stats", {}).get("cache", 0) or mem.get("stats", {}).get("inactive_file", 0)
                by_name[name].mem_bytes = int(usage - cache)


__all__ = ["Cloud", "NullProgress", "workspace_state_dir"]
