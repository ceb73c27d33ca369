"""Cloud functions of an env, host side: code versions, the scheduler container, invoke, list.

Code lives in `<home>/<instance>/functions/<app>-<env>/code/NAME/VERSION/` (VERSION: a hash of the
function's files), with its dependencies installed beside it at deploy; `config.json` there says which
version of each function is live. The env's scheduler (services/scheduler.py, a container with the
engine's socket) reads it and runs instances with that folder mounted read-only: a code deploy is a
new folder and a new config.json — no image is built.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import ssl
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
from docker.errors import APIError, NotFound

from . import images, releases
from .config import LOG_CONFIG, Settings
from .errors import BadInput, MinicloudError, NotBuilt
from .gateway import FUNCTIONS_PATH, Edge
from .manifest import FunctionSpec, Manifest
from .polling import poll_until
from .progress import Progress

PORT = 8080
ROLE = "functions"  # the scheduler; its instances are role "function"
ENTRY = {"nodejs": "index.js", "python": "main.py"}
AGENTS_DIR = Path(__file__).resolve().parent / "services" / "agents"
# the data API's SDKs, mounted into every instance: a function's `context.cloud` (codegen/cloud_sdk)
SDK_DIR = Path(__file__).resolve().parent.parent / "codegen" / "cloud_sdk"
IGNORED = {"node_modules", "__pycache__", ".git", ".packages"}
KEEP_VERSIONS = 10  # per function, besides those a release still names


@dataclass
class Invocation:
    status: int
    result: Any
    duration_ms: float
    cold: bool
    instance: str
    request_id: str

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "result": self.result, "duration_ms": self.duration_ms, "cold": self.cold,
                "instance": self.instance, "request_id": self.request_id}


class Functions:
    port = PORT

    def __init__(self, client: docker.DockerClient, settings: Settings, manifest: Manifest, env: str) -> None:
        self.client, self.settings, self.manifest, self.env = client, settings, manifest, env
        self.app = manifest.name
        self.folder = settings.instance_dir() / "functions" / f"{self.app}-{env}"
        self.container_name = settings.container(self.app, env, ROLE)

    @property
    def specs(self) -> dict[str, FunctionSpec]:
        return self.manifest.functions.functions

    # ------------------------------------------------------------------ code versions
    def source(self, name: str) -> Path:
        return self.manifest.workspace / "functions" / name

    def check_sources(self, names: list[str] | None = None) -> None:
        for name in names or list(self.specs):
            if name not in self.specs:
                known = ", ".join(sorted(self.specs)) or "none"
                raise BadInput(f"no function {name!r} in {self.manifest.path} (known: {known})",
                               hint=f"add a table [functions.{name}]")
            entry = self.source(name) / ENTRY[self.specs[name].runtime]
            if not entry.is_file():
                raise BadInput(f"{self.manifest.path}: functions.{name}: no code at {entry}",
                               hint=f"create {entry.relative_to(self.manifest.workspace)}")

    def files(self, name: str) -> list[tuple[str, Path]]:
        root = self.source(name)
        out = []
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in IGNORED)
            for file in sorted(names):
                path = Path(folder) / file
                rel = str(path.relative_to(root))
                if path.is_file() and not releases.holds_private_key(path):
                    out.append((rel, path))
        return out

    def version_of(self, name: str) -> str:
        h = hashlib.sha256(self.specs[name].runtime.encode())
        for rel, path in self.files(name):
            h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
        return h.hexdigest()[:12]

    def package(self, names: list[str], progress: Progress) -> dict[str, str]:
        """Each function's code as a version folder (dependencies installed); returns name -> version."""
        self.check_sources(names)
        versions = {}
        for name in names:
            version = self.version_of(name)
            target = self.folder / "code" / name / version
            if not target.is_dir():
                progress.report(f"packaging function {name} ({version})")
                staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=self._ensure_folder() / "code"))
                for rel, path in self.files(name):
                    (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, staging / rel)
                self._install_dependencies(name, staging, progress)
                target.parent.mkdir(parents=True, exist_ok=True)
                staging.rename(target)
            versions[name] = version
        return versions

    def _ensure_folder(self) -> Path:
        (self.folder / "code").mkdir(parents=True, exist_ok=True)
        return self.folder

    def _install_dependencies(self, name: str, folder: Path, progress: Progress) -> None:
        runtime = self.specs[name].runtime
        if runtime == "nodejs" and (folder / "package.json").is_file():
            install = ("npm ci --omit=dev --no-audit --no-fund" if (folder / "package-lock.json").is_file()
                       else "npm install --omit=dev --no-audit --no-fund")
        elif runtime == "python" and (folder / "requirements.txt").is_file():
            install = "pip install --no-cache-dir --target .packages -r requirements.txt"
        else:
            return
        progress.report(f"installing the dependencies of {name}")
        image = images.runtime_image(self.client, runtime, None, progress)
        bundle = releases.build_ca_bundle(self.manifest)
        (folder / ".minicloud-ca.pem").write_bytes(bundle)
        script = ("cat /etc/ssl/certs/ca-certificates.crt /fn/.minicloud-ca.pem > /tmp/ca.pem 2>/dev/null; "
                  "export NODE_EXTRA_CA_CERTS=/tmp/ca.pem npm_config_cafile=/tmp/ca.pem PIP_CERT=/tmp/ca.pem "
                  f"REQUESTS_CA_BUNDLE=/tmp/ca.pem SSL_CERT_FILE=/tmp/ca.pem && {install}")
        try:
            output = self.client.containers.run(
                image, ["sh", "-c", script], working_dir="/fn", remove=True, stdout=True, stderr=True,
                volumes={str(folder): {"bind": "/fn", "mode": "rw"}}, labels=self.settings.labels(
                    app=self.app, env=self.env, role="function-build"), log_config=LOG_CONFIG)
        except docker.errors.ContainerError as err:
            tail = (err.stderr or b"").decode(errors="replace").strip().splitlines()[-15:]
            raise MinicloudError(f"installing the dependencies of function {name} failed ({install})",
                                 details="\n".join(tail)) from None
        finally:
            (folder / ".minicloud-ca.pem").unlink(missing_ok=True)
        del output

    # ------------------------------------------------------------------ the live configuration
    def live_versions(self) -> dict[str, str]:
        path = self.folder / "config.json"
        if not path.is_file():
            return {}
        return {n: f["version"] for n, f in json.loads(path.read_text()).get("functions", {}).items()}

    def runtimes(self) -> set[str]:
        return {spec.runtime for spec in self.specs.values()}

    def config(self, versions: dict[str, str], environment: dict[str, str], binds: list[str],
               **where: Any) -> dict[str, Any]:
        """What the scheduler reads (config.json). `where`: the folders (functions_dir, agents_dir, sdk_dir)
        and runtime images as the scheduler's engine names them, when they are not this machine's."""
        s = self.settings
        return {
            "instance": s.instance, "prefix": s.prefix, "app": self.app, "env": self.env,
            "network": s.network(self.app, self.env), "pool": self.manifest.functions.pool,
            "images": {r: images.runtime_image(self.client, r, None) for r in self.runtimes()},
            "functions_dir": str(self.folder.resolve()), "agents_dir": str(AGENTS_DIR), "sdk_dir": str(SDK_DIR),
            "environment": environment, "binds": binds,
            "functions": {name: {"runtime": spec.runtime, "memory": spec.memory, "timeout": spec.timeout,
                                 "concurrency": spec.concurrency, "reserved": spec.reserved,
                                 "max_instances": spec.max_instances, "keep_alive": spec.keep_alive,
                                 "version": versions[name]}
                          for name, spec in self.specs.items() if name in versions},
            **where,
        }

    def write_config(self, versions: dict[str, str], environment: dict[str, str], binds: list[str]) -> int:
        """Make these versions live; returns how many functions the config holds."""
        config = self.config(versions, environment, binds)
        self._ensure_folder()
        tmp = self.folder / f".config-{uuid.uuid4().hex[:6]}.json"
        tmp.write_text(json.dumps(config, indent=2))
        tmp.replace(self.folder / "config.json")
        return len(config["functions"])

    # ------------------------------------------------------------------ the scheduler
    def container(self):
        try:
            return self.client.containers.get(self.container_name)
        except NotFound:
            return None

    def ensure_scheduler(self, image: str, edge: Edge, progress: Progress) -> None:
        from . import keeper

        socket_path = keeper.engine_socket()
        if socket_path is None:
            raise MinicloudError("cloud functions need a local Docker engine (its socket is mounted into the "
                                 "scheduler)", hint="point DOCKER_HOST (or the docker context) at this machine's engine, "
                                                    "or remove [functions] from the manifest")
        current = self.container()
        if current is not None and current.image.tags[:1] != [image]:
            current.remove(force=True)
            current = None
        if current is None:
            progress.report("starting the functions scheduler")
            current = self.client.containers.run(
                image, name=self.container_name, detach=True, network=self.settings.network(self.app, self.env),
                labels=self.settings.labels(app=self.app, env=self.env, role=ROLE),
                command=["python3", "-m", "deploy_bridge.services.scheduler", "--config", "/functions/config.json",
                         "--port", str(PORT)],
                volumes={socket_path: {"bind": "/var/run/docker.sock", "mode": "rw"},
                         str(self.folder.resolve()): {"bind": "/functions", "mode": "ro"}},
                restart_policy={"Name": "unless-stopped"}, log_config=LOG_CONFIG)
        elif current.status != "running":
            current.start()
        if not poll_until(lambda: self.status(quiet=True) is not None, 30, 0.1):
            raise MinicloudError("the functions scheduler did not start",
                                 details=releases.tail_logs(current))
        edge.set_route(self.settings.app_host(self.app, self.env) + FUNCTIONS_PATH, self.container_name, PORT)

    def status(self, quiet: bool = False) -> dict[str, Any] | None:
        """The scheduler's view (functions, instances, queues, pool), asked from inside the gateway
        (the scheduler publishes no port; its admin paths are not routed from outside)."""
        container = self.container()
        if container is None or container.status != "running":
            if quiet:
                return None
            raise NotBuilt(f"{self.app}/{self.env} has no running functions scheduler",
                           hint=f"minicloud env build {self.env}")
        code, body = Edge(self.client, self.settings).fetch(f"http://{self.container_name}:{PORT}/_fn/status")
        if code != 200:
            if quiet:
                return None
            raise MinicloudError("the functions scheduler does not answer",
                                 details=body.decode(errors="replace")[-500:], hint=f"minicloud logs {self.env} --role functions")
        return json.loads(body)

    def wait_live(self, versions: dict[str, str], timeout: float = 30) -> None:
        """Until the scheduler runs these versions (new invocations get them)."""
        def live() -> bool:
            status = self.status(quiet=True) or {}
            running = {n: f.get("version") for n, f in status.get("functions", {}).items()}
            return all(running.get(n) == v for n, v in versions.items())

        if not poll_until(live, timeout, 0.05):
            raise MinicloudError(f"the functions scheduler did not take the new code within {timeout:.0f}s")

    def prune(self, keep: set[str]) -> None:
        """Version folders no config or release names, past the newest KEEP_VERSIONS of each function."""
        for fn_dir in (self.folder / "code").glob("*/"):
            if fn_dir.name.startswith("."):
                continue
            versions = sorted(fn_dir.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
            for old in versions[KEEP_VERSIONS:]:
                if f"{fn_dir.name}={old.name}" not in keep:
                    shutil.rmtree(old, ignore_errors=True)

    def remove(self, remove_code: bool) -> None:
        container = self.container()
        if container is not None:
            container.remove(force=True)
        for c in self.client.containers.list(all=True, filters={"label": self.settings.label_filter(
                app=self.app, env=self.env, role="function")}):
            with contextlib.suppress(NotFound, APIError):
                c.remove(force=True)
        if remove_code:
            shutil.rmtree(self.folder, ignore_errors=True)

    # ------------------------------------------------------------------ invoking
    def invoke(self, name: str, event: Any, ca_path: str, timeout: float | None = None,
               address: str | None = None) -> Invocation:
        """POST `event` to the function through the env's gateway (at `address`: a swarm env's manager)."""
        from .swarm import connect_to

        url = self.settings.url(self.settings.app_host(self.app, self.env)) + f"{FUNCTIONS_PATH}/{name}"
        spec = self.specs.get(name)
        started = time.perf_counter()
        try:
            with httpx.Client(verify=ssl.create_default_context(cafile=ca_path),
                              timeout=timeout or (spec.timeout + 30 if spec else 60)) as client:
                target, options = connect_to(url, address)
                response = client.post(target, json=event, **options)
        except httpx.HTTPError as err:
            raise MinicloudError(f"{url} does not answer: {err}", hint=f"minicloud status {self.env}") from None
        try:
            body = response.json()
        except ValueError:
            body = response.text
        headers = response.headers
        duration = float(headers.get("x-minicloud-duration-ms") or (time.perf_counter() - started) * 1000)
        return Invocation(response.status_code, body, duration, headers.get("x-minicloud-cold") == "true",
                          headers.get("x-minicloud-instance", ""), headers.get("x-minicloud-request-id", ""))


def versions_label(versions: dict[str, str]) -> str:
    """What a release image records of the functions it was deployed with (`minicloud.fn.versions`)."""
    return json.dumps(versions, sort_keys=True, separators=(",", ":"))
