"""What the server knows about the environment, kept in memory and refreshed in the background.

Requests read `Index.snapshot` (an immutable value swapped whole), never the engine or the database.
A thread refreshes it at start, when asked (after commands, saves of the manifest or of ability
packages), on Docker events and on a timer; each refresh is persisted to
`.minicloud/index-<env>.json`, so a restarted server or a stopped environment still completes from
the last snapshot. When no engine answers, the refresh keeps the last tables and retries.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
REFRESH_SECONDS = 15.0
READER_NICENESS = 10  # the engine reader's, over the server's: behind it for the CPU, never starved (SCHED_IDLE would be)
# the pure-Python encoder: a thread writing a large index lets the event loop in between (json.dumps is
# one C call that holds the interpreter, ~30 ms for 2,000 tables)
_ENCODER = json.JSONEncoder(ensure_ascii=False)
_collector = {"pauses": 0, "frozen": False}
_collector_lock = threading.Lock()


@contextlib.contextmanager
def collector_paused():
    """While a refresh reads the engine: no automatic garbage collection. A schema of 2,000 tables is
    50,000 short-lived rows, whose allocations trigger full collections of the whole heap (~100 ms
    holding the interpreter while the user types); reference counting frees them anyway. After the
    first refresh, what lives then (modules, the snapshot) is frozen out of later collections."""
    with _collector_lock:
        _collector["pauses"] += 1
        gc.disable()
    try:
        yield
    finally:
        with _collector_lock:
            _collector["pauses"] -= 1
            if _collector["pauses"] == 0:
                if not _collector["frozen"]:
                    _collector["frozen"] = True
                    gc.freeze()
                gc.enable()


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]
    rows: int | None = None


@dataclass(frozen=True)
class Variable:
    name: str
    value: str  # masked when secret
    source: str
    secret: bool = False


NO_TRUST: tuple[dict, str | None] = ({}, None)


@dataclass(frozen=True)
class Snapshot:
    env: str
    app: str | None = None
    tables: dict[str, Table] = field(default_factory=dict)
    variables: dict[str, Variable] = field(default_factory=dict)
    granted: frozenset[str] = frozenset()
    signed_packages: tuple[str, ...] = ()  # labels of the valid packages (read by tests/test_startup.py)
    # cloud functions: name -> {runtime, has_code, live: the scheduler's view of it, when it runs}
    functions: dict[str, dict] = field(default_factory=dict)
    function_folders: tuple[str, ...] = ()  # folders under functions/ (with or without a manifest table)
    # the data API's collections: name -> {"count": n, "fields": {dotted path: JSON type}} (sampled live)
    collections: dict[str, dict] = field(default_factory=dict)
    # [data.collections.NAME] rules of the manifest: name -> {"read": rule, "write": rule}; None: no [data]
    collection_rules: dict[str, dict] | None = None
    # the platform keys trusted to sign ability packages, and the app id they must name: computed by
    # each refresh from the workspace's keys, never persisted (read from the keys on every start)
    trust: tuple[dict, str | None] = field(default=NO_TRUST, compare=False, repr=False)
    # the env's metrics as the engine reader last sent them (engine_view.read_pulse): live, routes, canary;
    # never persisted (stale metrics would mislead), and not compared (a pulse republishes nothing)
    pulse: dict = field(default_factory=dict, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"env": self.env, "app": self.app,
                "tables": {n: asdict(t) for n, t in self.tables.items()},
                "variables": {n: asdict(v) for n, v in self.variables.items()},
                "granted": sorted(self.granted), "signed_packages": list(self.signed_packages),
                "functions": self.functions, "function_folders": list(self.function_folders),
                "collections": self.collections}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        return cls(
            env=data["env"], app=data.get("app"),
            tables={n: Table(t["name"], tuple(tuple(c) for c in t["columns"]), t.get("rows"))
                    for n, t in data.get("tables", {}).items()},
            variables={n: Variable(**v) for n, v in data.get("variables", {}).items()},
            granted=frozenset(data.get("granted", ())), signed_packages=tuple(data.get("signed_packages", ())),
            functions=dict(data.get("functions", {})), function_folders=tuple(data.get("function_folders", ())),
            collections=dict(data.get("collections", {})),
        )


class Index:
    """The snapshot of one env of one app (workspace), and the thread that keeps it fresh; the server
    keeps one per app (apps.py), and each hears only its own app's container events."""

    def __init__(self, workspace: Path | None, env: str, on_change: Callable[[Snapshot], None] | None = None,
                 on_event: Callable[[str | None], None] | None = None,
                 on_pulse: Callable[[dict], None] | None = None) -> None:
        self.workspace = workspace
        self.env = env
        self.on_change = on_change
        self.on_event = on_event  # a container of the instance started, died or went (its env, if any)
        self.on_pulse = on_pulse  # the env's metrics, alerts or canary changed
        self._tables_digest: str | None = None  # of the tables the engine reader last sent (persisted)
        with collector_paused():  # a saved index of thousands of tables: frozen out of later collections
            self.snapshot = self._load() or Snapshot(env)
        self._saved: tuple | None = None  # what was persisted last (tables by identity, the rest by value)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._cloud = None
        self._local = None  # the engine-free view, until the cloud itself is loaded
        self._child = None  # the engine reader (engine_view.py), while it runs
        self._update = threading.RLock()  # held while the snapshot is computed and swapped
        self._local_at: float | None = None  # when the workspace's part was last read

    # ---- persistence
    @property
    def path(self) -> Path | None:
        return self.workspace / ".minicloud" / f"index-{self.env}.json" if self.workspace else None

    def _load(self) -> Snapshot | None:
        if self.path is None or not self.path.is_file():
            return None
        try:
            data = json.loads(self.path.read_text())
            # the engine reader sends the tables only when they differ from the ones with this digest
            self._tables_digest = data.get("tables_digest") if data.get("tables") else None
            return Snapshot.from_json(data)
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("ignoring unreadable index %s: %s", self.path, err)
            return None

    def _save(self, snap: Snapshot) -> None:
        saved = (snap.tables, (snap.env, snap.app, snap.variables, snap.granted, snap.signed_packages))
        if self.path is None or (self._saved is not None and self._saved[0] is saved[0]
                                 and self._saved[1] == saved[1]):
            return  # nothing new to persist
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(_ENCODER.iterencode({**snap.to_json(), "tables_digest": self._tables_digest})))
            tmp.replace(self.path)
            self._saved = saved

    # ---- the background work
    def start(self) -> None:
        for target, name in ((self._loop, "index-refresh"), (self._engine_child, "index-engine")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        child = self._child
        if child is not None:
            with contextlib.suppress(OSError):
                child.kill()

    def refresh_soon(self) -> None:
        """Read the workspace and ask the engine reader for a view now (after a command, a save)."""
        self._wake.set()
        child = self._child
        if child is not None and child.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                child.stdin.write("refresh\n")
                child.stdin.flush()

    def cloud(self):
        if self._cloud is None and self.workspace is not None:
            from deploy_bridge.cloud import Cloud

            self._cloud = Cloud(self.workspace)
        return self._cloud

    def local_view(self):
        """The engine-free part of the cloud (manifest, URL, variables): it imports without the
        Docker SDK, so that the first request after start-up does not wait for it."""
        if self._cloud is not None:
            return self._cloud
        if self._local is None and self.workspace is not None:
            from deploy_bridge.workspace import Workspace

            self._local = Workspace(self.workspace)
        return self._local

    def _loop(self) -> None:
        """The workspace's part (manifest, variables, packages): on a wake-up, and on a timer."""
        if self._local_at is not None:  # read at start-up already: not again while the user starts typing
            self._wake.wait(REFRESH_SECONDS)
        while not self._stop.is_set():
            self._wake.clear()
            try:
                before = self.snapshot
                snap = self.refresh_local()
                self._save(snap)
                if self.on_change is not None and snap != before:
                    self.on_change(snap)
            except Exception:  # noqa: BLE001 - the index must outlive any refresh failure
                log.exception("index refresh failed")
            self._wake.wait(REFRESH_SECONDS)

    def refresh_local(self) -> Snapshot:
        """What needs no engine (manifest, variables, ability packages): cheap, safe at start-up."""
        with self._update:  # one writer at a time: the engine reader's view is not lost under it
            return self._refresh_local()

    def _refresh_local(self) -> Snapshot:
        self._local_at = time.monotonic()
        snap = replace(self.snapshot, env=self.env)
        try:
            view = self.local_view()
        except Exception as err:  # noqa: BLE001 - a broken manifest: keep what we know
            log.info("no cloud for %s: %s", self.workspace, err)
            view = None
        if view is not None:
            snap = replace(snap, app=view.app)
            with contextlib.suppress(Exception):
                snap = replace(snap, variables={
                    v.name: Variable(v.name, v.value, v.source, v.secret) for v in view.injected_vars(self.env)})
            with contextlib.suppress(Exception):
                snap = self._functions(view, snap)
            with contextlib.suppress(Exception):
                data = view.manifest.data
                snap = replace(snap, collection_rules=dict(data.collections) if data is not None else None)
        snap = self._abilities(snap)
        self.snapshot = snap
        return snap

    def refresh(self) -> Snapshot:
        """A new snapshot; what cannot be read now (no engine, env stopped) is kept from the last one."""
        snap = self.refresh_local()
        cloud = None
        with contextlib.suppress(Exception):
            cloud = self.cloud()
        with collector_paused():
            if cloud is not None:
                snap = self._from_engine(cloud, snap)
            self.snapshot = snap
            self._save(snap)
        if self.on_change is not None:
            self.on_change(snap)
        return snap

    def _abilities(self, snap: Snapshot) -> Snapshot:
        if self.workspace is None:
            return replace(snap, trust=NO_TRUST)
        try:
            from codegen.abilities import granted_methods, load_abilities, workspace_trust
        except ImportError:
            return snap
        try:
            trust = workspace_trust(self.workspace, self.env)
        except Exception:  # noqa: BLE001 - no keys yet: every package is from an unknown key
            trust = NO_TRUST
        abilities, _errors = load_abilities(self.workspace / "abilities", *trust)
        return replace(snap, granted=frozenset(granted_methods(abilities)),
                       signed_packages=tuple(a.label for a in abilities), trust=trust)

    @staticmethod
    def _functions(view, snap: Snapshot) -> Snapshot:
        """The manifest's functions and the folders under functions/ (no engine needed)."""
        entry = {"nodejs": "index.js", "python": "main.py"}
        root = view.workspace / "functions"
        folders = tuple(sorted(p.name for p in root.iterdir() if p.is_dir())) if root.is_dir() else ()
        functions = {}
        for name, spec in view.manifest.functions.functions.items():
            old = snap.functions.get(name, {})
            functions[name] = {"runtime": spec.runtime, "has_code": (root / name / entry[spec.runtime]).is_file(),
                               **({"live": old["live"]} if "live" in old else {})}
        return replace(snap, functions=functions, function_folders=folders)

    def _from_engine(self, cloud, snap: Snapshot) -> Snapshot:
        """In-process read of the engine (the synchronous `refresh`; the server's threads use the child)."""
        from deploy_bridge.errors import MinicloudError

        from .engine_view import read_view

        try:
            return self.apply_view(snap, read_view(cloud, self.env))
        except MinicloudError:
            return snap

    @staticmethod
    def apply_view(snap: Snapshot, view: dict[str, Any]) -> Snapshot:
        """A snapshot with what the engine said (engine_view.py): tables when they changed, functions' live state."""
        if view.get("tables") is not None:
            read = {n: Table(n, tuple(tuple(c) for c in t["columns"]), t.get("rows")) for n, t in view["tables"].items()}
            # the same tables: the same dict, so that what was prepared from them stays valid
            snap = replace(snap, tables=snap.tables if read == snap.tables else read)
        if view.get("collections") is not None and view["collections"] != snap.collections:
            snap = replace(snap, collections=view["collections"])
        live = view.get("functions") or {}
        if snap.functions and live:
            snap = replace(snap, functions={name: {**fn, "live": live[name]} if name in live else fn
                                            for name, fn in snap.functions.items()})
        return snap

    # ---- the engine, read by a child process (engine_view.py)
    def _engine_child(self) -> None:
        """Run the engine reader and apply what it says; start it again if it ends (backoff)."""
        import subprocess
        import sys

        delay = 1.0
        while not self._stop.is_set() and self.workspace is not None:
            try:
                child = subprocess.Popen([sys.executable, "-m", "lsp_server.engine_view", str(self.workspace), self.env,
                                          self._tables_digest or ""],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                         text=True, bufsize=1)
            except OSError as err:
                log.warning("cannot start the engine reader: %s", err)
                self._stop.wait(30)
                continue
            # background work: behind the editor's requests for the CPU (its start-up, imports and the
            # engine's first answers, fell in the first seconds a user types; bench: completion_first_2s_ratio)
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, child.pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + READER_NICENESS))
            self._child = child
            try:
                for line in child.stdout:  # blocking reads: the interpreter is free meanwhile
                    if self._stop.is_set():
                        break
                    self._on_child_line(line)
            finally:
                with contextlib.suppress(OSError):
                    child.kill()
                child.wait()
                self._child = None
            self._stop.wait(delay)
            delay = min(delay * 2, 30.0)

    def _on_child_line(self, line: str) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return
        kind = message.get("kind")
        if kind == "event":
            self._wake.set()  # the local part too (a release may have come or gone)
            if self.on_event is not None:
                self.on_event(message.get("env"))
        elif kind == "view":
            if message.get("tables_digest"):
                self._tables_digest = message["tables_digest"]
            with collector_paused(), self._update:
                before = self.snapshot
                snap = self.apply_view(before, message)
                if snap.tables is before.tables and snap.functions == before.functions \
                        and snap.collections is before.collections:
                    if message.get("tables") is not None:  # the same tables, newly digested: keep the digest
                        self._saved = None
                        self._save(snap)
                    return  # what the server knew already (the usual case): nothing to republish
                self.snapshot = snap
                self._save(snap)
            if self.on_change is not None:
                self.on_change(snap)
        elif kind == "pulse":
            with self._update:
                self.snapshot = replace(self.snapshot, pulse=message)
            if self.on_pulse is not None:
                self.on_pulse(message)
        elif kind == "away":
            log.info("engine not read: %s", message.get("error"))
