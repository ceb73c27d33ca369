"""What the engine says of one env, read in a child process of the language server.

    python -m lsp_server.engine_view WORKSPACE ENV [DIGEST]   (DIGEST: of the tables the server has)

Reading the engine means importing the Docker SDK (~0.3 s of CPU), asking for the env's containers and
its database's schema (thousands of rows for a real database) and watching the engine's events: all of
it would hold the server's interpreter while the user types. So it runs here, at idle CPU priority, and
the server reads one JSON line per change:

    {"kind": "view", "state": ..., "tables": {...} | null, "functions": {...}, "collections": {...} | null,
     "tables_digest": ...}
                                                            (tables null: the same as the digest's)
    {"kind": "event", "env": ...}                                                a container started, died, went
    {"kind": "away", "error": ...}                                              no engine (retried)
    {"kind": "pulse", "live": {...} | null, "routes": [...], "canary": {...} | null}
        the env's metrics (metrics.live: req/s, errors, p95 per release, containers, firing alerts), its
        requests per route over the last 15 minutes and the canary split: every PULSE_SECONDS, sent
        only when it changed

A line "refresh" on stdin asks for a view now (after a command). Architecture Invariant: the server
process never imports the Docker SDK to keep its index (only its commands do).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

REFRESH_SECONDS = 15.0
PULSE_SECONDS = 1.0  # an alert reaches the editor within about this of the collector recording it
# a swarm env's metrics are a copy of its collector's store, made in its task on the manager: less often
SWARM_PULSE_SECONDS = 5.0
ROUTES_EVERY = 5  # pulses: the per-route view (15 minutes) changes slowly
ROUTE_WINDOW_SECONDS = 900


def read_view(cloud, env: str) -> dict[str, Any]:
    """The env's state, tables (with columns and rows) and live functions, from the engine."""
    from deploy_bridge.errors import MinicloudError

    status = cloud.status(env, stats=False)
    view: dict[str, Any] = {"state": status.state, "tables": None, "functions": status.functions,
                            "collections": None}
    if status.state in ("running", "degraded"):
        try:
            view["tables"] = {t.name: {"columns": [list(c) for c in t.columns], "rows": t.rows}
                              for t in cloud.db_schema(env)}
        except MinicloudError as err:
            view["error"] = str(err)
        if cloud.manifest.data is not None:
            from deploy_bridge.data import DataClient

            try:
                view["collections"] = {c["name"]: {"count": c["count"], "fields": c["fields"]}
                                       for c in DataClient(cloud, env).schema()}
            except MinicloudError as err:
                view["data_error"] = str(err)
    return view


def read_pulse(cloud, env: str, with_routes: bool) -> dict[str, Any]:
    """The env's metrics now (None before the collector's first build), and its canary split."""
    from deploy_bridge.errors import MinicloudError

    pulse: dict[str, Any] = {"live": None, "canary": None}
    try:  # a swarm env's from a copy of its collector's store, the same shape
        live = cloud.live_metrics(env, time.time() - ROUTE_WINDOW_SECONDS if with_routes else None)
    except MinicloudError:
        return pulse
    if with_routes:
        pulse["routes"] = live.pop("routes")
    pulse["live"] = live
    pulse["canary"] = cloud.canary_split(env)
    return pulse


class Reader:
    def __init__(self, workspace: Path, env: str, known_digest: str | None = None) -> None:
        self.workspace, self.env = workspace, env
        self.wake = threading.Event()
        self.lock = threading.Lock()
        self.tables_digest = known_digest  # the tables the server has already (from its saved index)

    def emit(self, message: dict[str, Any]) -> None:
        with self.lock:
            sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
            sys.stdout.flush()

    def commands(self) -> None:
        for line in sys.stdin:
            if line.strip() == "refresh":
                self.wake.set()
        os._exit(0)  # the server went away

    def events(self, cloud) -> None:
        stop = threading.Event()
        for event in cloud.events(stop):
            if event.get("Type") != "container" or event.get("Action") not in ("start", "die", "destroy"):
                continue
            attributes = (event.get("Actor") or {}).get("Attributes", {})
            if attributes.get("minicloud.app") not in (None, cloud.app):
                continue  # another app of the instance: its own index hears it
            self.emit({"kind": "event", "env": attributes.get("minicloud.env")})
            self.wake.set()

    def pulses(self, cloud) -> None:
        """The env's metrics, alerts and canary split, sent when they change."""
        last: dict[str, Any] = {}
        routes: list = []
        for beat in itertools.count():
            pause = PULSE_SECONDS
            try:
                if cloud.manifest.env(self.env).engine == "swarm":
                    pause = SWARM_PULSE_SECONDS
                pulse = read_pulse(cloud, self.env, with_routes=beat % ROUTES_EVERY == 0)
                routes = pulse.pop("routes", routes)
                pulse["routes"] = routes
                live = pulse["live"] or {}
                compared = {**pulse, "live": {k: v for k, v in live.items() if k != "at"}}
                for container in compared["live"].get("containers", []):
                    container.pop("sampled", None)
                if compared != last:
                    last = json.loads(json.dumps(compared))
                    self.emit({"kind": "pulse", **pulse})
            except Exception as err:  # noqa: BLE001 - no engine or no metrics yet: the next beat retries
                if last.get("live") is not None:
                    last = {}
                    self.emit({"kind": "pulse", "live": None, "routes": [], "canary": None,
                               "error": f"{type(err).__name__}: {err}"})
            time.sleep(pause)

    def run(self) -> None:
        from deploy_bridge.cloud import Cloud

        threading.Thread(target=self.commands, daemon=True).start()
        cloud = Cloud(self.workspace)
        threading.Thread(target=self.pulses, args=(cloud,), daemon=True).start()
        watcher: threading.Thread | None = None
        delay = 1.0
        while True:
            self.wake.clear()
            try:
                if watcher is None or not watcher.is_alive():
                    watcher = threading.Thread(target=self.events, args=(cloud,), daemon=True)
                    watcher.start()
                view = read_view(cloud, self.env)
                tables = view["tables"]
                digest = hashlib.sha256(json.dumps(tables, sort_keys=True).encode()).hexdigest() if tables else None
                if tables is not None and digest == self.tables_digest:
                    view["tables"] = None  # unchanged: the server keeps what it has
                elif tables is not None:
                    self.tables_digest = digest
                self.emit({"kind": "view", **view, "tables_digest": self.tables_digest})
                delay = 1.0
                self.wake.wait(REFRESH_SECONDS)
            except Exception as err:  # noqa: BLE001 - no engine (or a broken manifest): say so, retry
                self.emit({"kind": "away", "error": f"{type(err).__name__}: {err}"})
                self.wake.wait(delay)
                delay = min(delay * 2, 30.0)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # CPU nobody else wants
    Reader(Path(args[0]), args[1], args[2] if len(args) > 2 and args[2] else None).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
