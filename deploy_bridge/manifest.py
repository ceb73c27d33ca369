"""minicloud.toml: one schema for validation and for the language server's completions.

The schema is data (`SCHEMA`): tables, their keys, types, allowed values and docs. `load_manifest`
validates a file against it and reports every problem with file, line and key; the language server
walks the same tables to complete keys and values.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ManifestError, ManifestNotFound, UnknownEnv

MANIFEST_NAME = "minicloud.toml"
NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")
VAR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RUNTIMES = ("nodejs", "python", "java")
DEFAULT_ENVS = ("test", "prod")


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # "string" | "integer" | "boolean"
    doc: str
    required: bool = False
    choices: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    default: Any = None
    example: str | None = None
    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True)
class Table:
    """A TOML table. `path` uses `*` for a user-chosen name (`env.*` is `[env.test]`, `[env.prod]`…)."""

    path: str
    doc: str
    fields: tuple[Field, ...] = ()
    # a free-form table takes any key matching `key_pattern`, each a string value (env vars)
    free_form: bool = False
    key_pattern: re.Pattern[str] | None = None

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


SCHEMA: tuple[Table, ...] = (
    Table(
        "app",
        "The application: what runs and how minicloud knows it is healthy.",
        (
            Field("name", "string", "App name; part of the URL https://NAME.ENV.localhost:8443.",
                  required=True, pattern=NAME_RE, example='"shop"'),
            Field("runtime", "string", "Runtime image the app runs on.", required=True, choices=RUNTIMES,
                  example='"nodejs"'),
            Field("start", "string", "Command run in the app folder inside the container.", required=True,
                  example='"node server.js"'),
            Field("port", "integer", "Port the app listens on inside the container.", required=True,
                  minimum=1, maximum=65535, example="3000"),
            Field("health", "string", "HTTP path that answers 2xx when the app is healthy.", default="/healthz",
                  pattern=re.compile(r"^/"), example='"/healthz"'),
            Field("health_timeout", "integer", "Seconds a new release has to become healthy.", default=60,
                  minimum=1, maximum=3600, example="60"),
            Field("drain_seconds", "integer", "Seconds the old release keeps running after the switch.",
                  default=2, minimum=0, maximum=600, example="2"),
            Field("keep_releases", "integer", "How many release images to keep for rollback.", default=10,
                  minimum=1, maximum=100, example="10"),
        ),
    ),
    Table("env", "Environments, one table each: [env.test], [env.prod]."),
    Table(
        "env.*",
        "One environment (its own network, database, gateway routes and app).",
        (
            Field("sandbox", "boolean", "Run the sandbox open-platform gateway in this environment.",
                  default=True, example="true"),
        ),
    ),
    Table("env.*.vars", "Extra variables injected into the app of this environment.", free_form=True,
          key_pattern=VAR_NAME_RE),
    Table(
        "build",
        "How the app image is built.",
        (
            Field("trust_host_ca", "boolean",
                  "Hand the host's CA bundle to builds so HTTPS registries work behind intercepting proxies.",
                  default=True, example="true"),
            Field("ca_bundle", "string", "An extra CA bundle (PEM) to trust during builds.",
                  example='"/etc/ssl/certs/corp-ca.pem"'),
            Field("install", "string", "Command that installs dependencies (default: by runtime).",
                  example='"npm ci --omit=dev"'),
        ),
    ),
    Table(
        "images",
        "Use official registry images instead of the locally built ones (needs a reachable registry).",
        (
            Field("runtime", "string", "Image for the app runtime, e.g. node:20-bookworm.", example='"node:20"'),
            Field("db", "string", "Image for the database, e.g. mariadb:11.", example='"mariadb:11"'),
        ),
    ),
)

TABLES: dict[str, Table] = {t.path: t for t in SCHEMA}


def schema_table(path: tuple[str, ...]) -> Table | None:
    """The schema table for a concrete path: ("env", "prod", "vars") -> `env.*.vars`."""
    if not path:
        return None
    concrete = ".".join(path)
    if concrete in TABLES:
        return TABLES[concrete]
    if path[0] == "env" and len(path) >= 2:
        generic = ".".join(("env", "*", *path[2:]))
        return TABLES.get(generic)
    return None


@dataclass
class EnvConfig:
    name: str
    vars: dict[str, str] = field(default_factory=dict)
    sandbox: bool = True


@dataclass
class BuildConfig:
    trust_host_ca: bool = True
    ca_bundle: str | None = None
    install: str | None = None


@dataclass
class Manifest:
    path: Path
    name: str
    runtime: str
    start: str
    port: int
    health: str = "/healthz"
    health_timeout: int = 60
    drain_seconds: int = 2
    keep_releases: int = 10
    envs: dict[str, EnvConfig] = field(default_factory=dict)
    build: BuildConfig = field(default_factory=BuildConfig)
    images: dict[str, str] = field(default_factory=dict)

    @property
    def workspace(self) -> Path:
        return self.path.parent

    def env(self, name: str) -> EnvConfig:
        if name not in self.envs:
            known = ", ".join(sorted(self.envs)) or "none"
            raise UnknownEnv(f"unknown environment '{name}' for app '{self.name}' (known: {known})",
                             hint=f"add a table [env.{name}] to {self.path}")
        return self.envs[name]


# ---------------------------------------------------------------- locating keys in the text


class _Locator:
    """Maps table paths and keys to their line in the TOML text (tomllib keeps no positions)."""

    _header = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    _key = re.compile(r"""^\s*((?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+))*)\s*=""")

    def __init__(self, text: str) -> None:
        self.tables: dict[tuple[str, ...], int] = {}
        self.keys: dict[tuple[str, ...], tuple[int, int, int]] = {}
        current: tuple[str, ...] = ()
        for lineno, line in enumerate(text.splitlines(), start=1):
            header = self._header.match(line)
            if header:
                current = self._split(header.group(1))
                self.tables.setdefault(current, lineno)
                continue
            key = self._key.match(line)
            if key:
                parts = self._split(key.group(1))
                start = line.index(key.group(1)[0]) + 1
                self.keys.setdefault((*current, *parts), (lineno, start, start + len(key.group(1))))

    @staticmethod
    def _split(dotted: str) -> tuple[str, ...]:
        parts = re.findall(r'"([^"]*)"|\'([^\']*)\'|([^.\s]+)', dotted)
        return tuple(next(p for p in groups if p) if any(groups) else "" for groups in parts)

    def where(self, path: tuple[str, ...]) -> tuple[int, int, int | None]:
        if path in self.keys:
            return self.keys[path]
        if path in self.tables:
            return self.tables[path], 1, None
        # fall back to the closest enclosing table that we know
        for n in range(len(path) - 1, 0, -1):
            if path[:n] in self.tables:
                return self.tables[path[:n]], 1, None
        return 1, 1, None


# ---------------------------------------------------------------- validation


def _check_value(fld: Field, value: Any) -> str | None:
    kinds = {"string": str, "integer": int, "boolean": bool}
    expected = kinds[fld.kind]
    if fld.kind == "integer" and isinstance(value, bool) or not isinstance(value, expected):
        return f"expected {fld.kind}, got {_toml_kind(value)}"
    if fld.choices and value not in fld.choices:
        return f"must be one of {', '.join(fld.choices)}; got {value!r}"
    if fld.pattern is not None and not fld.pattern.match(value):
        return f"{value!r} does not match {fld.pattern.pattern}"
    if fld.minimum is not None and value < fld.minimum:
        return f"must be at least {fld.minimum}"
    if fld.maximum is not None and value > fld.maximum:
        return f"must be at most {fld.maximum}"
    return None


def _toml_kind(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", dict: "table",
            list: "array"}.get(type(value), type(value).__name__)


def validate(data: dict[str, Any], text: str, file: str) -> list[ManifestError]:
    """Every problem in a parsed manifest, each located in the text."""
    loc = _Locator(text)
    problems: list[ManifestError] = []

    def report(path: tuple[str, ...], problem: str) -> None:
        line, col, end = loc.where(path)
        problems.append(ManifestError(file, line, ".".join(path), problem, column=col, end_column=end))

    def walk(table: dict[str, Any], path: tuple[str, ...]) -> None:
        spec = schema_table(path) if path else None
        for key, value in table.items():
            here = (*path, key)
            if not path:
                if key not in TABLES:
                    report(here, f"unknown table; expected one of {', '.join(t for t in TABLES if '.' not in t)}")
                elif not isinstance(value, dict):
                    report(here, f"expected a table, got {_toml_kind(value)}")
                else:
                    walk(value, here)
                continue
            if spec is None:
                continue
            if spec.free_form:
                if spec.key_pattern is not None and not spec.key_pattern.match(key):
                    report(here, "not a valid variable name")
                elif not isinstance(value, str | int | bool | float):
                    report(here, f"expected a string, got {_toml_kind(value)}")
                continue
            child = schema_table(here)
            if child is not None and (spec.path == "env" or isinstance(value, dict)):
                if spec.path == "env" and not NAME_RE.match(key):
                    report(here, "environment names are lowercase letters, digits and '-'")
                if not isinstance(value, dict):
                    report(here, f"expected a table, got {_toml_kind(value)}")
                else:
                    walk(value, here)
                continue
            fld = spec.field(key)
            if fld is None:
                known = ", ".join(f.name for f in spec.fields) or "none"
                report(here, f"unknown key in [{'.'.join(path)}] (known keys: {known})")
                continue
            problem = _check_value(fld, value)
            if problem:
                report(here, problem)
        if spec is not None and not spec.free_form:
            for fld in spec.fields:
                if fld.required and fld.name not in table:
                    report(path, f"missing required key '{fld.name}'")

    walk(data, ())
    if "app" not in data:
        problems.append(ManifestError(file, 1, "app", "missing required table [app]"))
    return sorted(problems, key=lambda p: (p.line, p.column))


def parse_manifest(text: str, path: Path) -> Manifest:
    """Parse and validate; raises the first ManifestError (see `check_manifest_text` for all)."""
    problems, data = check_manifest_text(text, str(path))
    if problems:
        first = problems[0]
        if len(problems) > 1:
            first.details = "\n".join(p.message for p in problems[1:])
        raise first
    app = data["app"]
    envs_data = data.get("env") or {name: {} for name in DEFAULT_ENVS}
    envs = {
        name: EnvConfig(name, {k: str(v) for k, v in (spec.get("vars") or {}).items()}, spec.get("sandbox", True))
        for name, spec in envs_data.items()
    }
    build = data.get("build", {})
    return Manifest(
        path=path,
        name=app["name"],
        runtime=app["runtime"],
        start=app["start"],
        port=app["port"],
        health=app.get("health", "/healthz"),
        health_timeout=app.get("health_timeout", 60),
        drain_seconds=app.get("drain_seconds", 2),
        keep_releases=app.get("keep_releases", 10),
        envs=envs,
        build=BuildConfig(build.get("trust_host_ca", True), build.get("ca_bundle"), build.get("install")),
        images=dict(data.get("images", {})),
    )


def check_manifest_text(text: str, file: str) -> tuple[list[ManifestError], dict[str, Any]]:
    """All problems of a manifest text (syntax or schema) and the parsed data (empty on syntax error)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(err))
        line, col = (int(m.group(1)), int(m.group(2))) if m else (1, 1)
        msg = re.sub(r"\s*\(at line.*\)$", "", str(err))
        return [ManifestError(file, line, "", f"TOML syntax error: {msg}", column=col)], {}
    return validate(data, text, file), data


def find_workspace(start: Path | None = None) -> Path:
    """The folder holding minicloud.toml, searching upward from `start` (default: cwd)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / MANIFEST_NAME).is_file():
            return folder
    raise ManifestNotFound(f"no {MANIFEST_NAME} in {here} or any parent folder",
                           hint="run in your app's folder, pass --workspace DIR, or create minicloud.toml")


def load_manifest(workspace: Path | None = None) -> Manifest:
    ws = find_workspace(workspace)
    path = ws / MANIFEST_NAME
    return parse_manifest(path.read_text(encoding="utf-8"), path)
