"""The serverless data API of an env, host side (`[data]` in the manifest).

Two service roles (roles.py registers them):
- `datadb`: PostgreSQL 15 (the `postgres` recipe) on the named volume `…-datadb-data`, which only
  `env destroy --with-data` removes; documents live there as JSONB, one table per collection;
- `data`: the data API server (`services/data_api.py`, in the sandbox image) on a files volume, reached
  through the gateway at https://APP.ENV.localhost:PORT/cloud/ (route key `HOST/cloud`).

Secrets (credentials.data_secrets), made once per env and kept in `.minicloud/<env>/data.json` (0600):
the database password and the server credential that functions and the app get injected
(`MINICLOUD_DATA_KEY`/`_SECRET`). The data
API reads its settings (the collections' rules, the sandbox it trades auth codes with) from
`<home>/<instance>/data/<app>-<env>/config.json`, mounted read-only; the app's private key is mounted,
never copied.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from urllib.parse import quote

from docker.errors import NotFound

from .config import LOG_CONFIG
from .credentials import data_secrets
from .errors import MinicloudError
from .gateway import DATA_PATH
from .polling import poll_until
from .progress import Progress
from .releases import tail_logs

STORE_ROLE, API_ROLE = "datadb", "data"
PG_PORT, API_PORT = 5432, 8080
HEALTH = "/_data/health"
DATABASE = "minicloud"
API_PREFIX = "/cloud/v1"


def api_url(parts) -> str:
    """What functions and the app call (the gateway's HTTPS host, as the front ends do)."""
    return parts.settings.url(parts.settings.app_host(parts.app, parts.env)) + API_PREFIX


def _volume(parts, role: str) -> str:
    name = parts.settings.volume(parts.app, parts.env, role)
    try:
        parts.client.volumes.get(name)
    except NotFound:
        parts.client.volumes.create(name, labels=parts.settings.labels(app=parts.app, env=parts.env, role=role))
    return name


def _replace_if_changed(parts, name: str, image: str, fingerprint: str):
    """The running container `name` when it runs `image` with the same settings; else None (removed)."""
    with contextlib.suppress(NotFound):
        old = parts.client.containers.get(name)
        if old.image.tags[:1] == [image] and old.labels.get("minicloud.config") == fingerprint \
                and old.status == "running":
            return old
        old.remove(force=True)
    return None


def _fails_if_exited(container, message: str):
    """A poll_until `on_wait`: a container that exited while we wait for it fails at once, with its logs."""
    def check() -> None:
        container.reload()
        if container.status == "exited":
            raise MinicloudError(message, details=tail_logs(container))

    return check


def api_config(settings, manifest, workspace: Path, app: str, env: str, sandbox_keys) -> dict:
    """The data API's settings (services/data_api.py reads them): its credential, the collections' rules, the
    sandbox it trades auth codes with and the functions it calls, by their names on the env's network."""
    from .functions import Functions

    s, spec, made = settings, manifest.data, data_secrets(workspace, env)
    sandbox = None
    if manifest.env(env).sandbox and sandbox_keys is not None:
        from .sandbox import platform

        sandbox = {"url": f"http://{s.container(app, env, 'sandbox')}:{platform.PORT}/gateway.do",
                   "app_id": sandbox_keys.app_id, "private_key_path": "/keys/app_private.pem",
                   "platform_public_key_path": "/keys/platform_public.pem"}
    functions = None
    if manifest.functions.functions:
        functions = f"http://{s.container(app, env, 'functions')}:{Functions.port}/fn"
    return {"app": app, "env": env, "server_key": made.server_key, "server_secret": made.server_secret,
            "session_ttl": spec.session_ttl, "max_file_mb": spec.max_file_mb, "files_dir": "/data/files",
            "collections": spec.collections, "sandbox": sandbox, "scanner_url": spec.scanner,
            "functions_url": functions, "public_url": s.url(s.app_host(app, env))}


def api_dsn(settings, workspace: Path, app: str, env: str) -> str:
    """How the data API reaches its PostgreSQL: by the store's name on the env's network."""
    password = data_secrets(workspace, env).pg_password
    return (f"host={settings.container(app, env, STORE_ROLE)} port={PG_PORT} dbname={DATABASE} user=postgres "
            f"password={password}")


class DataStoreRole:
    """PostgreSQL: the documents, the sessions and the files' records."""

    name, recipe, has_volume = STORE_ROLE, "postgres", True

    def enabled(self, parts) -> bool:
        return parts.manifest.data is not None

    def ensure(self, parts, image: str, progress: Progress) -> None:
        password = data_secrets(parts.workspace, parts.env).pg_password
        name = parts.settings.container(parts.app, parts.env, STORE_ROLE)
        if _replace_if_changed(parts, name, image, "") is None:
            progress.report("starting PostgreSQL (the data API's documents)")
            parts.client.containers.run(
                image, name=name, detach=True, network=parts.network,
                labels=parts.settings.labels(app=parts.app, env=parts.env, role=STORE_ROLE),
                environment={"POSTGRES_PASSWORD": password, "POSTGRES_DB": DATABASE},
                volumes={_volume(parts, STORE_ROLE): {"bind": "/var/lib/postgresql/data", "mode": "rw"}},
                restart_policy={"Name": "unless-stopped"}, log_config=LOG_CONFIG)
        self.started(parts, parts.client.containers.get(name), progress)

    def started(self, parts, container, progress: Progress) -> None:
        exited = _fails_if_exited(container, f"PostgreSQL of {parts.app}/{parts.env} stopped while starting")

        def ready() -> bool:
            code, _ = container.exec_run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(PG_PORT)])
            return code == 0

        if not poll_until(ready, 90, 0.3, on_wait=exited):
            raise MinicloudError(f"PostgreSQL of {parts.app}/{parts.env} did not get ready in 90s",
                                 details=tail_logs(container))


class DataApiRole:
    """The data API server, routed at HOST/cloud."""

    name, recipe, has_volume = API_ROLE, "sandbox", True

    def enabled(self, parts) -> bool:
        return parts.manifest.data is not None

    def config(self, parts) -> dict:
        return api_config(parts.settings, parts.manifest, parts.workspace, parts.app, parts.env, parts.sandbox_keys)

    def config_path(self, parts) -> Path:
        return parts.settings.instance_dir() / "data" / f"{parts.app}-{parts.env}" / "config.json"

    def ensure(self, parts, image: str, progress: Progress) -> None:
        config = json.dumps(self.config(parts), sort_keys=True, indent=1)
        path = self.config_path(parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(config)
        fingerprint = hashlib.sha256(config.encode()).hexdigest()[:16]
        name = parts.settings.container(parts.app, parts.env, API_ROLE)
        if _replace_if_changed(parts, name, image, fingerprint) is None:
            progress.report("starting the data API")
            dsn = api_dsn(parts.settings, parts.workspace, parts.app, parts.env)
            mounts = {str(path): {"bind": "/config/config.json", "mode": "ro"},
                      _volume(parts, API_ROLE): {"bind": "/data", "mode": "rw"}}
            keys = parts.sandbox_keys
            if keys is not None:  # the app's key signs its calls to the sandbox: mounted, never copied
                mounts[str(keys.app_private)] = {"bind": "/keys/app_private.pem", "mode": "ro"}
                mounts[str(keys.platform_public)] = {"bind": "/keys/platform_public.pem", "mode": "ro"}
            parts.client.containers.run(
                image, name=name, detach=True, network=parts.network,
                labels={**parts.settings.labels(app=parts.app, env=parts.env, role=API_ROLE),
                        "minicloud.config": fingerprint},
                command=["python3", "-m", "deploy_bridge.services.data_api"],
                environment={"DATA_DSN": dsn, "DATA_CONFIG": "/config/config.json", "PORT": str(API_PORT)},
                volumes=mounts, restart_policy={"Name": "unless-stopped"}, log_config=LOG_CONFIG)
        self.started(parts, parts.client.containers.get(name), progress)

    def started(self, parts, container, progress: Progress) -> None:
        exited = _fails_if_exited(container, f"the data API of {parts.app}/{parts.env} did not start")
        if not poll_until(lambda: parts.edge.probe(container.name, API_PORT, HEALTH) == 200, 60, 0.2,
                          on_wait=exited):
            raise MinicloudError(f"the data API of {parts.app}/{parts.env} did not start",
                                 details=tail_logs(container))
        parts.edge.set_route(parts.settings.app_host(parts.app, parts.env) + DATA_PATH, container.name, API_PORT)


# ---------------------------------------------------------------- the host's client (CLI, the editor)
class DataClient:
    """The env's data API with the server credential, through the gateway as any client: what
    `minicloud data` and `minicloud files` do, and what the editor reads its collections from."""

    BATCH = 500  # documents per add when importing

    def __init__(self, workspace, env: str) -> None:
        from codegen.cloud_sdk.minicloud_cloud import Cloud as SdkCloud

        from .errors import BadInput, NotBuilt

        workspace._check_env(env)
        if workspace.manifest.data is None:
            raise BadInput(f"{workspace.app} has no data API: add a [data] table to minicloud.toml, then "
                           f"minicloud env build {env}")
        made = data_secrets(workspace.workspace, env, create=False)
        if made is None:
            raise NotBuilt(f"the data API of {workspace.app}/{env} is not built", hint=f"minicloud env build {env}")
        self.app, self.env = workspace.app, env
        self.url = workspace.url(env) + API_PREFIX
        self.sdk_ca = workspace.ca_path()
        # a swarm env's gateway is on its manager: asked there by the env's host name (which resolves here
        # to this machine); None on one machine
        from .swarm import env_gateway_address

        self.address = env_gateway_address(workspace, env)
        self.sdk = SdkCloud(self.url, made.server_key, made.server_secret, ca=self.sdk_ca, address=self.address)

    def call(self, method: str, rel: str, body=None):
        from codegen.cloud_sdk.minicloud_cloud import CloudError

        try:
            return self.sdk.request(method, rel, body)
        except CloudError as err:
            hint = f"minicloud status {self.env}" if err.code in ("network_error", "http_502", "http_503") else None
            raise MinicloudError(f"data API of {self.app}/{self.env}: {err.message} ({err.code})", hint=hint) from None

    # ---- documents
    def collections(self) -> list[dict]:
        return self.call("GET", "db")["collections"]

    def find(self, collection: str, filter: dict, sort: list | None = None, skip: int = 0,
             limit: int = 100, projection: dict | None = None) -> list[dict]:
        body = {"filter": filter, "skip": skip, "limit": limit}
        if sort:
            body["sort"] = sort
        if projection:
            body["projection"] = projection
        return self.call("POST", f"db/{collection}/find", body)["data"]

    def count(self, collection: str, filter: dict) -> int:
        return self.call("POST", f"db/{collection}/count", {"filter": filter})["total"]

    def import_lines(self, collection: str, lines, source: str, progress: Progress | None = None) -> int:
        """Add the JSON documents of `lines` (one per line; blank lines skipped) in batches. A line that is
        not a JSON object stops the import before anything of its batch is sent, naming the line."""
        done, batch = 0, []

        def flush() -> None:
            nonlocal done, batch
            if batch:
                done += len(self.call("POST", f"db/{collection}/add", {"data": batch})["ids"])
                batch = []
                if progress is not None:
                    progress.report(f"{done} documents added to {collection}")

        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except ValueError as err:
                raise MinicloudError(f"{source}:{number}: not JSON ({err.msg}); {done} documents were added "
                                     "before it") from None
            if not isinstance(doc, dict):
                raise MinicloudError(f"{source}:{number}: a document is a JSON object, got {type(doc).__name__}; "
                                     f"{done} documents were added before it")
            batch.append(doc)
            if len(batch) >= self.BATCH:
                flush()
        flush()
        return done

    def export(self, collection: str, page: int = 1000):
        """Every document of `collection`, in _id order, a page at a time."""
        skip = 0
        while True:
            docs = self.find(collection, {}, sort=[["_id", 1]], skip=skip, limit=page)
            yield from docs
            if len(docs) < page:
                return
            skip += page

    # ---- files
    def files(self, prefix: str = "") -> list[dict]:
        return self.call("GET", "files?prefix=" + quote(prefix, safe="/"))["files"]

    def put(self, cloud_path: str, data: bytes) -> dict:
        from codegen.cloud_sdk.minicloud_cloud import CloudError

        try:
            return self.sdk.upload_file(cloud_path, data)
        except CloudError as err:
            raise MinicloudError(f"upload of {cloud_path} to {self.app}/{self.env}: {err.message} ({err.code})") \
                from None

    def file_id(self, cloud_path: str) -> str:
        return cloud_path if cloud_path.startswith("cloud://") else f"cloud://{self.env}/{cloud_path.lstrip('/')}"

    def get(self, cloud_path: str) -> bytes:
        import ssl

        import httpx

        found = self.call("POST", "files/temp-url", {"fileList": [self.file_id(cloud_path)], "maxAge": 60})
        entry = found["fileList"][0]
        if entry.get("status", 0) != 0:
            raise MinicloudError(f"{cloud_path}: {entry.get('errMsg') or 'not found'} in {self.app}/{self.env}")
        context = ssl.create_default_context(cafile=self.sdk_ca)
        from .swarm import connect_to

        url, options = connect_to(entry["tempFileURL"], self.address)  # the same address as the API's
        with httpx.Client(verify=context, timeout=60) as http:
            response = http.get(url, **options)
        if response.status_code != 200:
            raise MinicloudError(f"{cloud_path}: the data API answered {response.status_code}")
        return response.content

    def remove(self, cloud_path: str) -> bool:
        entry = self.call("POST", "files/delete", {"fileList": [self.file_id(cloud_path)]})["fileList"][0]
        if entry.get("status", 0) != 0:
            raise MinicloudError(f"{cloud_path}: {entry.get('errMsg') or 'not removed'} in {self.app}/{self.env}")
        return True

    def schema(self, sample: int = 200) -> list[dict]:
        """Each collection with its count and sampled fields (dotted path -> JSON type): the editor's index."""
        return self.call("GET", f"db/schema?sample={sample}")["collections"]
