"""The collector: metrics and alerts of one minicloud instance.

    python3 -m deploy_bridge.services.collector --instance NAME --data /metrics --access /access \
        --listen IP:PORT --edge CONTAINER

One per instance, beside the gateway and the keeper. It
- tails the gateway's JSON access log (`/access/access.log`: one line per proxied request, with the
  upstream container, status, request and upstream time) and aggregates it into 10 s buckets per
  (app, env, role, release) in SQLite (`/metrics/metrics.db`), 24 h kept; the read position is committed
  with the buckets, so a restart neither loses nor counts twice a request; it rotates the log past
  ROTATE_BYTES (rename, then the gateway's nginx reopens on SIGUSR1 sent through the engine);
- samples the CPU, memory and restarts of the instance's containers every SAMPLE_SECONDS (the engine's
  one-shot stats; restarts from its events), stored on the same 10 s clock;
- evaluates the alert rules the host writes per app and env (`/metrics/rules/APP.ENV.json`, from
  `[alerts]` at `minicloud env build`) every EVAL_SECONDS, records firing and resolving in SQLite and
  POSTs them to the webhook from threads of their own, retried with backoff (a failing or slow
  webhook delays nothing else);
- serves Prometheus' text format on /metrics (routed by the gateway as https://metrics.localhost:PORT).

A swarm env has a collector of its own (`--only APP.ENV`, rules from `--rules`; swarm_metrics.py): its
gateway logs `tasks.SERVICE` and the address of the task that answered, which it maps to the task's labels
through the manager's task list.

It runs in the sandbox image with the engine's socket (whoever controls it controls the engine) and
the host's network (webhooks to 127.0.0.1 reach the host), listening only on the address of the
engine's default bridge that the gateway is on. Standard library only.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import heapq
import http.server
import itertools
import json
import os
import sqlite3
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict, deque
from pathlib import Path

from .alert_rules import HTTP_METRICS, LOOKBACK_SECONDS, RESTART_LOOKBACK_SECONDS, Rule, format_value
from .engine_api import Engine, survive
from .histogram import BOUNDS_MS, bin_of, hist_quantile

BUCKET_SECONDS = 10
RETENTION_SECONDS = 24 * 3600
ALERT_RETENTION_SECONDS = 7 * 24 * 3600
SAMPLE_SECONDS = 2.0
# the host's cgroup tree, mounted read-only: CPU and memory read from the kernel's counters, where the
# engine's stats API would cost it work for every sample (and the gateway's throughput with it)
CGROUP_ROOT = Path(os.environ.get("MINICLOUD_CGROUP_ROOT", "/host/cgroup"))


def cgroup_usage(container_id: str) -> tuple[int, int] | None:
    """(CPU nanoseconds used, memory bytes less the page cache) of a container, from its cgroup files
    (cgroup v1 or v2, Docker's cgroupfs or systemd driver); None when they cannot be read."""
    candidates = [  # (cpu file, memory usage file, memory stat file, v2)
        (CGROUP_ROOT / "cpuacct" / "docker" / container_id / "cpuacct.usage",
         CGROUP_ROOT / "memory" / "docker" / container_id / "memory.usage_in_bytes",
         CGROUP_ROOT / "memory" / "docker" / container_id / "memory.stat", False),
        (CGROUP_ROOT / "cpuacct" / "system.slice" / f"docker-{container_id}.scope" / "cpuacct.usage",
         CGROUP_ROOT / "memory" / "system.slice" / f"docker-{container_id}.scope" / "memory.usage_in_bytes",
         CGROUP_ROOT / "memory" / "system.slice" / f"docker-{container_id}.scope" / "memory.stat", False),
        (CGROUP_ROOT / "system.slice" / f"docker-{container_id}.scope" / "cpu.stat",
         CGROUP_ROOT / "system.slice" / f"docker-{container_id}.scope" / "memory.current",
         CGROUP_ROOT / "system.slice" / f"docker-{container_id}.scope" / "memory.stat", True),
        (CGROUP_ROOT / "docker" / container_id / "cpu.stat", CGROUP_ROOT / "docker" / container_id / "memory.current",
         CGROUP_ROOT / "docker" / container_id / "memory.stat", True),
    ]
    for cpu_file, mem_file, stat_file, v2 in candidates:
        try:
            cpu_text, mem_text = cpu_file.read_text(), mem_file.read_text()
        except OSError:
            continue
        try:
            stats = dict(line.split() for line in stat_file.read_text().splitlines() if line.count(" ") == 1)
        except OSError:
            stats = {}
        if v2:
            used = int(dict(line.split() for line in cpu_text.splitlines())["usage_usec"]) * 1000
            cache = int(stats.get("inactive_file", 0))
        else:
            used = int(cpu_text.strip())
            cache = int(stats.get("total_inactive_file", stats.get("cache", 0)))
        return used, max(0, int(mem_text.strip()) - cache)
    return None
EVAL_SECONDS = 0.5
TAIL_SECONDS = 0.25
COMMIT_SECONDS = 1.0
GRACE_SECONDS = 15  # a bucket stays in memory this long after it ends (lines come up to ~1 s late)
ROTATE_BYTES = 64 * 2**20
WEBHOOK_TRIES = 10
WEBHOOK_TIMEOUT = 5.0
WEBHOOK_MAX_DELAY = 60.0
ROUTE_BUCKET_SECONDS = 60  # per-route series (the editor's hover on a handler): a minute is fine enough
ROUTE_PATHS_MAX = 300  # distinct paths of one env per minute; past it, "(other)": a scan must not grow the store
ALERT_ROLES = ("app", "functions")  # the user's code: the sandbox platform and the gateway's own answers are not
PROM_BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

SCHEMA = """
CREATE TABLE IF NOT EXISTS http (
    ts INTEGER NOT NULL, app TEXT NOT NULL, env TEXT NOT NULL, role TEXT NOT NULL, release TEXT NOT NULL,
    requests INTEGER NOT NULL, s4xx INTEGER NOT NULL, s5xx INTEGER NOT NULL,
    p50 REAL, p95 REAL, p99 REAL, latency_sum REAL NOT NULL, upstream_sum REAL NOT NULL, hist TEXT NOT NULL,
    PRIMARY KEY (ts, app, env, role, release));
CREATE TABLE IF NOT EXISTS containers (
    ts INTEGER NOT NULL, container TEXT NOT NULL, app TEXT, env TEXT, role TEXT, release TEXT,
    cpu REAL, memory INTEGER, restarts INTEGER NOT NULL, PRIMARY KEY (ts, container));
CREATE TABLE IF NOT EXISTS container_now (
    container TEXT PRIMARY KEY, ts REAL NOT NULL, app TEXT, env TEXT, role TEXT, release TEXT,
    cpu REAL, memory INTEGER, restarts INTEGER NOT NULL, state TEXT);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, app TEXT NOT NULL, env TEXT NOT NULL,
    name TEXT NOT NULL, rule TEXT NOT NULL, subject TEXT NOT NULL, state TEXT NOT NULL, value REAL,
    shown TEXT, since REAL, webhook TEXT, delivered INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT);
CREATE TABLE IF NOT EXISTS routes (
    ts INTEGER NOT NULL, app TEXT NOT NULL, env TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL,
    requests INTEGER NOT NULL, s4xx INTEGER NOT NULL, s5xx INTEGER NOT NULL, hist TEXT NOT NULL,
    PRIMARY KEY (ts, app, env, method, path));
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT);
CREATE INDEX IF NOT EXISTS http_env ON http (app, env, ts);
CREATE INDEX IF NOT EXISTS containers_env ON containers (app, env, ts);
CREATE INDEX IF NOT EXISTS alerts_env ON alerts (app, env, at);
CREATE INDEX IF NOT EXISTS routes_env ON routes (app, env, ts);
"""


def log(message: str) -> None:
    print(f"collector: {message}", flush=True)


def open_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=10, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    return db


# ------------------------------------------------------------------ latency histograms
def exact_quantile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


class Bucket:
    """One 10 s bucket of one series: counts, latency sum, a histogram and (while complete) the raw times."""

    __slots__ = ("requests", "s4xx", "s5xx", "latency_sum", "upstream_sum", "hist", "raw", "dirty")

    def __init__(self) -> None:
        self.requests = self.s4xx = self.s5xx = 0
        self.latency_sum = self.upstream_sum = 0.0
        self.hist = [0] * (len(BOUNDS_MS) + 1)
        self.raw: list[float] | None = []  # None once the bucket holds requests not in memory (a restart)
        self.dirty = False

    @classmethod
    def from_row(cls, row: tuple) -> Bucket:
        b = cls()
        b.requests, b.s4xx, b.s5xx, b.latency_sum, b.upstream_sum = row[:5]
        for key, n in json.loads(row[5]).items():
            b.hist[int(key)] = n
        b.raw = None
        return b

    def add(self, status: int, ms: float, upstream_ms: float) -> None:
        self.requests += 1
        if 400 <= status < 500:
            self.s4xx += 1
        elif status >= 500:
            self.s5xx += 1
        self.latency_sum += ms
        self.upstream_sum += upstream_ms
        self.hist[bin_of(ms)] += 1
        if self.raw is not None:
            self.raw.append(ms)
        self.dirty = True

    def quantiles(self) -> tuple[float | None, float | None, float | None]:
        if self.raw is not None:
            ordered = sorted(self.raw)
            return exact_quantile(ordered, 0.5), exact_quantile(ordered, 0.95), exact_quantile(ordered, 0.99)
        return hist_quantile(self.hist, 0.5), hist_quantile(self.hist, 0.95), hist_quantile(self.hist, 0.99)

    def hist_json(self) -> str:
        return json.dumps({str(i): n for i, n in enumerate(self.hist) if n}, separators=(",", ":"))


class Second:
    """What the alert rules read: one second of an env's requests."""

    __slots__ = ("requests", "s4xx", "s5xx", "hist")

    def __init__(self) -> None:
        self.requests = self.s4xx = self.s5xx = 0
        self.hist = [0] * (len(BOUNDS_MS) + 1)


# ------------------------------------------------------------------ the access log
class Tail:
    """Follows a file across rotations (rename + reopen), from a saved (inode, offset)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = None
        self.inode = 0
        self.offset = 0
        self.rest = b""
        self.eof_since: float | None = None

    def resume(self, inode: int, offset: int) -> None:
        rotated = self.path.with_name(self.path.name + ".1")
        for candidate in (self.path, rotated):
            with contextlib.suppress(OSError):
                if inode and os.stat(candidate).st_ino == inode:
                    self._open(candidate, min(offset, os.stat(candidate).st_size))
                    return
        self._open(self.path, 0)

    def _open(self, path: Path, offset: int) -> None:
        if self.file is not None:
            self.file.close()
        self.file = None
        self.rest = b""
        try:
            f = open(path, "rb")  # noqa: SIM115 - kept open across reads
        except OSError:
            return
        f.seek(offset)
        self.file, self.inode, self.offset = f, os.fstat(f.fileno()).st_ino, offset

    def read(self) -> list[bytes]:
        if self.file is None:
            self._open(self.path, 0)
            if self.file is None:
                return []
        data = self.file.read(8 * 2**20)
        if data:
            self.eof_since = None
            data, self.rest = self.rest + data, b""
            cut = data.rfind(b"\n") + 1
            self.rest = data[cut:]
            self.offset += cut
            self.file.seek(self.offset + len(self.rest))
            return data[:cut].splitlines()
        now = time.monotonic()
        self.eof_since = self.eof_since or now
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino != self.inode and now - self.eof_since > 2.0:
                self._open(self.path, 0)  # rotated, and the gateway writes the new file
        return []

    def lag(self) -> int:
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self.inode:
                return max(0, os.stat(self.path).st_size - self.offset)
        return 0


# ------------------------------------------------------------------ the collector
class Collector:
    def __init__(self, engine: Engine, instance: str, data: Path, access: Path, edge: str,
                 only: str | None = None, rules: Path | None = None) -> None:
        self.engine, self.instance, self.data, self.edge = engine, instance, data, edge
        self.rules_folder = rules or data / "rules"
        # the containers it samples: the instance's, or (a swarm env's own collector, `only` APP.ENV) one env's
        app, _, env = (only or "").rpartition(".")
        self.filters = [f"minicloud.instance={instance}",
                        *([f"minicloud.app={app}", f"minicloud.env={env}"] if only else [])]
        self.tasks_at: dict[str, dict] = {}  # a swarm task's address -> its labels (the gateway logs the address)
        self.tasks_refreshed = 0.0
        self.db = open_db(data / "metrics.db")
        self.lock = threading.RLock()  # the database and the in-memory state
        self.tail = Tail(access / "access.log")
        self.buckets: dict[tuple, Bucket] = {}
        self.route_buckets: dict[tuple, Bucket] = {}  # (minute, app, env, method, path)
        self.route_paths: dict[tuple, set[str]] = {}  # (minute, app, env) -> the paths counted
        self.seconds: dict[tuple[str, str], dict[int, Second]] = defaultdict(dict)
        self.names: dict[str, dict] = {}  # container name -> {"id", app, env, role, release}
        self.names_refreshed = 0.0
        self.ids: dict[str, str] = {}  # id -> name
        # Prometheus counters since the collector started
        self.codes: dict[tuple, int] = defaultdict(int)
        self.prom_hist: dict[tuple, list] = {}
        # containers
        self.samples: dict[str, dict] = {}  # name -> latest {"cpu", "memory", "state", ...}
        self.previous_cpu: dict[str, tuple[int, int, int]] = {}
        self.bucket_cpu: dict[str, list[float]] = defaultdict(list)
        self.restarts_base: dict[str, int] = {}
        self.restart_times: dict[str, deque[float]] = defaultdict(deque)
        self.started: set[str] = set()
        self.stopped_on_purpose: set[str] = set()
        self.died: set[str] = set()
        # alerts
        self.rules: dict[tuple[str, str], tuple[list[Rule], str | None]] = {}
        self.rules_stamp: dict[str, float] = {}
        self.alert_state: dict[tuple, dict] = {}
        self.outbox: list = []
        self.outbox_seq = itertools.count()
        self.outbox_wake = threading.Condition()
        self.lines = 0
        self.skipped = 0

    # -------------------------------------------------------------- containers' labels
    def refresh_names(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.names_refreshed < 2.0:
            return
        self.names_refreshed = now
        found = self.engine.containers(self.filters)
        with self.lock:
            for info in self.names.values():
                info["state"] = "removed"  # kept: the access log may still name it
            for c in found:
                labels = c.get("Labels") or {}
                info = {"id": c["Id"], "app": labels.get("minicloud.app", ""), "env": labels.get("minicloud.env", ""),
                        "role": labels.get("minicloud.role", ""), "release": labels.get("minicloud.release", "-"),
                        "state": c.get("State", "")}
                for name in c.get("Names") or []:
                    self.names[name.lstrip("/")] = info
                    self.ids[c["Id"]] = name.lstrip("/")

    def series_of(self, record: dict) -> tuple[str, str, str, str] | None:
        """(app, env, role, release) of one access log record; None: not an env's request."""
        upstream = record.get("up") or ""
        if upstream.startswith("tasks."):  # a swarm service: the task that answered is the address logged
            info = self.task_at((record.get("ua") or "").split(",")[-1].strip().rsplit(":", 1)[0])
            if info is None:
                return None
            return info["app"], info["env"], info["role"], info["release"]
        if upstream:
            name = upstream.rsplit(":", 1)[0]
            info = self.names.get(name)
            if info is None and not name.replace(".", "").isdigit():
                self.refresh_names()
                info = self.names.get(name)
            if info is None or not info["app"]:
                return None
            return info["app"], info["env"], info["role"], info["release"] or "-"
        host = record.get("host") or ""  # answered by the gateway itself (a stopped env's 503)
        role = "gateway"
        if host.startswith("openapi."):
            host, role = host[len("openapi."):], "sandbox"
        parts = host.split(".")
        if len(parts) == 3 and parts[2] == "localhost":
            return parts[0], parts[1], role, "-"
        return None

    def task_at(self, address: str) -> dict | None:
        """The labels of the swarm task that has (or last had) `address` on the env's network."""
        if address and address not in self.tasks_at and time.monotonic() - self.tasks_refreshed > 2.0:
            self.tasks_refreshed = time.monotonic()
            status, tasks = self.engine.call("GET", "/tasks")
            wanted = dict(f.split("=", 1) for f in self.filters)
            # oldest first, so that the newest task with an address (one reused after a task went) wins
            for task in sorted(tasks if status == 200 and isinstance(tasks, list) else [],
                               key=lambda t: (t.get("Status", {}).get("State") == "running", t.get("UpdatedAt", ""))):
                labels = ((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Labels") or {}
                if any(labels.get(k) != v for k, v in wanted.items()):
                    continue
                info = {"app": labels.get("minicloud.app", ""), "env": labels.get("minicloud.env", ""),
                        "role": labels.get("minicloud.role", ""), "release": labels.get("minicloud.release", "-")}
                for attachment in task.get("NetworksAttachments") or []:
                    for cidr in attachment.get("Addresses") or []:
                        self.tasks_at[cidr.split("/")[0]] = info
        return self.tasks_at.get(address)

    # -------------------------------------------------------------- the access log
    def resume(self) -> None:
        rows = dict(self.db.execute("SELECT key, value FROM state").fetchall())
        self.tail.resume(int(rows.get("inode", 0)), int(rows.get("offset", 0)))
        log(f"reading {self.tail.path} from byte {self.tail.offset}")

    def ingest(self, lines: list[bytes]) -> None:
        for raw in lines:
            try:
                record = json.loads(raw)
                t = float(record["t"])
                status = int(record["status"])
                ms = float(record["rt"]) * 1000
            except (ValueError, KeyError, TypeError):
                self.skipped += 1
                continue
            if record.get("addr") == "127.0.0.1":
                continue  # minicloud's own probes, from inside the gateway
            series = self.series_of(record)
            if series is None:
                continue
            self.lines += 1
            upstream_ms = 0.0
            with contextlib.suppress(ValueError):
                upstream_ms = sum(float(x) for x in str(record.get("urt", "")).split(",") if x.strip() not in ("", "-")) * 1000
            app, env, role, release = series
            key = (int(t // BUCKET_SECONDS) * BUCKET_SECONDS, app, env, role, release)
            bucket = self.buckets.get(key)
            if bucket is None:
                bucket = self.buckets[key] = self._stored_bucket(key)
            bucket.add(status, ms, upstream_ms)
            if role == "app":
                self._add_route(int(t), app, env, str(record.get("m") or "-"), str(record.get("path") or "/"),
                                status, ms)
            if role in ALERT_ROLES:
                sec = self.seconds[(app, env)].get(int(t))
                if sec is None:
                    sec = self.seconds[(app, env)][int(t)] = Second()
                sec.requests += 1
                if 400 <= status < 500:
                    sec.s4xx += 1
                elif status >= 500:
                    sec.s5xx += 1
                sec.hist[bin_of(ms)] += 1
            self.codes[(app, env, role, release, str(status))] += 1
            prom = self.prom_hist.get((app, env, role, release))
            if prom is None:
                prom = self.prom_hist[(app, env, role, release)] = [[0] * (len(PROM_BOUNDS_MS) + 1), 0.0, 0]
            prom[0][bisect.bisect_left(PROM_BOUNDS_MS, ms)] += 1
            prom[1] += ms / 1000
            prom[2] += 1

    def _add_route(self, t: int, app: str, env: str, method: str, path: str, status: int, ms: float) -> None:
        ts = t // ROUTE_BUCKET_SECONDS * ROUTE_BUCKET_SECONDS
        paths = self.route_paths.setdefault((ts, app, env), set())
        if path not in paths and len(paths) >= ROUTE_PATHS_MAX:
            path = "(other)"
        paths.add(path)
        key = (ts, app, env, method, path)
        bucket = self.route_buckets.get(key)
        if bucket is None:
            row = self.db.execute("SELECT requests, s4xx, s5xx, 0, 0, hist FROM routes WHERE ts=? AND app=? AND "
                                  "env=? AND method=? AND path=?", key).fetchone()
            bucket = self.route_buckets[key] = Bucket.from_row(row) if row else Bucket()
            bucket.raw = None  # the histogram is enough for a route's p95
        bucket.add(status, ms, 0.0)

    def _stored_bucket(self, key: tuple) -> Bucket:
        row = self.db.execute("SELECT requests, s4xx, s5xx, latency_sum, upstream_sum, hist FROM http WHERE ts=? AND "
                              "app=? AND env=? AND role=? AND release=?", key).fetchone()
        return Bucket.from_row(row) if row else Bucket()

    def commit(self) -> None:
        """Write the changed buckets and the read position in one transaction; forget old buckets."""
        now = time.time()
        with self.lock:
            rows = []
            for key, b in list(self.buckets.items()):
                if b.dirty:
                    p50, p95, p99 = b.quantiles()
                    rows.append((*key, b.requests, b.s4xx, b.s5xx, p50, p95, p99, b.latency_sum, b.upstream_sum,
                                 b.hist_json()))
                    b.dirty = False
                if key[0] + BUCKET_SECONDS + GRACE_SECONDS < now:
                    del self.buckets[key]
            route_rows = []
            for key, b in list(self.route_buckets.items()):
                if b.dirty:
                    route_rows.append((*key, b.requests, b.s4xx, b.s5xx, b.hist_json()))
                    b.dirty = False
                if key[0] + ROUTE_BUCKET_SECONDS + GRACE_SECONDS < now:
                    del self.route_buckets[key]
            for key in [k for k in self.route_paths if k[0] + ROUTE_BUCKET_SECONDS + GRACE_SECONDS < now]:
                del self.route_paths[key]
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO http VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            self.db.executemany("INSERT OR REPLACE INTO routes VALUES (?,?,?,?,?,?,?,?,?)", route_rows)
            self.db.executemany("INSERT OR REPLACE INTO state VALUES (?, ?)",
                                [("inode", str(self.tail.inode)), ("offset", str(self.tail.offset))])
            self.db.execute("COMMIT")
            horizon = int(now) - RESTART_LOOKBACK_SECONDS - 60
            for seconds in self.seconds.values():
                for t in [t for t in seconds if t < horizon]:
                    del seconds[t]

    def rotate_if_big(self) -> None:
        path = self.tail.path
        with contextlib.suppress(OSError):
            if os.stat(path).st_size < ROTATE_BYTES or os.stat(path).st_ino != self.tail.inode:
                return
            os.replace(path, path.with_name(path.name + ".1"))
            status, body = self.engine.call("POST", f"/containers/{self.edge}/kill?signal=USR1")
            if status == 404:  # a swarm env's gateway: the container of its service's task
                for c in self.engine.containers([f"com.docker.swarm.service.name={self.edge}"], all=False):
                    status, body = self.engine.call("POST", f"/containers/{c['Id']}/kill?signal=USR1")
            log(f"rotated the access log (gateway reopen: {status})")

    def tail_loop(self) -> None:
        last_commit = 0.0
        while True:
            lines = self.tail.read()
            if lines:
                with self.lock:
                    self.ingest(lines)
            if time.monotonic() - last_commit >= COMMIT_SECONDS:
                self.commit()
                self.rotate_if_big()
                last_commit = time.monotonic()
            if not lines:
                time.sleep(TAIL_SECONDS)

    # -------------------------------------------------------------- containers
    def sample(self) -> None:
        self.refresh_names(force=True)
        now = time.time()
        with self.lock:
            running = [(n, i) for n, i in self.names.items()
                       if i["state"] == "running" and (i["app"] or i["role"] == "gateway")]
        for name, info in running:
            from_files = cgroup_usage(info["id"])
            if from_files is not None:  # the kernel's counters: no work for the engine at all
                used_ns, memory = from_files
                before = self.previous_cpu.get(info["id"])
                percent = None
                if before and now > before[1]:
                    percent = round(max(0.0, (used_ns - before[0]) / 1e9 / (now - before[1]) * 100), 2)
                self.previous_cpu[info["id"]] = (used_ns, now, 1)
                with self.lock:
                    self.samples[name] = {"cpu": percent, "memory": memory, "at": now, **info}
                    if percent is not None:
                        self.bucket_cpu[name].append(percent)
                continue
            status, st = self.engine.call("GET", f"/containers/{info['id']}/stats?stream=false&one-shot=true",
                                          timeout=10)
            if status != 200 or not isinstance(st, dict):
                continue
            cpu = st.get("cpu_stats", {})
            total = cpu.get("cpu_usage", {}).get("total_usage", 0)
            system = cpu.get("system_cpu_usage", 0)
            cpus = cpu.get("online_cpus") or len(cpu.get("cpu_usage", {}).get("percpu_usage") or [1])
            percent = None
            before = self.previous_cpu.get(info["id"])
            if before and system > before[1]:
                percent = round((total - before[0]) / (system - before[1]) * cpus * 100, 2)
            self.previous_cpu[info["id"]] = (total, system, cpus)
            mem = st.get("memory_stats", {})
            usage = mem.get("usage")
            memory = None
            if usage is not None:
                cache = mem.get("stats", {}).get("cache", 0) or mem.get("stats", {}).get("inactive_file", 0)
                memory = int(usage - cache)
            with self.lock:
                self.samples[name] = {"cpu": percent, "memory": memory, "at": now, **info}
                if percent is not None:
                    self.bucket_cpu[name].append(percent)
        with self.lock:
            for name in [n for n in self.samples if self.names.get(n, {}).get("state") != "running"]:
                self.samples[name] = {**self.samples[name], "cpu": None, "memory": None,
                                      "state": self.names.get(name, {}).get("state", "removed")}
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM container_now")
            self.db.executemany("INSERT INTO container_now VALUES (?,?,?,?,?,?,?,?,?,?)", [
                (name, s["at"], s["app"], s["env"], s["role"], s["release"], s["cpu"], s["memory"],
                 self.restarts(s["id"]), s["state"]) for name, s in self.samples.items()
                if name in self.names])
            self.db.execute("COMMIT")

    def restarts(self, container_id: str) -> int:
        return self.restarts_base.get(container_id, 0) + len(self.restart_times.get(container_id, ()))

    def write_container_bucket(self, ts: int) -> None:
        with self.lock:
            rows = []
            for name, s in self.samples.items():
                cpus = self.bucket_cpu.pop(name, [])
                cpu = round(sum(cpus) / len(cpus), 2) if cpus else None
                rows.append((ts, name, s["app"], s["env"], s["role"], s["release"], cpu, s["memory"],
                             self.restarts(s["id"])))
            self.db.executemany("INSERT OR REPLACE INTO containers VALUES (?,?,?,?,?,?,?,?,?)", rows)

    def sample_loop(self) -> None:
        bucket = int(time.time() // BUCKET_SECONDS) * BUCKET_SECONDS
        while True:
            started = time.monotonic()
            self._safely(self.sample)
            now_bucket = int(time.time() // BUCKET_SECONDS) * BUCKET_SECONDS
            if now_bucket != bucket:
                self._safely(lambda b=bucket: self.write_container_bucket(b))
                bucket = now_bucket
            time.sleep(max(0.1, SAMPLE_SECONDS - (time.monotonic() - started)))

    def seed_restarts(self) -> None:
        for c in self.engine.containers(self.filters):
            if c.get("State") != "created":
                self.started.add(c["Id"])
            inspected = self.engine.inspect(c["Id"]) or {}
            self.restarts_base[c["Id"]] = int(inspected.get("RestartCount") or 0)

    def events_loop(self) -> None:
        """A start after a die, with no stop asked for between them, is a restart (Docker's restart
        policy after a crash, or the keeper after a kill)."""
        while True:
            try:
                for event in self.engine.events(self.filters, ["start", "die", "stop"]):
                    cid, action = event.get("id", ""), event.get("Action") or event.get("status")
                    with self.lock:
                        if action == "stop":
                            self.stopped_on_purpose.add(cid)
                        elif action == "die":
                            self.died.add(cid)
                        elif action == "start":
                            if cid in self.started and cid in self.died and cid not in self.stopped_on_purpose:
                                self.restart_times[cid].append(time.time())
                            self.started.add(cid)
                            self.died.discard(cid)
                            self.stopped_on_purpose.discard(cid)
                            self.names_refreshed = 0.0
            except OSError as err:
                log(f"the engine's event stream broke ({err}); reconnecting")
            time.sleep(1)

    # -------------------------------------------------------------- alerts
    def load_rules(self) -> None:
        folder = self.rules_folder
        seen = set()
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            seen.add(path.name)
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                stamp = path.stat().st_mtime
                if self.rules_stamp.get(path.name) == stamp:
                    continue
                data = json.loads(path.read_text())
                rules = [Rule.from_json(r) for r in data.get("rules", [])]
                self.rules[(data["app"], data["env"])] = (rules, data.get("webhook"))
                self.rules_stamp[path.name] = stamp
                log(f"rules of {data['app']}/{data['env']}: {', '.join(f'{r.name} = {r.text}' for r in rules) or 'none'}")
        for name in [n for n in self.rules_stamp if n not in seen]:
            del self.rules_stamp[name]
            app, _, env = name[: -len(".json")].rpartition(".")
            self.rules.pop((app, env), None)

    def http_values(self, app: str, env: str, now: float) -> dict[str, float | None]:
        seconds = self.seconds.get((app, env), {})
        requests = s4xx = s5xx = 0
        hist = [0] * (len(BOUNDS_MS) + 1)
        for t in range(int(now) - LOOKBACK_SECONDS + 1, int(now) + 1):
            sec = seconds.get(t)
            if sec is None:
                continue
            requests += sec.requests
            s4xx += sec.s4xx
            s5xx += sec.s5xx
            for i, n in enumerate(sec.hist):
                if n:
                    hist[i] += n
        if not requests:
            return dict.fromkeys(HTTP_METRICS)
        return {"5xx": 100 * s5xx / requests, "4xx": 100 * s4xx / requests, "rps": requests / LOOKBACK_SECONDS,
                "p50": hist_quantile(hist, 0.5), "p95": hist_quantile(hist, 0.95), "p99": hist_quantile(hist, 0.99)}

    def container_values(self, app: str, env: str, now: float) -> dict[str, dict[str, float | None]]:
        out = {}
        for name, info in self.names.items():
            if info["app"] != app or info["env"] != env or info["role"] != "app":
                continue
            times = self.restart_times.get(info["id"], deque())
            recent = sum(1 for t in times if t > now - RESTART_LOOKBACK_SECONDS)
            sample = self.samples.get(name, {})
            running = info["state"] == "running"
            if not running and not recent:
                continue
            out[name] = {"cpu": sample.get("cpu") if running else None,
                         "memory": sample.get("memory") if running else None, "restarts": recent}
        return out

    def evaluate(self) -> None:
        now = time.time()
        self.load_rules()
        with self.lock:
            seen = set()
            for (app, env), (rules, webhook) in self.rules.items():
                http = self.http_values(app, env, now)
                containers = self.container_values(app, env, now) if any(r.per_container for r in rules) else {}
                for rule in rules:
                    subjects = {name: values[rule.metric] for name, values in containers.items()} \
                        if rule.per_container else {"": http[rule.metric]}
                    for subject, value in subjects.items():
                        key = (app, env, rule.name, subject)
                        seen.add(key)
                        self._step(key, rule, value, now, webhook)
            for key in [k for k in self.alert_state if k not in seen]:
                state = self.alert_state.pop(key)
                if state["firing"]:  # its container is gone, or the rule was removed
                    rules, webhook = self.rules.get(key[:2], ([], None))
                    self._record(key, state["rule"], "resolved", None, state["since"], now, webhook)

    def _step(self, key: tuple, rule: Rule, value: float | None, now: float, webhook: str | None) -> None:
        state = self.alert_state.setdefault(key, {"since": None, "firing": False, "rule": rule})
        state["rule"] = rule
        if rule.holds(value):
            if state["since"] is None:
                state["since"] = now
            if not state["firing"] and now - state["since"] >= rule.for_seconds:
                state["firing"] = True
                self._record(key, rule, "firing", value, state["since"], now, webhook)
        else:
            if state["firing"]:
                self._record(key, rule, "resolved", value, state["since"], now, webhook)
            state["since"], state["firing"] = None, False

    def _record(self, key: tuple, rule: Rule, what: str, value: float | None, since: float, now: float,
                webhook: str | None) -> None:
        app, env, name, subject = key
        shown = format_value(rule.metric, value)
        cur = self.db.execute("INSERT INTO alerts (at, app, env, name, rule, subject, state, value, shown, since, "
                              "webhook) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                              (now, app, env, name, rule.text, subject, what, value, shown, since, webhook))
        log(f"{app}/{env} alert {name} ({rule.text}) {what}{' on ' + subject if subject else ''}: {shown}")
        if webhook:
            payload = {"alert": name, "state": what, "rule": rule.text, "metric": rule.metric, "value": value,
                       "shown": shown, "threshold": rule.value, "for_seconds": rule.for_seconds, "app": app, "env": env,
                       "subject": subject or None, "instance": self.instance, "since": _iso(since), "at": _iso(now),
                       "id": cur.lastrowid}
            self.enqueue(cur.lastrowid, webhook, payload, 0, time.monotonic())

    # -------------------------------------------------------------- webhooks
    def enqueue(self, event_id: int, url: str, payload: dict, attempts: int, due: float) -> None:
        with self.outbox_wake:
            heapq.heappush(self.outbox, (due, next(self.outbox_seq), event_id, url, payload, attempts))
            self.outbox_wake.notify()

    def requeue_undelivered(self) -> None:
        horizon = time.time() - 3600
        rows = self.db.execute("SELECT id, webhook, app, env, name, rule, subject, state, value, shown, since, at, "
                               "attempts FROM alerts WHERE delivered=0 AND webhook IS NOT NULL AND at > ?",
                               (horizon,)).fetchall()
        for (event_id, url, app, env, name, rule, subject, state, value, shown, since, at, attempts) in rows:
            payload = {"alert": name, "state": state, "rule": rule, "value": value, "shown": shown, "app": app,
                       "env": env, "subject": subject or None, "instance": self.instance, "since": _iso(since),
                       "at": _iso(at), "id": event_id}
            self.enqueue(event_id, url, payload, attempts, time.monotonic())

    def outbox_loop(self) -> None:
        """Sends each due delivery in a thread of its own: a slow or failing webhook holds up nothing."""
        while True:
            with self.outbox_wake:
                while not self.outbox or self.outbox[0][0] > time.monotonic():
                    self.outbox_wake.wait(timeout=(self.outbox[0][0] - time.monotonic()) if self.outbox else None)
                item = heapq.heappop(self.outbox)
            threading.Thread(target=self._deliver, args=item[2:], daemon=True).start()

    def _deliver(self, event_id: int, url: str, payload: dict, attempts: int) -> None:
        attempts += 1
        error = None
        try:
            request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                             headers={"content-type": "application/json",
                                                      "user-agent": "minicloud-collector"})
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:
                response.read(65536)
        except urllib.error.HTTPError as err:
            error = f"HTTP {err.code}"
        except (OSError, ValueError) as err:
            error = f"{type(err).__name__}: {err}"
        give_up = error is not None and attempts >= WEBHOOK_TRIES
        delivered = 1 if error is None else (-1 if give_up else 0)
        with self.lock:
            self.db.execute("UPDATE alerts SET delivered=?, attempts=?, last_error=? WHERE id=?",
                            (delivered, attempts, error, event_id))
        if error is not None and not give_up:
            delay = min(WEBHOOK_MAX_DELAY, 0.5 * 2 ** (attempts - 1))
            log(f"webhook {url} failed ({error}); try {attempts + 1} in {delay:.1f}s")
            self.enqueue(event_id, url, payload, attempts, time.monotonic() + delay)
        elif give_up:
            log(f"webhook {url} failed {attempts} times ({error}); giving up on event {event_id}")

    def eval_loop(self) -> None:
        last_prune = 0.0
        while True:
            started = time.monotonic()
            self._safely(self.evaluate)
            if started - last_prune > 60:
                self._safely(self.prune)
                last_prune = started
            time.sleep(max(0.05, EVAL_SECONDS - (time.monotonic() - started)))

    def prune(self) -> None:
        now = time.time()
        with self.lock:
            self.db.execute("DELETE FROM http WHERE ts < ?", (now - RETENTION_SECONDS,))
            self.db.execute("DELETE FROM containers WHERE ts < ?", (now - RETENTION_SECONDS,))
            self.db.execute("DELETE FROM routes WHERE ts < ?", (now - RETENTION_SECONDS,))
            self.db.execute("DELETE FROM alerts WHERE at < ?", (now - ALERT_RETENTION_SECONDS,))

    # -------------------------------------------------------------- Prometheus
    def prometheus(self) -> str:
        out = ["# HELP minicloud_http_requests_total Requests through the gateway, by app, env, release and status code.",
               "# TYPE minicloud_http_requests_total counter"]
        with self.lock:
            for (app, env, role, release, code), n in sorted(self.codes.items()):
                out.append(f"minicloud_http_requests_total{_labels(app=app, env=env, role=role, release=release, code=code)} {n}")
            out += ["# HELP minicloud_http_request_duration_seconds Request time at the gateway.",
                    "# TYPE minicloud_http_request_duration_seconds histogram"]
            for (app, env, role, release), (counts, total, n) in sorted(self.prom_hist.items()):
                cumulative = 0
                base = dict(app=app, env=env, role=role, release=release)
                for bound, count in zip((*PROM_BOUNDS_MS, None), counts, strict=True):
                    cumulative += count
                    le = "+Inf" if bound is None else f"{bound / 1000:g}"
                    out.append(f"minicloud_http_request_duration_seconds_bucket{_labels(**base, le=le)} {cumulative}")
                out.append(f"minicloud_http_request_duration_seconds_sum{_labels(**base)} {total:.6f}")
                out.append(f"minicloud_http_request_duration_seconds_count{_labels(**base)} {n}")
            samples = sorted(self.samples.items())
            out += ["# HELP minicloud_container_cpu_percent CPU of a container, in % of one core.",
                    "# TYPE minicloud_container_cpu_percent gauge"]
            out += [f"minicloud_container_cpu_percent{_container_labels(n, s)} {s['cpu']}" for n, s in samples
                    if s.get("cpu") is not None]
            out += ["# HELP minicloud_container_memory_bytes Memory of a container (without the page cache).",
                    "# TYPE minicloud_container_memory_bytes gauge"]
            out += [f"minicloud_container_memory_bytes{_container_labels(n, s)} {s['memory']}" for n, s in samples
                    if s.get("memory") is not None]
            out += ["# HELP minicloud_container_restarts_total Restarts of a container (crashes, kills brought back).",
                    "# TYPE minicloud_container_restarts_total counter"]
            out += [f"minicloud_container_restarts_total{_container_labels(n, s)} {self.restarts(s['id'])}"
                    for n, s in samples]
            firing = [(k, s) for k, s in sorted(self.alert_state.items(), key=lambda kv: kv[0]) if s["firing"]]
            out += ["# HELP minicloud_alert_firing Alerts firing now.", "# TYPE minicloud_alert_firing gauge"]
            out += [f"minicloud_alert_firing{_labels(app=k[0], env=k[1], alert=k[2], subject=k[3])} 1" for k, _ in firing]
        return "\n".join(out) + "\n"

    def health(self) -> dict:
        return {"ok": True, "instance": self.instance, "lines": self.lines, "skipped": self.skipped,
                "lag_bytes": self.tail.lag(), "rules": {f"{a}/{e}": [r.text for r in rules]
                                                        for (a, e), (rules, _) in self.rules.items()}}

    def serve(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path.split("?")[0] == "/metrics":
                    body, kind = collector.prometheus().encode(), "text/plain; version=0.0.4; charset=utf-8"
                elif self.path.split("?")[0] == "/health":
                    body, kind = json.dumps(collector.health()).encode(), "application/json"
                else:
                    self.send_error(404, "minicloud metrics: GET /metrics (Prometheus) or /health")
                    return
                self.send_response(200)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        server = http.server.ThreadingHTTPServer((host, int(port)), Handler)
        server.daemon_threads = True
        log(f"Prometheus metrics on http://{listen}/metrics")
        server.serve_forever()

    def run(self, listen: str) -> None:
        self.resume()
        self._safely(self.seed_restarts)
        self._safely(self.requeue_undelivered)
        for loop in (self.tail_loop, self.sample_loop, self.events_loop, self.eval_loop, self.outbox_loop):
            threading.Thread(target=self._forever, args=(loop,), daemon=True).start()
        self.serve(listen)

    @staticmethod
    def _forever(loop) -> None:
        while True:
            Collector._safely(loop)
            time.sleep(1)

    @staticmethod
    def _safely(step) -> None:
        survive(step, log)


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def _labels(**labels: str) -> str:
    def esc(v: str) -> str:
        return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in labels.items()) + "}"


def _container_labels(name: str, s: dict) -> str:
    return _labels(container=name, app=s.get("app", ""), env=s.get("env", ""), role=s.get("role", ""),
                   release=s.get("release", "-"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="collector")
    parser.add_argument("--instance", required=True)
    parser.add_argument("--data", type=Path, required=True, help="folder of metrics.db and rules/")
    parser.add_argument("--access", type=Path, required=True, help="folder of the gateway's access.log")
    parser.add_argument("--listen", required=True, help="IP:PORT of the Prometheus endpoint")
    parser.add_argument("--edge", required=True, help="the gateway container (told to reopen its log)")
    parser.add_argument("--socket", default="/var/run/docker.sock")
    parser.add_argument("--only", metavar="APP.ENV", help="one env's containers (a swarm env's own collector)")
    parser.add_argument("--rules", type=Path, help="folder of the alert rules (default: DATA/rules)")
    args = parser.parse_args(argv)
    log(f"collecting instance {args.instance}" + (f", env {args.only}" if args.only else ""))
    Collector(Engine(args.socket), args.instance, args.data, args.access, args.edge, args.only,
              args.rules).run(args.listen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
