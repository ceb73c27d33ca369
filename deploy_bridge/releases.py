"""Releases: build the workspace into an image; list and prune them; wait for a new one's health.

A release is an image labelled with app, env and release id; the running release is the app container
the gateway route names (switching to it is rollout.py's). Release ids sort by time:
`YYYYmmdd-HHMMSS-<content hash>`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import re
import tarfile
import time
from pathlib import Path

import docker
from docker.errors import ImageNotFound, NotFound

from . import images
from .config import LABEL_RELEASE, Settings
from .errors import BuildFailed, MinicloudError, ReleaseUnhealthy
from .manifest import Manifest
from .model import Release
from .polling import poll_until
from .progress import Progress

# never sent to the engine: our own state (keys, credentials), VCS data, local dependency folders
# (.dockerignore syntax: `**/` matches in every folder)
ALWAYS_EXCLUDED = (".minicloud", ".git", "node_modules", "**/node_modules", ".venv", "**/__pycache__", "**/*.pyc",
                   "**/.DS_Store")
PRIVATE_KEY_MARKER = b"PRIVATE KEY-----"
_SCAN_CHUNK = 1 << 20

INSTALL = {
    "nodejs": lambda ws: ("npm ci --omit=dev --no-audit --no-fund" if (ws / "package-lock.json").is_file()
                          else "npm install --omit=dev --no-audit --no-fund") if (ws / "package.json").is_file() else None,
    "python": lambda ws: "pip install --no-cache-dir -r requirements.txt" if (ws / "requirements.txt").is_file() else None,
    "java": lambda ws: None,
}


def holds_private_key(path: Path) -> bool:
    """Whether a file holds a PEM private key anywhere in it (read in chunks, whole files)."""
    overlap = len(PRIVATE_KEY_MARKER) - 1
    tail = b""
    with open(path, "rb") as f:
        while chunk := f.read(_SCAN_CHUNK):
            if PRIVATE_KEY_MARKER in tail + chunk:
                return True
            tail = chunk[-overlap:]
    return False


def workspace_files(workspace: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """Files to build from (`.dockerignore` applies, as Docker reads it), and the ones left out
    because they hold a private key."""
    from docker.utils.build import exclude_paths

    patterns = list(ALWAYS_EXCLUDED)
    ignore_file = workspace / ".dockerignore"
    if ignore_file.is_file():
        patterns += [ln.strip() for ln in ignore_file.read_text().splitlines()
                     if ln.strip() and not ln.lstrip().startswith("#")]
    files, refused = [], []
    for rel in sorted(exclude_paths(str(workspace), patterns)):
        path = workspace / rel
        if not path.is_file() or path.is_symlink() and not path.resolve().is_relative_to(workspace.resolve()):
            continue
        if holds_private_key(path):
            refused.append(rel)
            continue
        files.append((rel, path))
    return files, refused


def _ca_bundle(manifest: Manifest) -> bytes:
    """What builds trust besides the image's own CAs: the host bundle and an explicit extra bundle."""
    parts = []
    if manifest.build.trust_host_ca and (host := images.host_ca_bundle()):
        parts.append(host.read_bytes())
    extra = manifest.build.ca_bundle or os.environ.get("MINICLOUD_CA_BUNDLE")
    if extra:
        path = Path(extra).expanduser()
        if not path.is_absolute():
            path = manifest.workspace / path
        if not path.is_file():
            raise MinicloudError(f"{manifest.path}: build.ca_bundle: no such file {path}")
        parts.append(path.read_bytes())
    return b"\n".join(parts)


DEPENDENCY_COPY = {"nodejs": "COPY app/package*.json ./", "python": "COPY app/requirements.txt ./"}


def dockerfile(manifest: Manifest, base: str, install: str | None, custom_install: bool) -> str:
    """Dependencies first (their layer stays cached while only code changes), then the code."""
    lines = [f"FROM {base}", "WORKDIR /app"]
    run_install = (
        # the CA bundle is used by this step only (HTTPS registries behind intercepting proxies)
        "RUN cat /etc/ssl/certs/ca-certificates.crt /tmp/minicloud-build-ca.pem > /tmp/ca.pem 2>/dev/null; "
        "export NODE_EXTRA_CA_CERTS=/tmp/ca.pem npm_config_cafile=/tmp/ca.pem PIP_CERT=/tmp/ca.pem "
        f"REQUESTS_CA_BUNDLE=/tmp/ca.pem SSL_CERT_FILE=/tmp/ca.pem && {install} && rm -f /tmp/ca.pem"
    )
    if install:
        lines.append("COPY minicloud-build-ca.pem /tmp/minicloud-build-ca.pem")
    if install and not custom_install:
        lines += [DEPENDENCY_COPY[manifest.runtime], run_install, "COPY app/ ./"]
    elif install:
        lines += ["COPY app/ ./", run_install]
    else:
        lines.append("COPY app/ ./")
    lines.append(f"EXPOSE {manifest.port}")
    # no ENTRYPOINT of ours: official images keep theirs; the container runs with Docker's init
    lines.append(f'CMD ["sh", "-c", {_json_str(manifest.start)}]')
    return "\n".join(lines) + "\n"


def _json_str(text: str) -> str:
    return json.dumps(text)


def new_release_id(content_hash: str, now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%d-%H%M%S}-{content_hash[:6]}"


class ReleaseBuilder:
    def __init__(self, client: docker.DockerClient, settings: Settings, manifest: Manifest, env: str) -> None:
        self.client, self.settings, self.manifest, self.env = client, settings, manifest, env

    def build(self, progress: Progress) -> tuple[str, str]:
        """Build the workspace; returns (release id, image tag)."""
        m = self.manifest
        base = images.runtime_image(self.client, m.runtime, m.images.get("runtime"), progress)
        files, refused = workspace_files(m.workspace)
        for rel in refused:
            progress.report(f"left out {rel}: it holds a private key, and keys never go into images")
        install = m.build.install or INSTALL[m.runtime](m.workspace)
        df = dockerfile(m, base, install, custom_install=bool(m.build.install))
        content = hashlib.sha256(df.encode())
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in (("Dockerfile", df.encode()), ("minicloud-build-ca.pem", _ca_bundle(m))):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            for rel, path in files:
                content.update(rel.encode() + b"\0" + path.read_bytes())
                info = tar.gettarinfo(str(path), arcname=f"app/{rel}")
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mtime = 0  # stable layers: a file's content decides the cache, not its time
                with open(path, "rb") as f:
                    tar.addfile(info, f)
        buf.seek(0)
        release = new_release_id(content.hexdigest())
        while self._image_exists(release):  # two deploys of the same content within one second
            time.sleep(1)
            release = new_release_id(content.hexdigest())
        tag = self.settings.app_image(m.name, self.env, release)
        labels = self.settings.labels(app=m.name, env=self.env, role="app", release=release)
        progress.report(f"building release {release}")
        images.docker_build(self.client, buf, tag, labels, progress, f"release {release}")
        return release, tag

    def _image_exists(self, release: str) -> bool:
        try:
            self.client.images.get(self.settings.app_image(self.manifest.name, self.env, release))
            return True
        except ImageNotFound:
            return False


def list_releases(client: docker.DockerClient, settings: Settings, app: str, env: str,
                  current: str | None) -> list[Release]:
    found = client.images.list(filters={"label": settings.label_filter(app=app, env=env, role="app")})
    out = []
    for image in found:
        release = image.labels.get(LABEL_RELEASE)
        if not release:
            continue
        tag = settings.app_image(app, env, release)
        out.append(Release(release, tag, image.attrs.get("Created", ""), release == current))
    return sorted(out, key=lambda r: r.id, reverse=True)


def prune_releases(client: docker.DockerClient, settings: Settings, app: str, env: str, keep: int,
                   protect: set[str]) -> list[str]:
    removed = []
    for old in list_releases(client, settings, app, env, None)[keep:]:
        if old.id in protect:
            continue
        try:
            client.images.remove(old.image, noprune=False)
            removed.append(old.id)
        except (NotFound, docker.errors.APIError):
            pass  # still used by a stopped container: kept until next time
    return removed


def tail_logs(container: docker.models.containers.Container, lines: int = 30) -> str:
    try:
        text = container.logs(tail=lines).decode(errors="replace")
    except (NotFound, docker.errors.APIError):
        return "(no logs: the container is gone)"
    return "last lines of the app's log:\n" + (text.rstrip() or "(empty)")


# start commands that put the server in the background, and what keeps it in the foreground
_DAEMONISING = (
    (re.compile(r"egg-scripts\s+start\b.*--daemon"), "drop --daemon: `egg-scripts start --title=egg-server-APP`"),
    (re.compile(r"\bpm2\s+start\b"), "use `pm2-runtime start ...` (pm2's foreground mode)"),
    (re.compile(r"\bforever\s+start\b"), "run `node SCRIPT` directly"),
    (re.compile(r"\bgunicorn\b.*(\s-D\b|--daemon)"), "drop -D/--daemon from gunicorn"),
    (re.compile(r"\bnohup\b|&\s*$"), "do not put the server in the background with nohup or &"),
)


def foreground_hint(manifest: Manifest) -> str:
    """Exit code 0 before getting healthy: the start command most likely daemonised."""
    command = manifest.start
    scripts = {}
    package = manifest.workspace / "package.json"
    if package.is_file():
        with contextlib.suppress(ValueError, OSError):
            scripts = json.loads(package.read_text()).get("scripts") or {}
    m = re.match(r"^\s*(?:npm|yarn|pnpm)\s+(?:run\s+)?(\S+)\s*$", command)
    if m and isinstance(scripts.get(m.group(1)), str):
        command = f"{command} → {scripts[m.group(1)]}"
    advice = next((fix for pattern, fix in _DAEMONISING if pattern.search(command)), None)
    text = (f"[app].start must keep the server in the foreground (the container ends when it returns); "
            f"it ran `{command}`, which returned")
    return f"{text}: {advice}" if advice else text


def wait_healthy(container: docker.models.containers.Container, probe, manifest: Manifest,
                 progress: Progress) -> None:
    """Wait until `probe()` returns 2xx, failing fast when the container exits."""
    last: list[int | None] = [None]

    def healthy() -> bool:
        progress.check_cancelled()
        container.reload()
        if container.status in ("exited", "dead"):
            code = container.attrs["State"].get("ExitCode")
            raise ReleaseUnhealthy(f"the new release exited (code {code}) before it got healthy",
                                   details=tail_logs(container),
                                   hint=foreground_hint(manifest) if code == 0 else None)
        last[0] = probe()
        return last[0] is not None and 200 <= last[0] < 300

    if not poll_until(healthy, manifest.health_timeout, 0.15):
        got = f"HTTP {last[0]}" if last[0] else "no answer"
        raise ReleaseUnhealthy(
            f"the new release did not get healthy in {manifest.health_timeout}s "
            f"(GET {manifest.health} on port {manifest.port}: {got})", details=tail_logs(container),
            hint="check [app].port and [app].health in minicloud.toml, and that the app listens on 0.0.0.0")


__all__ = ["ReleaseBuilder", "list_releases", "prune_releases", "wait_healthy", "BuildFailed"]
