"""Metrics and alerts, host side: the instance's collector container (its program:
services/collector.py), the alert rules it reads, and the readings of its `metrics.db` for
`minicloud metrics`, `top` and `alerts`.

Files, under `<home>/<instance>/`:
- `gateway/access/access.log`: the gateway's JSON access log (mounted writable into the gateway at
  /var/log/minicloud; the collector tails and rotates it);
- `metrics/metrics.db`: SQLite, written by the collector only (10 s buckets, 24 h kept);
- `metrics/rules/APP.ENV.json`: an env's `[alerts]`, parsed, written here at `minicloud env build`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, NotFound

from . import hosts, images, keeper
from .config import LOG_CONFIG, Settings
from .errors import MinicloudError, NotBuilt
from .gateway import Edge
from .manifest import Manifest
from .progress import NullProgress, Progress
from .services.alert_rules import parse_rule
from .services.histogram import BOUNDS_MS, hist_quantile

ROLE = "collector"
METRICS_HOST = "metrics.localhost"  # https://metrics.localhost:PORT/metrics: Prometheus' text format
LABEL_LISTEN = "minicloud.listen"


def folder(settings: Settings) -> Path:
    return settings.instance_dir() / "metrics"


def db_path(settings: Settings) -> Path:
    return folder(settings) / "metrics.db"


def container_name(settings: Settings) -> str:
    return f"{settings.prefix}-collector"


def rules_path(settings: Settings, app: str, env: str) -> Path:
    return folder(settings) / "rules" / f"{app}.{env}.json"


def write_rules(settings: Settings, manifest: Manifest, env: str) -> Path:
    """The env's `[alerts]` as the collector reads them (it notices the change within a second)."""
    alerts = dict(manifest.alerts)
    webhook = alerts.pop("webhook", None)
    rules = [parse_rule(text, name).to_json() for name, text in sorted(alerts.items())]
    path = rules_path(settings, manifest.name, env)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}")
    tmp.write_text(json.dumps({"app": manifest.name, "env": env, "rules": rules, "webhook": webhook}, indent=2))
    tmp.replace(path)
    return path


# ------------------------------------------------------------------ the collector container
def _listen_address(client: docker.DockerClient, settings: Settings, edge: Edge) -> str | None:
    """IP:PORT on the engine's default bridge, where the gateway reaches the collector (host network)."""
    container = edge.container()
    if container is None:
        return None
    container.reload()
    ip = ((container.attrs.get("NetworkSettings") or {}).get("Networks") or {}).get("bridge", {}).get("Gateway")
    if not ip:
        return None
    with contextlib.suppress(NotFound):
        current = client.containers.get(container_name(settings)).labels.get(LABEL_LISTEN, "")
        if current.rsplit(":", 1)[0] == ip:
            return current
    with socket.socket() as s:
        s.bind((ip, 0))
        return f"{ip}:{s.getsockname()[1]}"


def ensure(client: docker.DockerClient, settings: Settings, manifest: Manifest, env: str, edge: Edge,
           progress: Progress | None = None) -> None:
    """The env's alert rules, the instance's collector and the gateway's route to its Prometheus endpoint."""
    progress = progress or NullProgress()
    write_rules(settings, manifest, env)
    sock = keeper.engine_socket()
    listen = _listen_address(client, settings, edge) if sock else None
    if sock is None or listen is None:
        progress.report("metrics are off: no local engine socket, or the gateway is not on the default bridge")
        return
    image = images.ensure_recipe(client, "sandbox", progress)
    name = container_name(settings)
    with contextlib.suppress(NotFound):
        current = client.containers.get(name)
        if current.image.tags[:1] == [image] and current.labels.get(LABEL_LISTEN) == listen:
            if current.status != "running":
                current.start()
            _route(edge, listen)
            return
        current.remove(force=True)
    data = folder(settings)
    access = edge.folder / "access"
    for path in (data, data / "rules", access):
        path.mkdir(parents=True, exist_ok=True)
    progress.report("starting the metrics collector")
    client.containers.run(
        image, name=name, detach=True, labels={**settings.labels(role=ROLE), LABEL_LISTEN: listen},
        # the host's network: webhooks to 127.0.0.1 reach the host; it listens on the bridge address only
        network_mode="host", user=f"{os.getuid()}:{os.getgid()}", group_add=[str(os.stat(sock).st_gid)],
        command=["python3", "-m", "deploy_bridge.services.collector", "--instance", settings.instance,
                 "--data", "/metrics", "--access", "/access", "--listen", listen, "--edge", settings.edge_container],
        volumes={sock: {"bind": "/var/run/docker.sock", "mode": "rw"},
                 str(data): {"bind": "/metrics", "mode": "rw"}, str(access): {"bind": "/access", "mode": "rw"},
                 # the kernel's counters of every container (read-only): samples cost the engine nothing
                 "/sys/fs/cgroup": {"bind": "/host/cgroup", "mode": "ro"}},
        restart_policy={"Name": "unless-stopped"}, log_config=LOG_CONFIG)
    _route(edge, listen)


def _route(edge: Edge, listen: str) -> None:
    ip, port = listen.rsplit(":", 1)
    route = edge.route(METRICS_HOST)
    if route is None or route.serving != ip or route.port != int(port):
        edge.set_route(METRICS_HOST, ip, int(port))
    hosts.ensure_names([METRICS_HOST])


def remove(client: docker.DockerClient, settings: Settings) -> None:
    with contextlib.suppress(NotFound, APIError):
        client.containers.get(container_name(settings)).remove(force=True)


# ------------------------------------------------------------------ reading metrics.db
def _connect(settings: Settings, store: Path | None = None) -> sqlite3.Connection:
    """The instance's metrics.db, read-only; or `store`, a copy of a swarm env's (swarm_metrics.snapshot)."""
    path = store or db_path(settings)
    if not path.is_file():
        raise NotBuilt("no metrics yet: the collector starts with the first env build",
                       hint="minicloud env build ENV")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        db.execute("SELECT 1 FROM http LIMIT 1")
    except sqlite3.Error as err:
        raise MinicloudError(f"cannot read {path}: {err}") from None
    return db


def _merge_hist(texts: list[str]) -> list[int]:
    hist = [0] * (len(BOUNDS_MS) + 1)
    for text in texts:
        for key, n in json.loads(text).items():
            hist[int(key)] += n
    return hist


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def series(settings: Settings, app: str, env: str, since: float, store: Path | None = None) -> dict[str, Any]:
    """The env's 10 s series since `since` (a UNIX time), per release and per container, with totals."""
    db = _connect(settings, store)
    try:
        rows = db.execute("SELECT ts, role, release, requests, s4xx, s5xx, p50, p95, p99, latency_sum, hist FROM http "
                          "WHERE app=? AND env=? AND ts >= ? ORDER BY ts", (app, env, int(since // 10 * 10))).fetchall()
        crows = db.execute("SELECT ts, container, role, release, cpu, memory, restarts FROM containers "
                           "WHERE app=? AND env=? AND ts >= ? ORDER BY ts", (app, env, int(since // 10 * 10))).fetchall()
    finally:
        db.close()
    releases: dict[tuple[str, str], dict[str, Any]] = {}
    hists: dict[tuple[str, str], list[str]] = {}
    for ts, role, release, requests, s4xx, s5xx, p50, p95, p99, latency_sum, hist in rows:
        entry = releases.setdefault((role, release), {"release": release, "role": role, "requests": 0, "s4xx": 0,
                                                      "s5xx": 0, "latency_sum_ms": 0.0, "points": []})
        entry["requests"] += requests
        entry["s4xx"] += s4xx
        entry["s5xx"] += s5xx
        entry["latency_sum_ms"] += latency_sum
        hists.setdefault((role, release), []).append(hist)
        entry["points"].append({"ts": ts, "requests": requests, "s4xx": s4xx, "s5xx": s5xx, "p50_ms": _round(p50),
                                "p95_ms": _round(p95), "p99_ms": _round(p99)})
    for key, entry in releases.items():
        merged = _merge_hist(hists[key])
        n = entry["requests"]
        entry.update(error_rate=round(100 * entry["s5xx"] / n, 2) if n else None,
                     mean_ms=round(entry.pop("latency_sum_ms") / n, 1) if n else None,
                     p50_ms=_round(hist_quantile(merged, 0.5)), p95_ms=_round(hist_quantile(merged, 0.95)),
                     p99_ms=_round(hist_quantile(merged, 0.99)))
    containers: dict[str, dict[str, Any]] = {}
    for ts, name, role, release, cpu, memory, restarts in crows:
        entry = containers.setdefault(name, {"container": name, "role": role, "release": release, "points": []})
        entry["points"].append({"ts": ts, "cpu_percent": cpu, "memory_bytes": memory, "restarts": restarts})
    for entry in containers.values():
        cpus = [p["cpu_percent"] for p in entry["points"] if p["cpu_percent"] is not None]
        mems = [p["memory_bytes"] for p in entry["points"] if p["memory_bytes"] is not None]
        entry.update(cpu_avg=round(sum(cpus) / len(cpus), 1) if cpus else None, cpu_max=max(cpus, default=None),
                     memory_max=max(mems, default=None), restarts=entry["points"][-1]["restarts"])
    order = {"app": 0, "functions": 1, "gateway": 2, "sandbox": 3}
    return {"app": app, "env": env, "since": since, "resolution_s": 10,
            "releases": sorted(releases.values(), key=lambda r: (order.get(r["role"], 9), r["release"])),
            "containers": sorted(containers.values(), key=lambda c: (order.get(c["role"], 9), c["container"]))}


def recent_samples(settings: Settings, max_age: float = 10.0) -> dict[str, tuple[float | None, int | None]]:
    """container name -> (CPU %, memory bytes) as the collector sampled them in the last `max_age` seconds
    ({} when there is no collector): `status` reads these instead of asking the engine (~1 s a container)."""
    try:
        db = _connect(settings)
    except MinicloudError:
        return {}
    try:
        rows = db.execute("SELECT container, cpu, memory FROM container_now WHERE ts >= ?",
                          (time.time() - max_age,)).fetchall()
    except sqlite3.Error:
        return {}
    finally:
        db.close()
    return {name: (cpu, memory) for name, cpu, memory in rows if cpu is not None}


def live(settings: Settings, app: str, env: str, now: float | None = None, store: Path | None = None) -> dict[str, Any]:
    """What `top` shows: per release the last ~10–20 s (the previous bucket and the current one), and the
    latest sample of each container."""
    now = now or time.time()
    start = int(now // 10 * 10) - 10
    db = _connect(settings, store)
    try:
        rows = db.execute("SELECT role, release, SUM(requests), SUM(s4xx), SUM(s5xx), GROUP_CONCAT(hist, '\n') "
                          "FROM http WHERE app=? AND env=? AND ts >= ? GROUP BY role, release",
                          (app, env, start)).fetchall()
        crows = db.execute("SELECT container, role, release, cpu, memory, restarts, state, ts FROM container_now "
                           "WHERE app=? AND env=? ORDER BY role, container", (app, env)).fetchall()
        firing = _firing(db, app, env)
    finally:
        db.close()
    span = max(1.0, now - start)
    releases = []
    for role, release, requests, s4xx, s5xx, hist in rows:
        merged = _merge_hist(hist.split("\n") if hist else [])
        releases.append({"role": role, "release": release, "rps": round(requests / span, 2),
                         "error_rate": round(100 * s5xx / requests, 2) if requests else None,
                         "s4xx_rate": round(100 * s4xx / requests, 2) if requests else None,
                         "p95_ms": _round(hist_quantile(merged, 0.95))})
    containers = [{"container": c, "role": role, "release": release, "cpu_percent": cpu, "memory_bytes": memory,
                   "restarts": restarts, "state": state, "sampled": ts} for c, role, release, cpu, memory, restarts,
                  state, ts in crows]
    return {"app": app, "env": env, "at": now, "releases": releases, "containers": containers, "firing": firing}


def routes(settings: Settings, app: str, env: str, since: float, store: Path | None = None) -> list[dict[str, Any]]:
    """The app's requests per (method, path) since `since` (minute buckets): counts and the merged latency
    histogram (`hist`: bin -> n over BOUNDS_MS), most requested first; [] before the first request."""
    try:
        db = _connect(settings, store)
    except MinicloudError:
        return []
    try:
        rows = db.execute("SELECT method, path, SUM(requests), SUM(s4xx), SUM(s5xx), GROUP_CONCAT(hist, '\n') "
                          "FROM routes WHERE app=? AND env=? AND ts >= ? GROUP BY method, path",
                          (app, env, int(since // 60 * 60))).fetchall()
    except sqlite3.Error:  # a metrics.db from before per-route series
        return []
    finally:
        db.close()
    out = []
    for method, path, requests, s4xx, s5xx, hists in rows:
        merged = _merge_hist(hists.split("\n") if hists else [])
        out.append({"method": method, "path": path, "requests": requests, "s4xx": s4xx, "s5xx": s5xx,
                    "hist": {str(i): n for i, n in enumerate(merged) if n}})
    return sorted(out, key=lambda r: -r["requests"])


def _firing(db: sqlite3.Connection, app: str, env: str) -> list[dict[str, Any]]:
    rows = db.execute("SELECT name, subject, state, rule, shown, since, at FROM alerts WHERE id IN "
                      "(SELECT MAX(id) FROM alerts WHERE app=? AND env=? GROUP BY name, subject)", (app, env)).fetchall()
    return [{"alert": n, "subject": s or None, "rule": r, "value": v, "since": since, "at": at}
            for n, s, state, r, v, since, at in rows if state == "firing"]


def alerts(settings: Settings, app: str, env: str, since: float, store: Path | None = None) -> dict[str, Any]:
    """Every firing and resolving of the env's alerts since `since`, oldest first, and those firing now."""
    db = _connect(settings, store)
    try:
        rows = db.execute("SELECT id, at, name, rule, subject, state, value, shown, since, webhook, delivered, attempts, "
                          "last_error FROM alerts WHERE app=? AND env=? AND at >= ? ORDER BY id",
                          (app, env, since)).fetchall()
        firing = _firing(db, app, env)
    finally:
        db.close()
    delivery = {1: "delivered", 0: "pending", -1: "failed"}
    events = [{"id": i, "at": at, "alert": name, "rule": rule, "subject": subject or None, "state": state,
               "value": value, "shown": shown, "since": since_, "webhook": webhook,
               "delivery": delivery.get(delivered, "pending") if webhook else None, "attempts": attempts,
               "last_error": last_error}
              for i, at, name, rule, subject, state, value, shown, since_, webhook, delivered, attempts, last_error
              in rows]
    return {"app": app, "env": env, "events": events, "firing": firing}
