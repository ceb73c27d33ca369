"""Plain results returned by the verbs; `to_json()` is what `--json` and the server return."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ContainerStatus:
    role: str
    name: str
    state: str  # running | exited | created | restarting | ...
    health: str | None  # healthy | unhealthy | None when not checked
    cpu_percent: float | None = None
    mem_bytes: int | None = None
    release: str | None = None


@dataclass
class Release:
    id: str  # sortable: YYYYmmddHHMMSS-<hash>
    image: str
    created: str  # ISO 8601
    current: bool = False


@dataclass
class EnvStatus:
    env: str
    app: str
    state: str  # running | degraded | stopped | not-built
    release: str | None
    url: str
    containers: list[ContainerStatus] = field(default_factory=list)
    releases: list[Release] = field(default_factory=list)
    # cloud functions: name -> version, instances (reserved, on_demand, busy, idle), queue, invocations, errors, p95_ms
    functions: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the data API's collections: [{"name", "count"}] (None: no [data], or its API does not answer)
    collections: list[dict[str, Any]] | None = None
    # a swarm env's app tasks: [{"id", "slot", "node", "state", "desired", "release", "error"}] (None: a local env)
    tasks: list[dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DeployResult:
    env: str
    app: str
    release: str
    previous: str | None
    url: str
    seconds: float
    canary: dict[str, Any] | None = None  # a grey release: its percent, state (running, promoted, aborted), why

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def format_log_line(time: str, role: str, release: str | None, line: str) -> str:
    return f"{time} {role}{' ' + release if release else ''} | {line}"


@dataclass
class LogLine:
    time: str  # ISO 8601, UTC
    role: str
    release: str | None
    line: str

    def to_json(self) -> dict[str, Any]:
        # written out, not `asdict`: a log flood calls this ten thousand times a second
        return {"time": self.time, "role": self.role, "release": self.release, "line": self.line}

    def to_text(self) -> str:
        """The one text form of a log line (CLI; the server and the VS Code client print the same)."""
        return format_log_line(self.time, self.role, self.release, self.line)


@dataclass
class InjectedVar:
    name: str
    value: str  # masked when secret
    source: str  # "minicloud" | "minicloud.toml [env.X.vars]" | ...
    secret: bool = False


@dataclass
class TableInfo:
    name: str
    columns: list[tuple[str, str]]  # (name, SQL type)
    rows: int | None = None


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
