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
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import ImageNotFound, NotFound

from . import images
from .config import LABEL_IMAGE, LABEL_RELEASE, Settings
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


def build_ca_bundle(manifest: Manifest) -> bytes:
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
# where the default dependency step puts what it installs (copied from the build stage into the image that
# runs); a custom [build] install may write anywhere in the app folder, and pip/npm -g into /usr/local
DEPENDENCY_DIRS = {"nodejs": ("/app/node_modules",), "python": ("/usr/local",)}
CUSTOM_DEPENDENCY_DIRS = ("/app", "/usr/local")
LIBS_FILE = "/tmp/minicloud-libs.txt"
MISSING_LIBS_MARK = "minicloud-missing-libraries:"
_NATIVE_FILES = r"-type f \( -name '*.so' -o -name '*.so.*' -o -name '*.node' \)"


def apt_step(packages: tuple[str, ...] | list[str]) -> str:
    """One layer installing Debian packages from the base image's mirror (cached while the list is the same)."""
    return ("RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
            f"{' '.join(packages)} && rm -rf /var/lib/apt/lists/*")


def install_step(install: str) -> str:
    return (
        # the CA bundle is used by this step only (HTTPS registries behind intercepting proxies)
        "RUN cat /etc/ssl/certs/ca-certificates.crt /tmp/minicloud-build-ca.pem > /tmp/ca.pem 2>/dev/null; "
        "export NODE_EXTRA_CA_CERTS=/tmp/ca.pem npm_config_cafile=/tmp/ca.pem PIP_CERT=/tmp/ca.pem "
        f"REQUESTS_CA_BUNDLE=/tmp/ca.pem SSL_CERT_FILE=/tmp/ca.pem && {install} && rm -f /tmp/ca.pem"
    )


def _record_libs_step(dirs: tuple[str, ...]) -> str:
    """Build stage: each shared library the native dependencies link to, with the Debian package holding it."""
    return (f"RUN find {' '.join(dirs)} {_NATIVE_FILES} -exec ldd {{}} + 2>/dev/null "
            "| awk '$2 == \"=>\" && $3 ~ /^\\// {print $1}' | sort -u "
            "| while read -r lib; do "
            "echo \"$lib=$(dpkg -S \"*/$lib\" 2>/dev/null | head -n1 | cut -d: -f1)\"; "
            f"done > {LIBS_FILE}")


def _check_libs_step(dirs: tuple[str, ...]) -> str:
    """Final stage: fail (readably) when a library the build found is missing from the image that runs."""
    return (f"RUN missing=$(find {' '.join(dirs)} {_NATIVE_FILES} -exec ldd {{}} + 2>/dev/null "
            "| awk '$2 == \"=>\" && $3 == \"not\" {print $1}' | sort -u); out=; "
            f"for lib in $missing; do hit=$(awk -F= -v l=\"$lib\" '$1 == l {{print; exit}}' {LIBS_FILE}); "
            "if [ -n \"$hit\" ]; then out=\"$out $hit\"; fi; done; "
            f"rm -f {LIBS_FILE}; "
            f"if [ -n \"$out\" ]; then echo \"{MISSING_LIBS_MARK}$out\"; exit 1; fi")


def dockerfile(manifest: Manifest, base: str, install: str | None, custom_install: bool) -> str:
    """Dependencies first (their layer stays cached while only code changes), then the code.

    With `[build] packages`, two stages: a build stage with those packages (their own layer, before the
    dependency files, so it stays cached while code and dependencies change) runs the dependency step;
    the image that runs starts again from the runtime image, with `[build] runtime_packages`, and gets
    only what the step installed. Compilers and headers stay out of it.
    """
    build = manifest.build
    if build.packages and install:
        return _two_stages(manifest, base, install, custom_install)
    lines = [f"FROM {base}"]
    if build.runtime_packages:
        lines.append(apt_step(build.runtime_packages))
    lines.append("WORKDIR /app")
    if install:
        lines.append("COPY minicloud-build-ca.pem /tmp/minicloud-build-ca.pem")
    if install and not custom_install:
        lines += [DEPENDENCY_COPY[manifest.runtime], install_step(install), "COPY app/ ./"]
    elif install:
        lines += ["COPY app/ ./", install_step(install)]
    else:
        lines.append("COPY app/ ./")
    return "\n".join(lines + _run_lines(manifest)) + "\n"


def _two_stages(manifest: Manifest, base: str, install: str, custom_install: bool) -> str:
    build = manifest.build
    dirs = CUSTOM_DEPENDENCY_DIRS if custom_install else DEPENDENCY_DIRS[manifest.runtime]
    lines = [f"FROM {base} AS build", apt_step(build.packages), "WORKDIR /app",
             "COPY minicloud-build-ca.pem /tmp/minicloud-build-ca.pem"]
    if custom_install:
        lines += ["COPY app/ ./", install_step(install)]
    else:
        # an app without dependencies still gets the folder the image that runs copies
        lines += [DEPENDENCY_COPY[manifest.runtime], install_step(install + " && mkdir -p " + " ".join(dirs))]
    lines += [_record_libs_step(dirs),
              # the build stage is a cache shared by every instance, like the runtime images
              f"LABEL {LABEL_IMAGE}=build-deps", "",
              f"FROM {base}"]
    if build.runtime_packages:
        lines.append(apt_step(build.runtime_packages))
    lines += ["WORKDIR /app", f"COPY --from=build {LIBS_FILE} {LIBS_FILE}"]
    lines += [f"COPY --from=build {d} {d}" for d in dirs]
    lines.append(_check_libs_step(dirs))
    if not custom_install:
        lines.append("COPY app/ ./")
    return "\n".join(lines + _run_lines(manifest)) + "\n"


def _run_lines(manifest: Manifest) -> list[str]:
    # no ENTRYPOINT of ours: official images keep theirs; the container runs with Docker's init
    return [f"EXPOSE {manifest.port}", f'CMD ["sh", "-c", {_json_str(manifest.start)}]']


# ------------------------------------------------------------------ a failed build, in minicloud's words


@dataclass(frozen=True)
class NativeFix:
    """A failure users meet often, and the `[build]` lines that fix it."""

    pattern: re.Pattern[str]
    cause: str
    packages: tuple[str, ...] = ()
    runtime_packages: tuple[str, ...] = ()
    advice: str | None = None  # instead of packages


COMPILER = ("build-essential",)
NATIVE_FIXES = (
    NativeFix(re.compile(r"Can not find valid pkg-config name|mysql_config:? not found|"
                         r"pkg-config --exists (mysqlclient|mariadb)"),
              "mysqlclient builds against the MariaDB client library",
              ("pkg-config", "default-libmysqlclient-dev", "build-essential", "python3-dev"), ("libmariadb3",)),
    NativeFix(re.compile(r"pg_config executable not found|pg_config:? not found"),
              "psycopg2 builds against libpq", ("libpq-dev", "build-essential", "python3-dev"), ("libpq5",)),
    NativeFix(re.compile(r"pkg-config:? (command )?not found|Did not find pkg-config|"
                         r"The pkg-config script could not be found"),
              "pkg-config is missing (and maybe the -dev package of the library it looks for)",
              ("pkg-config", "build-essential")),
    NativeFix(re.compile(r"gyp http GET https://nodejs\.org|gyp ERR!.*(nodejs\.org|network connectivity)"),
              "node-gyp tried to download the Node headers",
              advice="minicloud's nodejs image has them (npm_config_nodedir=/usr); with an [images] runtime, "
                     "point npm_config_nodedir at that image's headers in [build] install, e.g. "
                     '"npm_config_nodedir=/usr/local npm ci --omit=dev"'),
    NativeFix(re.compile(r"gyp ERR! find Python|Could not find any Python installation"),
              "node-gyp needs python3", ("python3", "build-essential")),
    NativeFix(re.compile(r"not found: (make|gcc|g\+\+|cc|c\+\+)\b|\b(make|gcc|g\+\+|cc|c\+\+):? (command )?not found|"
                         r"command '[\w./-]*(gcc|cc|g\+\+|c\+\+)' failed: No such file|unable to execute '[\w./-]*gcc'|"
                         r"You need a C compiler|[Nn]o (C|C\+\+) compiler|Could not find compiler|"
                         r"CMAKE_C(XX)?_COMPILER not set|make: not found"),
              "a C/C++ compiler or make is missing", COMPILER),
)
_MISSING_HEADER = re.compile(r"fatal error: ([\w./+-]+\.h(?:pp)?): No such file or directory")
HEADER_PACKAGES = {
    "Python.h": "python3-dev", "mysql.h": "default-libmysqlclient-dev", "ffi.h": "libffi-dev",
    "openssl/": "libssl-dev", "libpq-fe.h": "libpq-dev", "sqlite3.h": "libsqlite3-dev", "zlib.h": "zlib1g-dev",
    "jpeglib.h": "libjpeg-dev", "png.h": "libpng-dev", "libxml/": "libxml2-dev", "libxslt/": "libxslt1-dev",
    "vips/": "libvips-dev", "yaml.h": "libyaml-dev", "ldap.h": "libldap2-dev", "sasl/": "libsasl2-dev",
    "cairo.h": "libcairo2-dev", "uuid/uuid.h": "uuid-dev", "krb5.h": "libkrb5-dev", "gmp.h": "libgmp-dev",
}

_STEP = re.compile(r"^Step \d+/\d+ : (.*)$")
_BUILDER_NOISE = re.compile(r"^(Removing intermediate container |\s*---> )")
_TOOL_PREFIX = re.compile(r"^(?:npm (?:ERR!|error)\s?)+")
_EXIT_CODE = re.compile(r"returned a non-zero code: (\d+)")
_BOILERPLATE = re.compile(
    r"subprocess-exited-with-error|^note: |^[×╰│]|See above for output|A complete log of this run|"
    r"^code [A-Z0-9_]+$|^(path|errno|syscall) |^command (failed|sh -c)|"
    r"gyp ERR! (not ok|configure error|build error|System |command |cwd |node -v|node-gyp -v)|ERR! stack\s+at |"
    r"Failed building wheel|metadata-generation-failed|^\[end of output\]|^Traceback|^File \"|^\^+$|"
    r"^(WARNING|WARN|npm warn|npm WARN|debconf):")
_ERROR_LINE = re.compile(
    r"^(E: |ERROR:|[Ee]rror:|fatal error|FATAL|\S*(Error|Exception):|\d{3} |notarget |"
    r".*ERR! stack Error: |.*: (command )?not found$|.*No such file or directory$)")


def _plain(line: str) -> str:
    return _TOOL_PREFIX.sub("", line.strip()).strip()


def first_error_line(output: list[str], pattern: re.Pattern[str] | None = None) -> str:
    """The tool's first real error line: the one a known cause matches, else the first error-like line that
    is not boilerplate, else the last line it printed."""
    lines = [_plain(ln) for ln in output if ln.strip() and not _BUILDER_NOISE.match(ln)]
    lines = [ln for ln in lines if ln]
    if pattern is not None:
        matching = [ln for ln in lines if pattern.search(ln)]
        found = next((ln for ln in matching if _ERROR_LINE.match(ln)), matching[0] if matching else None)
        if found:
            return found[:240]
    real = [ln for ln in lines if not _BOILERPLATE.search(ln)]
    found = next((ln for ln in real if _ERROR_LINE.match(ln)), None)
    return (found or (real or lines or ["(no output)"])[-1])[:240]


def diagnose(output: list[str], runtime: str) -> tuple[NativeFix | None, re.Pattern[str] | None]:
    """A known cause of a failed dependency step, and the pattern that found it."""
    text = "\n".join(output)
    for fix in NATIVE_FIXES:
        if fix.pattern.search(text):
            return fix, fix.pattern
    if m := _MISSING_HEADER.search(text):
        header = m.group(1)
        package = next((pkg for key, pkg in HEADER_PACKAGES.items()
                        if header == key or key.endswith("/") and header.startswith(key)), None)
        if package:
            packages = (package, *COMPILER, *(("python3-dev",) if runtime == "python" else ()))
            return NativeFix(_MISSING_HEADER, f"the header {header} is missing", tuple(dict.fromkeys(packages))), \
                _MISSING_HEADER
        return NativeFix(_MISSING_HEADER, f"the header {header} is missing",
                         advice="add the Debian package that holds it to [build] packages (search "
                                f"https://packages.debian.org/search?searchon=contents&keywords={header}"
                                "&suite=bookworm)"), _MISSING_HEADER
    return None, None


def _toml_list(items: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def fix_hint(fix: NativeFix, manifest: Manifest) -> str | None:
    """`[build] packages = [...]` (what the manifest has, plus what is missing), in minicloud.toml's words."""
    if fix.advice:
        return f"{fix.cause}: {fix.advice}"
    build = manifest.build
    wanted = list(fix.packages)
    if manifest.runtime == "python" and "build-essential" in wanted and "python3-dev" not in wanted:
        wanted.append("python3-dev")
    packages = tuple(dict.fromkeys((*build.packages, *wanted)))
    runtime = tuple(dict.fromkeys((*build.runtime_packages, *fix.runtime_packages)))
    if packages == build.packages and runtime == build.runtime_packages:
        return None  # the manifest has them already: the cause is elsewhere
    keys = [f"{key} = {_toml_list(value)}" for key, value, had in (
        ("packages", packages, build.packages), ("runtime_packages", runtime, build.runtime_packages)) if value != had]
    return f"{fix.cause}: add to minicloud.toml  [build] {'  '.join(keys)}"


def _step_kind(instruction: str, manifest: Manifest) -> str | None:
    if instruction.startswith("RUN apt-get update"):
        if manifest.build.packages and instruction == apt_step(manifest.build.packages):
            return "packages"
        if manifest.build.runtime_packages and instruction == apt_step(manifest.build.runtime_packages):
            return "runtime_packages"
        return None
    if "minicloud-build-ca.pem > /tmp/ca.pem" in instruction:
        return "install"
    if MISSING_LIBS_MARK in instruction:
        return "libs"
    return None


def explain_build_failure(log: list[str], error: str, manifest: Manifest, install: str | None,
                          custom_install: bool) -> BuildFailed | None:
    """One readable line for a failed step of a release build (which step, the tool's first real error
    line), with the `[build]` fix for the failures users meet most; None for other failures."""
    start = max((i for i, ln in enumerate(log) if _STEP.match(ln)), default=None)
    if start is None:
        return None
    instruction = _STEP.match(log[start]).group(1)
    kind = _step_kind(instruction, manifest)
    if kind is None:
        return None
    output = [ln for ln in log[start + 1:] if ln.strip() != error.strip() and not _BUILDER_NOISE.match(ln)]
    code = _EXIT_CODE.search(error)
    exit_text = f"exit {code.group(1)}" if code else "failed"
    if kind in ("packages", "runtime_packages"):
        line = next((_plain(ln) for ln in output if ln.startswith("E: ")), first_error_line(output))
        hint = ("check the names at https://packages.debian.org/bookworm (they are checked by form only, "
                f"offline); the mirror is {images.DEBIAN_MIRROR} (MINICLOUD_DEBIAN_MIRROR)")
        return BuildFailed(f"installing [build] {kind} failed ({exit_text}): {line}", hint=hint)
    if kind == "libs":
        marked = next((ln for ln in output if MISSING_LIBS_MARK in ln), "")
        pairs = [item.split("=", 1) for item in marked.split(MISSING_LIBS_MARK, 1)[-1].split() if "=" in item]
        libs = ", ".join(lib for lib, _ in pairs) or "(unknown)"
        packages = tuple(pkg for _, pkg in pairs if pkg)
        fix = NativeFix(re.compile("$^"), "[build] packages bring them to the build only", runtime_packages=packages)
        return BuildFailed(f"the image that runs lacks shared libraries its dependencies were built against: "
                           f"{libs}", hint=fix_hint(fix, manifest) if packages else
                           "add the Debian packages holding them to [build] runtime_packages")
    if custom_install:
        step = "the [build] install step"
    else:
        step = f"installing {({'nodejs': 'Node', 'python': 'Python'}).get(manifest.runtime, manifest.runtime)} " \
               "dependencies"
    fix, pattern = diagnose(output, manifest.runtime)
    line = first_error_line(output, pattern)
    return BuildFailed(f"{step} failed ({install}, {exit_text}): {line}",
                       hint=fix_hint(fix, manifest) if fix else None)


def _json_str(text: str) -> str:
    return json.dumps(text)


def record_release(client: docker.DockerClient, settings: Settings, app: str, env: str, content_hash: str,
                   extra_labels: dict[str, str]) -> tuple[str, str]:
    """A release of a workspace with no server (functions alone): an empty image that only carries the
    release's labels, so that `releases` and `rollback` read it like any other. Returns (release, tag)."""
    release = new_release_id(content_hash)
    while True:
        try:
            client.images.get(settings.app_image(app, env, release))
        except ImageNotFound:
            break
        time.sleep(1)  # two releases of the same content within one second
        release = new_release_id(content_hash)
    labels = {**settings.labels(app=app, env=env, role="app", release=release), **extra_labels}
    empty = io.BytesIO()
    with tarfile.open(fileobj=empty, mode="w"):
        pass
    repository, tag = settings.app_image(app, env, release).split(":", 1)
    client.api.import_image_from_data(empty.getvalue(), repository=repository, tag=tag,
                                      changes=[f"LABEL {k}={json.dumps(v)}" for k, v in labels.items()])
    return release, f"{repository}:{tag}"


def new_release_id(content_hash: str, now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%d-%H%M%S}-{content_hash[:6]}"


class ReleaseBuilder:
    def __init__(self, client: docker.DockerClient, settings: Settings, manifest: Manifest, env: str) -> None:
        self.client, self.settings, self.manifest, self.env = client, settings, manifest, env

    def build(self, progress: Progress, extra_labels: dict[str, str] | None = None) -> tuple[str, str]:
        """Build the workspace; returns (release id, image tag)."""
        m = self.manifest
        base = images.runtime_image(self.client, m.runtime, m.images.get("runtime"), progress)
        files, refused = workspace_files(m.workspace)
        for rel in refused:
            progress.report(f"left out {rel}: it holds a private key, and keys never go into images")
        install = m.build.install or INSTALL[m.runtime](m.workspace)
        if m.build.packages and not install:
            progress.report("[build] packages serve the dependency step, and this app has none: not installed "
                            "(tools the app runs go in [build] runtime_packages)")
        df = dockerfile(m, base, install, custom_install=bool(m.build.install))
        content = hashlib.sha256(df.encode())
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in (("Dockerfile", df.encode()), ("minicloud-build-ca.pem", build_ca_bundle(m))):
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
        labels = {**self.settings.labels(app=m.name, env=self.env, role="app", release=release), **(extra_labels or {})}
        progress.report(f"building release {release}")
        images.docker_build(self.client, buf, tag, labels, progress, f"release {release}",
                            log_path=self._log_path(release),
                            explain=lambda log, error: explain_build_failure(log, error, m, install,
                                                                             bool(m.build.install)))
        return release, tag

    BUILD_LOGS_KEPT = 20

    def _log_path(self, release: str) -> Path:
        """The whole log of this build, under the instance's home; the oldest of this app/env are removed."""
        folder = self.settings.instance_dir() / "build-logs"
        prefix = f"{self.manifest.name}-{self.env}-"
        with contextlib.suppress(OSError):
            for old in sorted(folder.glob(f"{prefix}[0-9]*.log"))[:-self.BUILD_LOGS_KEPT + 1 or None]:
                old.unlink(missing_ok=True)
        return folder / f"{prefix}{release}.log"

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
