"""Images built locally, offline by default: a Debian base from debootstrap, then one image per recipe.

Each image is tagged with the hash of its recipe (Dockerfile, files, base image id), so it is built once
and rebuilt only when its recipe changes. These images are a cache shared by every instance and test
run on the engine; they carry `minicloud.image` but no `minicloud.instance`.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path

import docker
from docker.errors import APIError, BuildError, ImageNotFound

from .config import LABEL_IMAGE, LABEL_RECIPE
from .errors import BuildFailed, MinicloudError
from .progress import NullProgress, Progress

BASE_REPO = "minicloud/base"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = os.environ.get("MINICLOUD_DEBIAN_MIRROR", "http://deb.debian.org/debian")
RECIPES = ("nodejs", "python", "java", "mariadb", "postgres", "gateway", "sandbox", "registry")
RUNTIME_RECIPES = {"nodejs": "nodejs", "python": "python", "java": "java"}

# one build of a given image at a time inside this process (the server may build from two commands)
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(name, threading.Lock())


def _find(client: docker.DockerClient, ref: str) -> docker.models.images.Image | None:
    try:
        return client.images.get(ref)
    except ImageNotFound:
        return None


# ------------------------------------------------------------------------------------------ base


def base_recipe_hash() -> str:
    return hashlib.sha256(f"debootstrap minbase {DEBIAN_SUITE} ca-certificates v1".encode()).hexdigest()[:12]


def ensure_base(client: docker.DockerClient, progress: Progress | None = None) -> str:
    """The Debian base image; built with debootstrap + docker import when missing (~30 s)."""
    progress = progress or NullProgress()
    tag = f"{BASE_REPO}:{base_recipe_hash()}"
    with _lock(tag):
        if _find(client, tag):
            return tag
        if shutil.which("debootstrap") is None:
            raise MinicloudError("the Debian base image is missing and `debootstrap` is not installed",
                                 hint="apt-get install -y debootstrap (scripts/setup.sh does this)")
        if os.geteuid() != 0:
            raise MinicloudError("building the Debian base image needs root (debootstrap)",
                                 hint="run `sudo minicloud images build` once; every later build is cached")
        progress.report(f"building the Debian {DEBIAN_SUITE} base image (debootstrap, about 30 s)")
        with tempfile.TemporaryDirectory(prefix="minicloud-base-") as tmp:
            root = Path(tmp) / "root"
            cmd = ["debootstrap", "--variant=minbase", "--include=ca-certificates", DEBIAN_SUITE, str(root),
                   DEBIAN_MIRROR]
            run = subprocess.run(cmd, capture_output=True, text=True)
            if run.returncode != 0:
                tail = "\n".join((run.stdout + run.stderr).splitlines()[-15:])
                raise BuildFailed("debootstrap failed while building the base image", details=tail,
                                  hint=f"check that {DEBIAN_MIRROR} is reachable (MINICLOUD_DEBIAN_MIRROR)")
            # smaller image, and apt in derived images always starts from a fresh `apt-get update`
            shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
            shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
            (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
            archive = Path(tmp) / "root.tar"
            subprocess.run(["tar", "-C", str(root), "-cf", str(archive), "."], check=True)
            progress.report("importing the base image")
            client.api.import_image_from_file(
                str(archive), repository=BASE_REPO, tag=base_recipe_hash(),
                changes=[f"LABEL {LABEL_IMAGE}=base {LABEL_RECIPE}={base_recipe_hash()}",
                         'CMD ["/bin/bash"]', "ENV LANG=C.UTF-8"])
        return tag


# --------------------------------------------------------------------------------------- recipes


def _recipe_files(name: str) -> dict[str, bytes]:
    folder = resources.files("deploy_bridge") / "recipes" / name
    return {entry.name: entry.read_bytes() for entry in folder.iterdir() if entry.is_file()}


# What the sandbox image holds of this project: real files, so its imports are the ones tested here
# (tests/test_architecture.py checks that deploy_bridge.services imports nothing else).
IN_IMAGE_SOURCES = ("deploy_bridge/__init__.py", "deploy_bridge/services", "codegen/__init__.py",
                    "codegen/catalog.py", "codegen/abilities.py", "codegen/keys.py", "codegen/catalog")


def _sandbox_sources() -> dict[str, bytes]:
    root = Path(__file__).resolve().parent.parent
    files: dict[str, bytes] = {}
    for entry in IN_IMAGE_SOURCES:
        path = root / entry
        paths = sorted(path.rglob("*")) if path.is_dir() else [path]
        for p in paths:
            if p.is_file() and p.suffix in {".py", ".json"} and "__pycache__" not in p.parts:
                files[f"src/{p.relative_to(root)}"] = p.read_bytes()
    return files


# psycopg as this project runs it (with its C implementation, psycopg_binary), for the data API in the
# sandbox image: Debian's python3-psycopg has only the ctypes one, which cost the find path ~0.1 ms. Taken
# when this Python is the image's (Debian bookworm's 3.11); a binary that does not load there (another
# machine's architecture) leaves psycopg on its ctypes implementation and Debian's libpq, as before.
IMAGE_PYTHON = (3, 11)
VENDORED = ("psycopg", "psycopg_binary", "psycopg_binary.libs")


def _vendored_sources() -> dict[str, bytes]:
    import importlib.util
    import sys

    files = {"vendor/README": b"psycopg as minicloud's own tests run it (deploy_bridge/images.py)\n"}
    spec = importlib.util.find_spec("psycopg_binary")
    if sys.version_info[:2] != IMAGE_PYTHON or spec is None or not spec.submodule_search_locations:
        return files
    site = Path(next(iter(spec.submodule_search_locations))).parent
    for package in VENDORED:
        for p in sorted((site / package).rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                files[f"vendor/{p.relative_to(site)}"] = p.read_bytes()
    return files


def recipe_context(name: str, base: str) -> dict[str, bytes]:
    files = _recipe_files(name)
    files["Dockerfile"] = files["Dockerfile"].replace(b"{base}", base.encode())
    if name == "sandbox":
        files.update(_sandbox_sources())
        files.update(_vendored_sources())
    return files


def _hash_files(files: dict[str, bytes], *extra: str) -> str:
    h = hashlib.sha256()
    for key in sorted(files):
        h.update(key.encode() + b"\0" + hashlib.sha256(files[key]).digest())
    for item in extra:
        h.update(item.encode())
    return h.hexdigest()[:12]


def tar_context(files: dict[str, bytes], extra_paths: Iterable[tuple[str, Path]] = ()) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
        for arcname, path in extra_paths:
            tar.add(str(path), arcname=arcname, recursive=False)
    buf.seek(0)
    return buf


def docker_build(client: docker.DockerClient, context: io.BytesIO, tag: str, labels: dict[str, str],
                 progress: Progress, what: str, on_line: Callable[[str], None] | None = None,
                 log_path: Path | None = None,
                 explain: Callable[[list[str], str], BuildFailed | None] | None = None) -> str:
    """Build from an in-memory context, streaming steps to `progress`; BuildFailed shows the log tail.

    With `log_path`, the whole build log is written there (and named in the error); with `explain`, a
    failure is first handed to it (the log's lines and the engine's error) for an error in the user's
    words, e.g. which step failed, the tool's first real error line and the fix.
    """
    tail: deque[str] = deque(maxlen=25)
    log: list[str] = []
    image_id = None

    def failed(error: str) -> BuildFailed:
        saved = _save_log(log_path, log)
        found = explain(log, error) if explain else None
        if found is None:
            found = BuildFailed(f"building {what} failed: {error[:300]}",
                                details="last lines of the build log:\n" + "\n".join(tail))
        if saved:
            found.details = "\n".join(filter(None, (found.details, f"the full build log: {saved}")))
        return found

    try:
        for chunk in client.api.build(fileobj=context, custom_context=True, tag=tag, labels=labels, rm=True,
                                      forcerm=True, decode=True, pull=False):
            progress.check_cancelled()
            if "stream" in chunk:
                for line in chunk["stream"].splitlines():
                    if line.strip():
                        tail.append(line)
                        log.append(line)
                        if on_line:
                            on_line(line)
                        if line.startswith("Step "):
                            progress.report(f"{what}: {line[:120]}")
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
            if "error" in chunk:
                error = chunk["error"].strip()
                tail.append(error)
                log.append(error)
                raise failed(error)
    except (APIError, BuildError) as err:
        log.append(str(err))
        raise failed(str(err)) from None
    _save_log(log_path, log)
    return image_id or client.images.get(tag).id


def _save_log(path: Path | None, lines: list[str]) -> Path | None:
    if path is None:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", errors="replace")
    except OSError:
        return None
    return path


def ensure_recipe(client: docker.DockerClient, name: str, progress: Progress | None = None) -> str:
    """The image of recipe `name` (nodejs, python, java, mariadb, gateway, sandbox), built if missing."""
    progress = progress or NullProgress()
    if name not in RECIPES:
        raise MinicloudError(f"unknown image recipe {name!r}")
    base = ensure_base(client, progress)
    files = recipe_context(name, base)
    recipe = _hash_files(files, client.images.get(base).id)
    tag = f"minicloud/{name}:{recipe}"
    with _lock(tag):
        if _find(client, tag):
            return tag
        progress.report(f"building the {name} image (first time only)")
        docker_build(client, tar_context(files), tag, {LABEL_IMAGE: name, LABEL_RECIPE: recipe}, progress,
                     f"{name} image")
        return tag


def runtime_image(client: docker.DockerClient, runtime: str, override: str | None,
                  progress: Progress | None = None) -> str:
    """The image an app of `runtime` builds on: the manifest's [images].runtime, or the local recipe."""
    if override:
        return official_image(client, override, progress)
    return ensure_recipe(client, RUNTIME_RECIPES[runtime], progress)


def official_image(client: docker.DockerClient, ref: str, progress: Progress | None) -> str:
    """An official image named in the manifest: used when present, pulled when a registry answers."""
    if _find(client, ref):
        return ref
    (progress or NullProgress()).report(f"pulling {ref}")
    try:
        client.images.pull(ref)
    except APIError as err:
        raise MinicloudError(f"cannot pull {ref}: {err.explanation or err}",
                             hint="no registry is reachable: remove the [images] entry to use the locally built "
                                  "images (the default)") from None
    return ref


def ensure_all(client: docker.DockerClient, names: Iterable[str], progress: Progress | None = None) -> dict[str, str]:
    return {name: ensure_recipe(client, name, progress) for name in names}


def host_ca_bundle() -> Path | None:
    for candidate in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"):
        if Path(candidate).is_file():
            return Path(candidate)
    return None
