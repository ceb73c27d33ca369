"""Cloud functions of a swarm env: the scheduler of one machine (services/scheduler.py) as a service of one
task pinned to the manager node, starting its instances on that node's engine, on the env's network.

What the scheduler reads from this machine's disk on one machine is on volumes of that node here, filled
from this machine through a short-lived helper container (the engine's archive API), so the manager may
be another machine:

    APP-ENV-functions-data  config.json and code/NAME/VERSION: each function's code, packaged here with its
                            dependencies as on one machine; a version is shipped once, config.json last and
                            by a rename (the scheduler never reads half of it)
    APP-ENV-fnagents-data   the runtimes' agents
    APP-ENV-fnsdk-data      the data API's SDKs (a function's `context.cloud`)
    APP-ENV-fnfiles-data    what the app gets at /etc/minicloud: the local CA, the sandbox's keys

The runtime images go through the registry and are pulled by the manager; the env's gateway routes
HOST/fn/ to the scheduler's task. Like the database, functions are single-node: they run where their
volumes are.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, NotFound
from docker.types import Mount

from . import images, logs, swarm
from .config import Settings
from .errors import MinicloudError
from .functions import AGENTS_DIR, PORT, ROLE, SDK_DIR, Functions
from .manifest import Manifest
from .progress import NullProgress, Progress
from .swarm_registry import ImageRoute
from .variables import CA_FILE

FILES_DIR = str(Path(CA_FILE).parent)  # /etc/minicloud: the CA and the sandbox's keys, as the app has them
SKIPPED = {"__pycache__", ".git"}  # never shipped (a version's node_modules and .packages are its dependencies)
STATUS = ["python3", "-c", "import urllib.request, sys; "
          f"sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:{PORT}/_fn/status', timeout=5).read().decode())"]


class SwarmFunctions:
    def __init__(self, manager: docker.DockerClient, builder: docker.DockerClient, settings: Settings,
                 manifest: Manifest, env: str, engine_socket: str) -> None:
        self.manager, self.builder, self.settings, self.manifest = manager, builder, settings, manifest
        self.app, self.env, self.engine_socket = manifest.name, env, engine_socket
        self.name = settings.container(self.app, env, ROLE)
        self.local = Functions(builder, settings, manifest, env)  # packaging, on the build engine

    def volume(self, part: str) -> str:
        return self.settings.volume(self.app, self.env, part)

    @property
    def volumes(self) -> dict[str, str]:
        """Mount point in the helper -> volume: what the scheduler and its instances read."""
        return {"/v/functions": self.volume("functions"), "/v/agents": self.volume("fnagents"),
                "/v/sdk": self.volume("fnsdk"), "/v/files": self.volume("fnfiles")}

    def labels(self, role: str = ROLE) -> dict[str, str]:
        return self.settings.labels(app=self.app, env=self.env, role=role)

    def service(self):
        return swarm.find_service(self.manager, self.name)

    # ------------------------------------------------------------------ making versions live
    def ensure(self, network, versions: dict[str, str], environment: dict[str, str],
               files: dict[str, tuple[bytes, bool]], route: ImageRoute, progress: Progress | None = None) -> None:
        """Ship what these versions need to the manager's volumes, make them live, and run the scheduler;
        returns once new invocations get them. `files`: the app's files (path in the container -> content)."""
        progress = progress or NullProgress()
        image = route.push(images.ensure_recipe(self.builder, "sandbox", progress), progress)
        runtimes = {r: self._on_manager(route.push(images.runtime_image(self.builder, r, None, progress), progress),
                                        progress) for r in self.local.runtimes()}
        config = self.local.config(
            versions, environment, [f"{self.volume('fnfiles')}:{FILES_DIR}:ro"], images=runtimes,
            functions_dir=self.volume("functions"), agents_dir=self.volume("fnagents"), sdk_dir=self.volume("fnsdk"))
        with self._helper(self._on_manager(image, progress)) as helper:
            shipped = self._shipped(helper)
            archive = Archive()
            archive.folder(AGENTS_DIR, "agents")
            archive.folder(SDK_DIR, "sdk")
            for path, (data, _) in files.items():
                archive.file(f"files/{Path(path).relative_to(FILES_DIR)}", data)
            for fn, version in sorted(versions.items()):
                if f"{fn}/{version}" not in shipped and not (self.local.folder / "code" / fn / version).is_dir():
                    raise MinicloudError(f"the code of function {fn} {version} is kept neither here nor on the manager",
                                         hint=f"minicloud fn deploy {self.env} {fn} (from the code you want live)")
                if f"{fn}/{version}" not in shipped:
                    progress.report(f"shipping function {fn} ({version}) to the manager")
                    archive.folder(self.local.folder / "code" / fn / version, f"functions/code/{fn}/{version}")
            archive.file("functions/.config.json.new", json.dumps(config, indent=2).encode())
            if not helper.put_archive("/v", archive.bytes()):
                raise MinicloudError(f"could not write the functions of {self.app}/{self.env} to the manager")
            code, out = helper.exec_run(["mv", "/v/functions/.config.json.new", "/v/functions/config.json"])
            if code != 0:
                raise MinicloudError(f"could not make the functions' config live: {out.decode(errors='replace')}")
        self._ensure_service(image, network, progress)
        self.wait_live(versions)
        progress.report(f"functions live: {', '.join(f'{n} {v}' for n, v in sorted(versions.items()))}")

    def _on_manager(self, image: str, progress: Progress) -> str:
        """`image` (as the nodes name it in the registry) present on the manager's engine, which starts the
        instances and the helper itself, without a service that would pull it."""
        try:
            self.manager.images.get(image)
        except NotFound:
            progress.report(f"the manager pulls {image}")
            self.manager.images.pull(image)
        return image

    @contextlib.contextmanager
    def _helper(self, image: str) -> Iterator:
        """A container on the manager with the volumes mounted writable, removed after."""
        mounts = [Mount(target, volume, type="volume", labels=self.labels()) for target, volume in self.volumes.items()]
        helper = self.manager.containers.run(image, ["sleep", "600"], name=f"{self.name}-ship-{uuid.uuid4().hex[:6]}",
                                             detach=True, mounts=mounts, labels=self.labels("function-build"))
        try:
            yield helper
        finally:
            with contextlib.suppress(NotFound, APIError):
                helper.remove(force=True)

    @staticmethod
    def _shipped(helper) -> set[str]:
        """NAME/VERSION of the code already on the manager."""
        code, out = helper.exec_run(["sh", "-c", "cd /v/functions/code 2>/dev/null && ls -d */* || true"])
        return set(out.decode(errors="replace").split()) if code == 0 else set()

    def _ensure_service(self, image: str, network, progress: Progress) -> None:
        service = self.service()
        spec = {
            "image": image, "name": self.name, "labels": self.labels(), "container_labels": self.labels(),
            "command": ["python3", "-m", "deploy_bridge.services.scheduler", "--config", "/functions/config.json",
                        "--port", str(PORT)],
            "networks": [network.id],
            "mounts": [Mount("/functions", self.volume("functions"), type="volume", read_only=True),
                       # it starts the instances on this node's engine, as the local scheduler does
                       Mount("/var/run/docker.sock", self.engine_socket, type="bind")],
            **swarm.one_pinned_task(service, self.manager),
        }
        swarm.create_or_update(self.manager, service, spec, progress,
                               f"starting the functions scheduler as service {self.name}",
                               "updating the functions scheduler (its image changed)")

    # ------------------------------------------------------------------ reading
    def status(self, quiet: bool = False) -> dict[str, Any] | None:
        """The scheduler's view (functions, instances, queues, pool), asked inside its task."""
        try:
            code, out = swarm.task_container(self.manager, self.name,
                                             f"the functions scheduler of {self.app}/{self.env}").exec_run(STATUS)
        except (MinicloudError, APIError):
            if quiet:
                return None
            raise
        if code != 0:
            if quiet:
                return None
            raise MinicloudError("the functions scheduler does not answer",
                                 details=out.decode(errors="replace")[-500:],
                                 hint=f"minicloud logs {self.env} --role functions")
        return json.loads(out)

    def live_versions(self) -> dict[str, str]:
        status = self.status(quiet=True) or {}
        return {n: f["version"] for n, f in status.get("functions", {}).items() if f.get("version")}

    def wait_live(self, versions: dict[str, str], timeout: float = 60) -> None:
        """Until the scheduler runs these versions (new invocations get them)."""
        deadline = time.monotonic() + timeout
        while True:
            running = self.live_versions()
            if all(running.get(n) == v for n, v in versions.items()):
                return
            if time.monotonic() > deadline:
                raise MinicloudError(f"the functions scheduler did not take the new code within {timeout:.0f} s "
                                     f"(it runs {running or 'nothing'})", hint=f"minicloud logs {self.env} --role functions")
            time.sleep(0.2)

    def log_sources(self, roles: list[str]) -> list:
        """The scheduler's service log, and each instance's (plain containers on the manager)."""
        found = []
        if ROLE in roles and (service := self.service()) is not None:
            found.append(logs.service_source(service, ROLE, lambda _: None))
        if "function" in roles:
            found += [logs.make_source(c) for c in self._instances()]
        return found

    def _instances(self) -> list:
        return self.manager.containers.list(all=True, filters={"label": self.settings.label_filter(
            app=self.app, env=self.env, role="function")}, ignore_removed=True)

    # ------------------------------------------------------------------ going
    def remove(self) -> list[str]:
        """The scheduler service and the instances it started; returns the volumes to remove once they went."""
        service = self.service()
        if service is not None:
            service.remove()
        for instance in self._instances():
            with contextlib.suppress(NotFound, APIError):
                instance.remove(force=True)
        return list(self.volumes.values())


class Archive:
    """A tar built in memory: folders and files under names of its own."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._buffer, mode="w")  # noqa: SIM115 - closed by bytes()

    def folder(self, source: Path, name: str) -> None:
        for path in sorted(source.rglob("*")):
            if path.is_file() and not set(path.relative_to(source).parts) & SKIPPED:
                self._tar.add(path, f"{name}/{path.relative_to(source)}", recursive=False)

    def file(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
        self._tar.addfile(info, io.BytesIO(data))

    def bytes(self) -> bytes:
        self._tar.close()
        return self._buffer.getvalue()
