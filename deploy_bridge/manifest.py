"""minicloud.toml: one schema for validation and for the language server's completions.

The schema is data (`SCHEMA`): tables, their keys, types, allowed values and docs. `load_manifest`
validates a file against it and reports every problem with file, line and key; the language server
walks the same tables to complete keys and values.
"""

from __future__ import annotations

import bisect
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ManifestError, ManifestNotFound, UnknownEnv
from .services import data_rules
from .services.alert_rules import check_rule, check_webhook

MANIFEST_NAME = "minicloud.toml"
# a DNS label (no '-' at the end): names become host names APP.ENV.localhost
NAME_RE = re.compile(r"^[a-z](?:[a-z0-9-]*[a-z0-9])?$")
# App and env names become parts of Docker container, network and volume names
# (`mc-INSTANCE-APP-ENV-ROLE-RELEASE`), of host names `APP.ENV.localhost` (a DNS label: at most 63
# characters) and the MariaDB database and user names derived from the app (see credentials.py;
# MariaDB: database names at most 64 characters, user names at most 80). The limits below keep a margin.
APP_NAME_MAX = 30
ENV_NAME_MAX = 20
VAR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RUNTIMES = ("nodejs", "python", "java")
# a Debian package name (Debian policy 5.6.1): checked by its form only, never looked up on the network,
# so the manifest is checked offline (and the names are safe to put in the build's apt-get command)
DEBIAN_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


class StringList(tuple):
    """The value of a "strings" field: a tuple that shows itself as TOML does (the default `[]` in docs)."""

    def __str__(self) -> str:
        return "[" + ", ".join(f'"{item}"' for item in self) + "]"


NO_STRINGS = StringList()
DEFAULT_ENVS = ("test", "prod")


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # "string" | "integer" | "boolean" | "strings" (an array of strings; `pattern` checks each)
    doc: str
    required: bool = False
    choices: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    default: Any = None
    example: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    max_length: int | None = None  # strings: at most this many characters
    check: Callable[[Any], str | None] | None = None  # a value of the right type: None, or what is wrong


def _check_data_rule(value: str) -> str | None:
    try:
        data_rules.parse(value, "rule")
    except ValueError as err:
        return str(err).removeprefix("rule: ")
    return None


def parse_duration(text: str) -> float | None:
    """5m, 90s, 1h (or plain seconds) -> seconds, from 10 s to 24 h; None otherwise."""
    units = {"s": 1, "m": 60, "h": 3600}
    text = str(text).strip()
    try:
        value = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        return None
    return value if 10 <= value <= 86400 else None


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


ENGINES = ("local", "swarm")
REGISTRY_RE = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")  # HOST[:PORT]: no scheme, no path
PLACEMENT_RE = re.compile(r"^[A-Za-z0-9_.-]+ *(==|!=) *[A-Za-z0-9_.:/-]+$")  # node.labels.zone==a


def _check_registry(value: str) -> str | None:
    return None if REGISTRY_RE.fullmatch(value) else \
        f"{value!r} is not HOST:PORT of a registry (no scheme, no path), e.g. \"10.0.0.5:5000\""


def _check_placement(value: list[str]) -> str | None:
    wrong = next((v for v in value if not PLACEMENT_RE.fullmatch(v)), None)
    return None if wrong is None else \
        f"{wrong!r} is not a constraint such as \"node.labels.zone==a\" or \"node.role!=manager\""


SERVER_KEYS = ("runtime", "start", "port")  # [app] keys of a server-ful app; a functions-only one has none
COLLECTION_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")  # the data API's (a table name in PostgreSQL)
FUNCTION_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,47}$")
FUNCTION_RUNTIMES = ("nodejs", "python")


def _function_fields(defaults: bool) -> tuple[Field, ...]:
    """What each function sets; [functions] gives the defaults of all (so only there do they have one)."""
    d = (lambda value: value) if defaults else (lambda value: None)
    return (
        Field("runtime", "string", "Runtime the function runs on.", choices=FUNCTION_RUNTIMES, default=d("nodejs"),
              example='"nodejs"'),
        Field("memory", "integer", "MB of memory per instance (enforced: past it the invocation fails).",
              default=d(256), minimum=32, maximum=4096, example="256"),
        Field("timeout", "integer", "Seconds an invocation may take; past it the caller gets 504.",
              default=d(10), minimum=1, maximum=900, example="10"),
        Field("concurrency", "integer", "Invocations one instance runs at once.", default=d(1), minimum=1,
              maximum=100, example="1"),
        Field("reserved", "integer", "Instances kept specialised at all times (taken first).", default=d(0),
              minimum=0, maximum=50, example="0"),
        Field("max_instances", "integer", "On-demand instances at most; past them requests queue.",
              default=d(20), minimum=1, maximum=200, example="20"),
        Field("keep_alive", "integer", "Seconds an idle instance stays with its function before it goes "
              "back to the pool.", default=d(120), minimum=1, maximum=86400, example="120"),
    )


SCHEMA: tuple[Table, ...] = (
    Table(
        "app",
        "The application: what runs and how minicloud knows it is healthy.",
        (
            Field("name", "string",
                  "App name; part of the URL https://NAME.ENV.localhost:8443, of container and database "
                  f"names. Lowercase letters, digits and '-', at most {APP_NAME_MAX} characters.",
                  required=True, pattern=NAME_RE, max_length=APP_NAME_MAX, example='"shop"'),
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
            Field("drain_seconds", "integer",
                  "Seconds the old release keeps running after the switch, at least (it runs longer while "
                  "requests to it are in flight, up to drain_timeout).", default=0, minimum=0, maximum=600,
                  example="0"),
            Field("drain_timeout", "integer",
                  "Seconds the old release is given to finish the requests in flight at a switch before it "
                  "is stopped.", default=30, minimum=1, maximum=3600, example="30"),
            Field("keep_releases", "integer", "How many release images to keep for rollback.", default=10,
                  minimum=1, maximum=100, example="10"),
        ),
    ),
    Table("env", "Environments, one table each: [env.test], [env.prod]. Names are lowercase letters, digits "
                 f"and '-', at most {ENV_NAME_MAX} characters (part of host and container names)."),
    Table(
        "env.*",
        "One environment (its own network, database, gateway routes and app).",
        (
            Field("sandbox", "boolean", "Run the sandbox open-platform gateway in this environment.",
                  default=True, example="true"),
            Field("engine", "string", "Where the env runs: \"local\" (containers on this machine's Docker engine) "
                  "or \"swarm\" (services on the Docker Swarm whose manager DOCKER_HOST names).",
                  choices=ENGINES, default="local", example='"local"'),
            Field("replicas", "integer", "App tasks on a swarm env (engine = \"swarm\").", default=1, minimum=1,
                  maximum=50, example="3"),
            Field("registry", "string", "HOST:PORT of the image registry every swarm node pulls from (engine = "
                  "\"swarm\").", check=_check_registry, example='"127.0.0.1:5000"'),
            Field("gateway_port", "integer", "The port this swarm env's HTTPS gateway publishes on the managers "
                  "(engine = \"swarm\"; default MINICLOUD_GATEWAY_PORT, 8443). Swarm envs on one swarm each need "
                  "their own.", minimum=1, maximum=65535, example="8444"),
            Field("placement", "strings", "Swarm placement constraints of the app's tasks, e.g. "
                  "\"node.labels.zone==a\" (engine = \"swarm\").", check=_check_placement, default=NO_STRINGS,
                  example='["node.labels.zone==a"]'),
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
            Field("packages", "strings",
                  "Debian packages installed for the dependency step only (compilers, headers, pkg-config), "
                  "from the same mirror as the base images, as a cached layer. They stay out of the image "
                  "that runs: name the shared libraries it needs in runtime_packages. Native Node modules: "
                  '["build-essential"]; mysqlclient: ["pkg-config", "default-libmysqlclient-dev", '
                  '"build-essential", "python3-dev"].',
                  pattern=DEBIAN_PACKAGE_RE, default=NO_STRINGS, example='["build-essential"]'),
            Field("runtime_packages", "strings",
                  "Debian packages installed into the image that runs (shared libraries the dependencies "
                  'link to, tools the app calls), e.g. ["libmariadb3"] for mysqlclient.',
                  pattern=DEBIAN_PACKAGE_RE, default=NO_STRINGS, example='["libmariadb3"]'),
        ),
    ),
    Table(
        "functions",
        "Cloud functions (code in functions/NAME/): the defaults of every function, and the pool.",
        (
            Field("pool", "integer", "Generic instances kept warm per runtime, holding no code.", default=2,
                  minimum=0, maximum=20, example="2"),
            *_function_fields(defaults=True),
        ),
    ),
    Table("functions.*", "One function: code in functions/NAME/ (index.js with exports.main, or main.py with "
          "def main); what it does not set comes from [functions].", _function_fields(defaults=False)),
    Table(
        "alerts",
        "Alert rules of every env of the app, evaluated every second by the instance's collector; firing and "
        "resolving are recorded (minicloud alerts ENV) and POSTed to the webhook. A rule reads METRIC OP VALUE "
        "[for DURATION]: METRIC 5xx|4xx (% of requests), p50|p95|p99 (ms|s), rps, cpu (% of one core), memory "
        "(MB|GB|MiB|GiB), restarts (in the last minute); OP > >= < <=; DURATION s|m|h.",
        (
            Field("error_rate", "string", "Share of 5xx (or 4xx) answers over the last 10 s.",
                  check=check_rule, example='"5xx > 1% for 1m"'),
            Field("latency", "string", "Request latency at the gateway over the last 10 s (p50, p95, p99).",
                  check=check_rule, example='"p95 > 500ms for 2m"'),
            Field("cpu", "string", "CPU of each app container, in % of one core.", check=check_rule,
                  example='"cpu > 80% for 5m"'),
            Field("memory", "string", "Memory of each app container.", check=check_rule,
                  example='"memory > 400MB for 1m"'),
            Field("restarts", "string", "Restarts of each app container in the last minute (crash loops).",
                  check=check_rule, example='"restarts > 0"'),
            Field("webhook", "string", "URL that gets a JSON POST when an alert fires or resolves (retried with "
                  "backoff when it fails).", check=check_webhook, example='"https://hooks.example.com/minicloud"'),
        ),
    ),
    Table("data", "The serverless data API of every env: documents in MongoDB syntax (on PostgreSQL), files and "
          "the user's login identity, at https://APP.ENV.localhost:PORT/cloud/v1/ for mini-program front ends, "
          "functions and the app (docs/data-api.md; SDKs: `minicloud codegen cloud-sdk`).",
          (
              Field("session_ttl", "integer", "Seconds a front end's session lasts after its login.", default=7200,
                    minimum=60, maximum=30 * 86400, example="7200"),
              Field("max_file_mb", "integer", "Largest file an upload may send, in MB.", default=10, minimum=1,
                    maximum=30, example="10"),
              Field("scanner", "string", "Your own scanner: every upload's bytes are POSTed there first; an answer "
                    '{"ok": false, "reason": "…"} rejects the file (text is also checked by the sandbox\'s '
                    "content-security capability).", check=check_webhook, example='"http://scanner.internal/scan"'),
          )),
    Table("data.collections", "The collections of the data API that have rules, one table each."),
    Table("data.collections.*", "Who may read and write one collection's documents, as a rule the data API "
          "enforces inside every query: `true`, `false`, `auth != null`, `doc.FIELD == auth.uid`, "
          "`doc.FIELD == 'text'`, with `&&`, `||` and parentheses. `_owner` is the uid that added a document. "
          "A collection without rules is the server's alone (functions and the app).",
          (
              Field("read", "string", "Which documents a signed-in user (or anyone) may read and count.",
                    check=_check_data_rule, example='"doc._owner == auth.uid"'),
              Field("write", "string", "Which documents a user may add, update and remove.",
                    check=_check_data_rule, example='"doc._owner == auth.uid"'),
          )),
    Table("deploy", "How `minicloud deploy ENV` releases (to every env of the app)."),
    Table("deploy.canary", "Every deploy a judged grey release: the new release gets `percent` of the users "
          "(sticky per user) for `judge`, then minicloud promotes it when its error rate is within 0.5 points of "
          "the serving release's and its p95 within 1.2×, else removes it. The first deploy of an env, and "
          "`minicloud deploy ENV --no-canary`, switch everyone at once. Also inline: "
          "`canary = { percent = 10, judge = \"5m\" }`.",
          (
              Field("percent", "integer", "Share of the users the new release gets while it is judged.",
                    required=True, minimum=1, maximum=99, example="10"),
              Field("judge", "string", "How long the canary is watched before the verdict (10s to 24h).",
                    default="5m", check=lambda v: None if parse_duration(v) is not None
                    else "expected a duration from 10s to 24h like 5m or 90s", example='"5m"'),
          )),
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
    if path[0] in ("env", "functions") and len(path) >= 2:
        generic = ".".join((path[0], "*", *path[2:]))
        return TABLES.get(generic)
    if path[:2] == ("data", "collections") and len(path) >= 3:  # a collection's name is the user's
        return TABLES.get(".".join(("data", "collections", "*", *path[3:])))
    return None


def schema_default(table: str, key: str) -> Any:
    """The default of `key` in schema table `table` (e.g. "app", "health"): its one definition."""
    fld = TABLES[table].field(key)
    if fld is None:
        raise KeyError(f"{table}.{key} is not in the schema")
    return fld.default


def _with_defaults(table: str, data: dict[str, Any]) -> dict[str, Any]:
    """The values of the schema fields of `table`: from `data`, else the schema's default."""
    return {f.name: data.get(f.name, f.default) for f in TABLES[table].fields}


# The dataclasses' defaults come from the schema (field names are the schema's keys).


@dataclass
class EnvConfig:
    name: str
    vars: dict[str, str] = field(default_factory=dict)
    sandbox: bool = schema_default("env.*", "sandbox")
    engine: str = schema_default("env.*", "engine")
    replicas: int = schema_default("env.*", "replicas")
    registry: str | None = None
    gateway_port: int | None = None
    placement: tuple[str, ...] = schema_default("env.*", "placement")


@dataclass(frozen=True)
class DataConfig:
    session_ttl: int = schema_default("data", "session_ttl")
    max_file_mb: int = schema_default("data", "max_file_mb")
    scanner: str | None = None
    collections: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> {"read": rule, "write": rule}


@dataclass(frozen=True)
class CanaryConfig:
    percent: int
    judge_seconds: float


@dataclass
class BuildConfig:
    trust_host_ca: bool = schema_default("build", "trust_host_ca")
    ca_bundle: str | None = schema_default("build", "ca_bundle")
    install: str | None = schema_default("build", "install")
    packages: tuple[str, ...] = schema_default("build", "packages")
    runtime_packages: tuple[str, ...] = schema_default("build", "runtime_packages")

    def __post_init__(self) -> None:
        self.packages = StringList(self.packages or ())
        self.runtime_packages = StringList(self.runtime_packages or ())


@dataclass(frozen=True)
class FunctionSpec:
    """One function, with [functions]'s defaults filled in."""

    name: str
    runtime: str
    memory: int
    timeout: int
    concurrency: int
    reserved: int
    max_instances: int
    keep_alive: int


@dataclass
class FunctionsConfig:
    pool: int = 2
    functions: dict[str, FunctionSpec] = field(default_factory=dict)

    def runtimes(self) -> list[str]:
        return sorted({f.runtime for f in self.functions.values()})


def _functions(data: dict[str, Any]) -> FunctionsConfig:
    defaults = _with_defaults("functions", data)
    specs = {}
    for name, own in data.items():
        if isinstance(own, dict):
            values = {k: (v if v is not None else defaults[k]) for k, v in _with_defaults("functions.*", own).items()}
            specs[name] = FunctionSpec(name=name, **values)
    return FunctionsConfig(pool=defaults["pool"], functions=specs)


@dataclass
class Manifest:
    path: Path
    name: str
    runtime: str | None  # None (with start and port): a workspace of functions alone, no server
    start: str | None
    port: int | None
    health: str = schema_default("app", "health")
    health_timeout: int = schema_default("app", "health_timeout")
    drain_seconds: int = schema_default("app", "drain_seconds")
    drain_timeout: int = schema_default("app", "drain_timeout")
    keep_releases: int = schema_default("app", "keep_releases")
    envs: dict[str, EnvConfig] = field(default_factory=dict)
    build: BuildConfig = field(default_factory=BuildConfig)
    images: dict[str, str] = field(default_factory=dict)
    functions: FunctionsConfig = field(default_factory=FunctionsConfig)
    alerts: dict[str, str] = field(default_factory=dict)  # [alerts]: rule name -> rule text, and the webhook
    canary: CanaryConfig | None = None  # [deploy] canary: every deploy judged as a grey release
    data: DataConfig | None = None  # [data]: the env's data API (documents, files, identity)

    @property
    def workspace(self) -> Path:
        return self.path.parent

    @property
    def has_server(self) -> bool:
        """Whether the workspace has a server-ful app (else only functions)."""
        return self.start is not None

    def env(self, name: str) -> EnvConfig:
        if name not in self.envs:
            known = ", ".join(sorted(self.envs)) or "none"
            raise UnknownEnv(f"unknown environment '{name}' for app '{self.name}' (known: {known})",
                             hint=f"add a table [env.{name}] to {self.path}")
        return self.envs[name]


# ---------------------------------------------------------------- locating keys in the text


_MLBASIC = re.compile(r'"""[^"\\]*(?:(?:\\.|"(?!""))[^"\\]*)*"""(?:"{1,2}(?!"))?', re.S)
_MLLITERAL = re.compile(r"'''[^']*(?:'(?!'')[^']*)*'''(?:'{1,2}(?!'))?")
_BASIC = re.compile(r'"[^"\\\n]*(?:\\.[^"\\\n]*)*"')
_LITERAL = re.compile(r"'[^'\n]*'")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_BLANK = re.compile(r"[ \t]*")
_SKIP = re.compile(r"(?:[ \t\r\n]+|#[^\n]*)*")  # whitespace, newlines and comments
_SCALAR = re.compile(r"""[^\s,\[\]{}#"'=]+""")  # numbers, booleans, dates: nothing to locate in them
_REST_OF_LINE = re.compile(r"[^\n]*")


class _Locator:
    """Maps table paths and keys to their line and columns in the TOML text (tomllib keeps no positions).

    A small tokenizer that follows the TOML structure in one pass: comments, the four kinds of
    strings (whose contents are skipped, never matched), bare, quoted and dotted keys, `[table]` and
    `[[array]]` headers, inline tables (keys inside them are located too) and arrays. Linear time: each
    step consumes at least one character and string bodies are skipped by one regex each. It runs
    after tomllib accepted the text; on anything unexpected it skips ahead instead of failing.
    """

    def __init__(self, text: str) -> None:
        self.tables: dict[tuple[str, ...], int] = {}
        self.keys: dict[tuple[str, ...], tuple[int, int, int]] = {}
        self._text = text
        self._newlines = [m.start() for m in re.finditer("\n", text)]
        self._scan()

    # ---- positions
    def _line_col(self, pos: int) -> tuple[int, int]:
        line = bisect.bisect_left(self._newlines, pos)  # newlines before pos
        start = self._newlines[line - 1] + 1 if line else 0
        return line + 1, pos - start + 1

    # ---- tokens
    def _string(self, pos: int) -> int | None:
        """End of the string starting at pos, or None if there is none."""
        text = self._text
        if text.startswith('"""', pos):
            m = _MLBASIC.match(text, pos)
        elif text.startswith("'''", pos):
            m = _MLLITERAL.match(text, pos)
        elif text.startswith('"', pos):
            m = _BASIC.match(text, pos)
        elif text.startswith("'", pos):
            m = _LITERAL.match(text, pos)
        else:
            return None
        return m.end() if m else None

    def _key(self, pos: int) -> tuple[tuple[str, ...], int, int] | None:
        """A (dotted) key at pos: its parts, where it starts and where it ends; None if none is there."""
        text = self._text
        parts: list[str] = []
        start = end = pos
        while True:
            if text.startswith(('"', "'"), pos):
                m = _BASIC.match(text, pos) if text[pos] == '"' else _LITERAL.match(text, pos)
                if m is None:
                    return None
                parts.append(_unquote(m.group()))
            else:
                m = _BARE_KEY.match(text, pos)
                if m is None:
                    return None
                parts.append(m.group())
            end = m.end()
            pos = _BLANK.match(text, end).end()
            if not text.startswith(".", pos):
                return tuple(parts), start, end
            pos = _BLANK.match(text, pos + 1).end()

    # ---- structure
    def _scan(self) -> None:
        text, n = self._text, len(self._text)
        current: tuple[str, ...] = ()  # the table of the last header
        # one frame per open inline table ("{", its path) or array ("[", None); a path of None: inside an
        # array, where nothing is located
        stack: list[tuple[str, tuple[str, ...] | None]] = []
        expect = True  # a key (statement, inline table) or an element (array) comes next
        pos = 0
        while pos < n:
            pos = (_SKIP if stack else _BLANK).match(text, pos).end()
            if pos >= n:
                break
            ch = text[pos]
            if not stack:
                if ch in "\r\n#":  # end of the statement: its comment and newline
                    pos = _REST_OF_LINE.match(text, pos).end() + 1
                    expect = True
                elif not expect:  # stray text after a value, e.g. the time of `1979-05-27 07:32:00`
                    pos = self._skip_token(pos)
                elif ch == "[":
                    pos, current = self._header(pos, current)
                else:
                    pos, expect = self._key_value(pos, current, stack)
                continue
            kind, path = stack[-1]
            if ch in "]}":
                stack.pop()
                pos, expect = pos + 1, False
            elif ch == ",":
                pos, expect = pos + 1, True
            elif not expect:
                pos = self._skip_token(pos)
            elif kind == "{":
                pos, expect = self._key_value(pos, path, stack)
            else:
                depth = len(stack)
                pos = self._value(pos, None, stack)
                expect = len(stack) > depth

    def _key_value(self, pos: int, base: tuple[str, ...] | None,
                   stack: list[tuple[str, tuple[str, ...] | None]]) -> tuple[int, bool]:
        """`key = value` at pos: locate the key, skip or open the value; (where to go on, expect)."""
        text = self._text
        key = self._key(pos)
        if key is None:  # not a key after all: skip the line (or one character inside an inline table)
            return (_REST_OF_LINE.match(text, pos).end() if not stack else pos + 1), not stack
        parts, start, end = key
        path = None if base is None else (*base, *parts)
        if path is not None:
            self._add_key(path, start, end)
        pos = _BLANK.match(text, end).end()
        if text.startswith("=", pos):
            pos = _BLANK.match(text, pos + 1).end()
        depth = len(stack)
        pos = self._value(pos, path, stack)
        return pos, len(stack) > depth

    def _value(self, pos: int, path: tuple[str, ...] | None, stack: list[tuple[str, tuple[str, ...] | None]]) -> int:
        """Skip the value at pos, or open its inline table or array on the stack; where scanning goes on."""
        text = self._text
        if pos >= len(text):
            return pos
        if text[pos] == "{":
            if path is not None:
                self.tables.setdefault(path, self._line_col(pos)[0])
            stack.append(("{", path))
            return pos + 1
        if text[pos] == "[":
            stack.append(("[", None))
            return pos + 1
        if text[pos] in "]},\r\n#":
            return pos  # no value here: the caller's structure goes on
        return self._skip_token(pos)

    def _skip_token(self, pos: int) -> int:
        """The end of the string or scalar at pos (at least one character on)."""
        end = self._string(pos)
        if end is None:
            m = _SCALAR.match(self._text, pos)
            end = m.end() if m else pos
        return max(end, pos + 1)

    def _header(self, pos: int, current: tuple[str, ...]) -> tuple[int, tuple[str, ...]]:
        """`[a.b]` or `[[a.b]]` at pos: the new current table; scanning goes on after the brackets."""
        text = self._text
        double = text.startswith("[[", pos)
        key = self._key(_BLANK.match(text, pos + (2 if double else 1)).end())
        if key is None:
            return _REST_OF_LINE.match(text, pos).end(), current
        path, _, end = key
        line = self._line_col(pos)[0]
        for n in range(1, len(path) + 1):
            self.tables.setdefault(path[:n], line)
        close = _BLANK.match(text, end).end()
        return close + (2 if double and text.startswith("]]", close) else 1), path

    def _add_key(self, path: tuple[str, ...], start: int, end: int) -> None:
        line, col = self._line_col(start)
        for n in range(1, len(path)):
            self.tables.setdefault(path[:n], line)
        self.keys.setdefault(path, (line, col, col + (end - start)))

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


def _unquote(raw: str) -> str:
    if raw.startswith("'"):
        return raw[1:-1]
    try:
        return next(iter(tomllib.loads(f"{raw} = 0")))
    except (tomllib.TOMLDecodeError, StopIteration):
        return raw[1:-1]


# ---------------------------------------------------------------- validation


def _check_value(fld: Field, value: Any) -> str | None:
    if fld.kind == "strings":
        return _check_strings(fld, value)
    kinds = {"string": str, "integer": int, "boolean": bool}
    expected = kinds[fld.kind]
    if fld.kind == "integer" and isinstance(value, bool) or not isinstance(value, expected):
        return f"expected {fld.kind}, got {_toml_kind(value)}"
    if fld.choices and value not in fld.choices:
        return f"must be one of {', '.join(fld.choices)}; got {value!r}"
    if fld.max_length is not None and len(value) > fld.max_length:
        return (f"is {len(value)} characters long; at most {fld.max_length} allowed "
                "(it becomes part of host, container and database names)")
    if fld.pattern is not None and not fld.pattern.match(value):
        return f"{value!r} does not match {fld.pattern.pattern}"
    if fld.minimum is not None and value < fld.minimum:
        return f"must be at least {fld.minimum}"
    if fld.maximum is not None and value > fld.maximum:
        return f"must be at most {fld.maximum}"
    if fld.check is not None:
        return fld.check(value)
    return None


def _check_strings(fld: Field, value: Any) -> str | None:
    if not isinstance(value, list):
        return f"expected an array of strings, got {_toml_kind(value)} (e.g. {fld.name} = {fld.example})"
    for i, item in enumerate(value):
        if not isinstance(item, str):
            return f"item {i + 1} is {_toml_kind(item)}; expected a string"
        if fld.pattern is not None and not fld.pattern.match(item):
            return (f"{item!r} is not a Debian package name (lowercase letters, digits, '+', '-', '.'; "
                    "at least two characters)")
    if fld.check is not None:
        return fld.check(value)
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
                    report(here, "environment names are lowercase letters, digits and '-' (not at the end)")
                elif spec.path == "env" and len(key) > ENV_NAME_MAX:
                    report(here, f"environment name is {len(key)} characters long; at most {ENV_NAME_MAX} "
                                 "allowed (it becomes part of host, container and database names)")
                elif spec.path == "data.collections" and not COLLECTION_NAME_RE.match(key):
                    report(here, "collection names are letters, digits and '_', starting with a letter or '_' "
                                 "(at most 63)")
                elif spec.path == "functions" and not FUNCTION_NAME_RE.match(key):
                    report(here, "function names are letters, digits, '_' and '-', starting with a letter "
                                 "(at most 48)")
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
                if fld.required and fld.name not in table and not (
                        spec.path == "app" and fld.name in SERVER_KEYS and functions_only):
                    report(path, f"missing required key '{fld.name}'")

    # a workspace of functions alone has no server: [app] then needs only its name
    functions_only = isinstance(data.get("functions"), dict) and any(
        isinstance(v, dict) for v in data["functions"].values()) and not any(
        k in (data.get("app") or {}) for k in SERVER_KEYS)
    walk(data, ())
    for name, env in (data.get("env") or {}).items():
        if isinstance(env, dict) and "gateway_port" in env and env.get("engine", "local") != "swarm":
            report(("env", name, "gateway_port"), "gateway_port is for swarm envs (engine = \"swarm\"): a local env is "
                                                  "served by this machine's gateway on MINICLOUD_GATEWAY_PORT")
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
    envs_data = data.get("env") or {name: {} for name in DEFAULT_ENVS}
    envs = {
        name: EnvConfig(name, {k: str(v) for k, v in (spec.get("vars") or {}).items()},
                        **_with_defaults("env.*", spec))
        for name, spec in envs_data.items()
    }
    return Manifest(
        path=path,
        **_with_defaults("app", data["app"]),
        envs=envs,
        build=BuildConfig(**_with_defaults("build", data.get("build", {}))),
        images=dict(data.get("images", {})),
        functions=_functions(data.get("functions", {})),
        alerts=dict(data.get("alerts", {})),
        canary=_canary(data.get("deploy", {}).get("canary")),
        data=_data(data.get("data")),
    )


def _data(spec: dict | None) -> DataConfig | None:
    if spec is None:
        return None
    collections = {name: {k: str(v) for k, v in rules.items()} for name, rules in (spec.get("collections") or {}).items()}
    return DataConfig(**_with_defaults("data", {k: v for k, v in spec.items() if k != "collections"}),
                      collections=collections)


def _canary(spec: dict | None) -> CanaryConfig | None:
    if not spec:
        return None
    return CanaryConfig(int(spec["percent"]), parse_duration(spec.get("judge", "5m")) or 300.0)


def check_manifest_text(text: str, file: str) -> tuple[list[ManifestError], dict[str, Any]]:
    """All problems of a manifest text (syntax or schema) and the parsed data (empty on syntax error)."""
    text = text.removeprefix("\ufeff")  # a UTF-8 byte order mark, as some editors write one
    if not text.strip():
        return [ManifestError(file, 1, "", "the file is empty; it needs at least an [app] table with "
                                           "name, runtime, start and port")], {}
    try:
        data = tomllib.loads(text)
    except RecursionError:
        return [ManifestError(file, 1, "", "TOML nested too deeply")], {}
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


def read_manifest_text(path: Path) -> str:
    """The text of a manifest file; a ManifestError (not a traceback) if it is unreadable or not UTF-8."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ManifestError(str(path), 1, "", f"cannot read the file: {err.strerror or err}") from None
    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark: accepted, not part of the text
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line_start = raw.rfind(b"\n", 0, err.start) + 1
        line = raw.count(b"\n", 0, err.start) + 1
        column = len(raw[line_start:err.start].decode("utf-8", errors="replace")) + 1
        raise ManifestError(str(path), line, "", f"not UTF-8: byte 0x{raw[err.start]:02x} at column {column}; "
                                                 "save the file as UTF-8",
                            column=column, end_column=column + 1) from None


def load_manifest(workspace: Path | None = None) -> Manifest:
    ws = find_workspace(workspace)
    path = ws / MANIFEST_NAME
    return parse_manifest(read_manifest_text(path), path)
