"""`python -m bench [--quick]`: the figures a user of an editor tool and a deploy tool cares about.

Everything runs for real: the language server as a process over stdio, the cloud on the Docker
engine, under a throw-away minicloud instance that is removed at the end. Figures are medians (and
p95/p99 where said) over several runs: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.canary import GOALS as CANARY_GOALS
from bench.canary import measure_canary
from bench.data import GOALS as DATA_GOALS
from bench.data import measure_data
from bench.functions import GOALS as FUNCTION_GOALS
from bench.metrics import GOALS as METRICS_GOALS
from bench.metrics import measure_metrics
from bench.swarm import GOALS as SWARM_GOALS
from bench.swarm import measure_swarm

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
GOALS = {  # metric: (goal, "<" or ">")
    "completion_p99_ms": (5.0, "<"), "initialize_ms": (600.0, "<"), "rss_idle_mb": (80.0, "<"),
    "deploy_s": (3.0, "<"), "deploy_failed_requests": (0, "<="), "rollback_s": (2.0, "<"),
    "rollback_failed_requests": (0, "<="), "deploy_failed_requests_keepalive": (0, "<="),
    "rollback_failed_requests_keepalive": (0, "<="), "log_latency_p95_ms": (100.0, "<"), "log_lines_per_s": (10_000, ">"),
    "completion_flood_ratio": (1.5, "<"),
    "sql_tables_completion_p99_ms": (5.0, "<"), "sql_tables_completion_bytes": (64 * 1024, "<"),
    "completion_first_2s_ratio": (2.0, "<"),
    "initialize_5_apps_ms": (600.0, "<"), "rss_idle_5_apps_mb": (80.0, "<"),
    **FUNCTION_GOALS, **METRICS_GOALS, **CANARY_GOALS, **DATA_GOALS, **SWARM_GOALS,
}
PACKAGES = ["FACE_TO_FACE_PAYMENT", "JSAPI_PAY", "QUICK_WAP_WAY", "FAST_INSTANT_TRADE_PAY", "QUICK_MSECURITY_PAY",
            "芝麻信用"]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def isolate() -> str:
    """A throw-away instance, home and gateway port, like the tests."""
    instance = f"bench-{uuid.uuid4().hex[:6]}"
    os.environ.update(MINICLOUD_INSTANCE=instance, MINICLOUD_HOME=tempfile.mkdtemp(prefix="minicloud-bench-"),
                      MINICLOUD_GATEWAY_PORT=str(free_port()))
    return instance


def cleanup(instance: str) -> None:
    from deploy_bridge import engine

    engine.remove_instance(engine.client(), instance)
    shutil.rmtree(os.environ["MINICLOUD_HOME"], ignore_errors=True)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ the cloud
def measure_cloud(cloud, runs: int, out: dict[str, Any]) -> None:
    """Deploy and rollback times, and the failed requests of both kinds of client across them: a new
    connection per request, and 20 persistent keep-alive connections (one request each every 10 ms)."""
    from bench.load import RequestLoop, bump

    ca = cloud.ca_path()
    url = cloud.url("test") + "/healthz"
    # "deploy_s" is the time to healthy and switched (what the user waits for); the totals add the
    # drain and the stop of the old release, which run after the switch
    times: dict[str, list[float]] = {"deploy": [], "rollback": [], "deploy_total": [], "rollback_total": []}
    counts = {f"{verb}_{what}": 0 for verb in ("deploy", "rollback")
              for what in ("failed", "requests", "failed_keepalive", "requests_keepalive")}

    def measured(verb: str, switch) -> None:
        """The switch under load: new-connection and keep-alive clients count failures."""
        fresh = RequestLoop(url, ca, limit=100_000)
        kept = RequestLoop(url, ca, clients=20, keep_alive=True, interval=0.01, limit=100_000)
        with fresh, kept:
            fresh.wait_for(10)
            kept.wait_for(100)
            switch()
            fresh.wait_for(len(fresh.statuses) + 10)
            kept.wait_for(len(kept.statuses) + 100)
        counts[f"{verb}_failed"] += len(fresh.failures)
        counts[f"{verb}_requests"] += len(fresh.statuses)
        counts[f"{verb}_failed_keepalive"] += len(kept.failures)
        counts[f"{verb}_requests_keepalive"] += len(kept.statuses)

    def timed(verb: str, switch) -> None:
        """The switch as a user waits for it (the 20 keep-alive clients above saturate both cores)."""
        with RequestLoop(url, ca, limit=100_000) as fresh:
            fresh.wait_for(10)
            start = time.perf_counter()
            times[verb].append(switch().seconds)
            times[f"{verb}_total"].append(time.perf_counter() - start)
        counts[f"{verb}_failed"] += len(fresh.failures)
        counts[f"{verb}_requests"] += len(fresh.statuses)

    for i in range(runs):
        bump(cloud.workspace)
        timed("deploy", lambda: cloud.deploy("test"))
        timed("rollback", lambda: cloud.rollback("test"))
        bump(cloud.workspace)
        measured("deploy", lambda: cloud.deploy("test"))
        measured("rollback", lambda: cloud.rollback("test"))
        log(f"deploy {times['deploy'][-1]:.2f}s, rollback {times['rollback'][-1]:.2f}s (run {i + 1}/{runs})")
    out.update(deploy_s=statistics.median(times["deploy"]), rollback_s=statistics.median(times["rollback"]),
               deploy_total_s=statistics.median(times["deploy_total"]),
               rollback_total_s=statistics.median(times["rollback_total"]), deploy_runs=runs,
               deploy_failed_requests=counts["deploy_failed"], deploy_requests=counts["deploy_requests"],
               deploy_failed_requests_keepalive=counts["deploy_failed_keepalive"],
               deploy_requests_keepalive=counts["deploy_requests_keepalive"],
               rollback_failed_requests=counts["rollback_failed"],
               rollback_failed_requests_keepalive=counts["rollback_failed_keepalive"])


# ------------------------------------------------------------------ the language server
SECTION = """\
const v{i} = process.env.MY§;
const rows{i} = await db.query('SELECT * FROM §');
const cols{i} = await db.query('SELECT § FROM t{t} WHERE c1 = 1');
const r{i} = await sdk.exec('alipay.trade.§', {{
  bizContent: {{
    out_trade_no: 'order-{i}',
    §
  }},
}});
const s{i} = await sdk.exec('alipay.trade.precreate', {{ bizContent: {{ out_trade_no: 'x', total_amount: '1.00', subject: 's' }} }});
// filler line one {i}
// filler line two {i}
function helper{i}(a, b) {{
  return a + b + {i};
}}
module.exports.helper{i} = helper{i};
// filler line three {i}
// filler line four {i}
// filler line five {i}
// filler line six {i}
"""


KINDS = ("injected-variable", "sql-table", "sql-column", "capability-method", "capability-param")


def source_file() -> tuple[str, list[tuple[str, dict[str, int]]], list[dict[str, int]]]:
    """A 2,000-line JS file; the positions (marked §) where each completion source triggers, by kind;
    and hover positions on capability methods."""
    text = "".join(SECTION.format(i=i, t=f"{i % 20 + 1:02d}") for i in range(100))
    positions, hovers, lines = [], [], []
    for n, line in enumerate(text.split("\n")):
        while "§" in line:
            col = line.index("§")
            positions.append((KINDS[len(positions) % len(KINDS)], {"line": n, "character": col}))
            line = line[:col] + line[col + 1:]
        if "'alipay.trade.precreate'" in line:
            hovers.append({"line": n, "character": line.index("alipay.trade.precreate") + 5})
        lines.append(line)
    return "\n".join(lines), positions, hovers


def completion_latencies(client, uris_positions: list[tuple[str, dict[str, int]]], count: int) -> list[float]:
    out = []
    for k in range(count):
        uri, pos = uris_positions[k % len(uris_positions)]
        ms, _ = client.timed("textDocument/completion", {"textDocument": {"uri": uri}, "position": pos})
        out.append(ms)
    return out


def open_documents(client, workspace: Path):
    """Open the big JS file and the manifest; the mixed completion positions, by kind, and hover spots."""
    text, positions, hovers = source_file()
    js = (workspace / "bench_big.js").as_uri()
    client.notify("textDocument/didOpen", {"textDocument": {"uri": js, "languageId": "javascript", "version": 1,
                                                            "text": text}})
    toml = (workspace / "minicloud.toml").as_uri()
    manifest = (workspace / "minicloud.toml").read_text() + "\n[build]\n\n"
    client.notify("textDocument/didOpen", {"textDocument": {"uri": toml, "languageId": "toml", "version": 1,
                                                            "text": manifest}})
    toml_pos = {"line": manifest.count("\n") - 1, "character": 0}
    mixed = [(js, p) for _, p in positions] + [(toml, toml_pos)] * (len(positions) // len(KINDS))
    table_pos = next(p for kind, p in positions if kind == "sql-table")
    return mixed, (js, table_pos), [(js, h) for h in hovers]


def wait_for_index(client, uri: str, pos: dict[str, int], tables: int, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = client.request("textDocument/completion", {"textDocument": {"uri": uri}, "position": pos})
        if len(result["items"]) >= tables:
            return
        client.wait(0.5)
    raise RuntimeError("the server's index never showed the env's tables")


def measure_empty_server(workspace: Path, count: int) -> float:
    from .lsp import TimedClient

    client = TimedClient(EMPTY_SERVER, workspace)
    try:
        uri = (workspace / "x.js").as_uri()
        client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "javascript",
                                                                "version": 1, "text": "x"}})
        lat = [client.timed("textDocument/completion", {"textDocument": {"uri": uri},
                                                        "position": {"line": 0, "character": 1}})[0]
               for _ in range(count)]
        return percentile(lat, 99)
    finally:
        client.close()


EMPTY_SERVER = [sys.executable, str(Path(__file__).with_name("empty_server.py"))]


def first_seconds_latencies(command: list[str], workspace: Path, seconds: float) -> list[float]:
    """Completions sent back to back from the moment `initialize` is answered, for `seconds`: what a
    user typing right after the editor starts meets (the server's start-up work runs meanwhile)."""
    from .lsp import TimedClient

    client = TimedClient(command, workspace)
    try:
        mixed, _, _ = open_documents(client, workspace)
        lat: list[float] = []
        while time.perf_counter() - client.initialized_at < seconds:
            uri, pos = mixed[len(lat) % len(mixed)]
            lat.append(client.timed("textDocument/completion", {"textDocument": {"uri": uri}, "position": pos})[0])
        return lat
    finally:
        client.close()


def measure_first_seconds(command: list[str], workspace: Path, runs: int, out: dict[str, Any],
                          seconds: float = 2.0) -> None:
    """Our server and the empty one side by side (alternating starts, the same documents and requests):
    the p99 of every completion of the first `seconds` of each start, and the ratio of the two."""
    ours: list[float] = []
    empty: list[float] = []
    for _ in range(runs):
        ours += first_seconds_latencies(command, workspace, seconds)
        empty += first_seconds_latencies(EMPTY_SERVER, workspace, seconds)
    out.update(completion_p99_first_2s_ms=percentile(ours, 99), completion_max_first_2s_ms=max(ours),
               completion_requests_first_2s=len(ours) // runs,
               empty_server_completion_p99_first_2s_ms=percentile(empty, 99))
    out["completion_first_2s_ratio"] = out["completion_p99_first_2s_ms"] / out["empty_server_completion_p99_first_2s_ms"]


def typed_table_queries(word: str) -> str:
    """One line per keystroke of typing `word` after FROM (the empty word first), then a column list."""
    lines = [f"const q{i} = db.query('SELECT * FROM {word[:i]}');" for i in range(len(word) + 1)]
    return "\n".join(lines + ["const c = db.query('SELECT o. FROM order_0042 o');",
                               "const h = db.query('SELECT * FROM invoice_0007');", ""])


def measure_large_schema(cloud, command: list[str], workspace: Path, quick: bool, out: dict[str, Any]) -> None:
    """2,000 tables of 25 columns in the live database: the index build, the server's memory with it,
    and table completions as a user types a name (resolve client), their size, resolve and hover."""
    from lsp_server.index import Index, Snapshot

    from .lsp import RESOLVE_DOCUMENTATION, TimedClient, create_large_schema

    start = time.perf_counter()
    names = create_large_schema(cloud, "test")
    out["large_schema_create_s"] = time.perf_counter() - start
    index = Index(workspace, "test")
    index.snapshot = Snapshot("test")
    start = time.perf_counter()
    built = index.refresh()  # also persists it: the servers below start from it
    out["index_build_s"] = time.perf_counter() - start
    out["index_tables"] = len(built.tables)
    word = "ticket_0042"
    text = typed_table_queries(word)
    uri = (workspace / "bench_tables.js").as_uri()
    typing = [{"line": i, "character": text.split("\n")[i].index("')")} for i in range(len(word) + 1)]
    columns_pos = {"line": len(word) + 1, "character": text.split("\n")[len(word) + 1].index("o. ") + 2}
    hover_pos = {"line": len(word) + 2, "character": text.split("\n")[len(word) + 2].index("invoice_") + 3}
    for resolving in (True, False):
        client = TimedClient(command, workspace, completion=RESOLVE_DOCUMENTATION if resolving else None)
        try:
            client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "javascript",
                                                                    "version": 1, "text": text}})
            first = client.request("textDocument/completion", {"textDocument": {"uri": uri}, "position": typing[-1]})
            assert any(i["label"] == word for i in first["items"]), "the server's index lacks the 2,000 tables"
            client.request("textDocument/completion", {"textDocument": {"uri": uri}, "position": typing[0]})
            if not resolving:
                out["sql_tables_completion_bytes_inline"] = client.answer_bytes
                continue
            out["sql_tables_completion_bytes"] = client.answer_bytes
            out["sql_tables_completion_items"] = len(client.request(
                "textDocument/completion", {"textDocument": {"uri": uri}, "position": typing[0]})["items"])
            out["rss_index_2000_tables_mb"] = client.rss_mb()
            client.wait(3.0)  # settled: the start-up is measured by measure_first_seconds
            n = 600 if quick else 2000
            lat, items = [], []
            for k in range(n):
                ms, result = client.timed("textDocument/completion",
                                          {"textDocument": {"uri": uri}, "position": typing[k % len(typing)]})
                lat.append(ms)
                items += result["items"][:1]
            out.update(sql_tables_completion_p50_ms=statistics.median(lat),
                       sql_tables_completion_p99_ms=percentile(lat, 99))
            lat = [client.timed("completionItem/resolve", items[k % len(items)])[0] for k in range(300)]
            out["sql_resolve_p99_ms"] = percentile(lat, 99)
            lat = [client.timed("textDocument/completion", {"textDocument": {"uri": uri}, "position": columns_pos})[0]
                   for _ in range(300)]
            out["sql_columns_completion_p99_ms"] = percentile(lat, 99)
            lat = [client.timed("textDocument/hover", {"textDocument": {"uri": uri}, "position": hover_pos})[0]
                   for _ in range(300)]
            out["sql_hover_p99_ms_2000_tables"] = percentile(lat, 99)
        finally:
            client.close()
    out["large_schema_tables"] = len(names)


def measure_lsp(cloud, workspace: Path, quick: bool, out: dict[str, Any]) -> None:
    """The language server as an editor meets it: start-up, answers, then the log panel under load."""
    from .lsp import TimedClient

    command = [str(Path(sys.executable).parent / "minicloud-lsp")]  # beside the interpreter running the bench
    measure_startup(command, workspace, 3 if quick else 7, out)
    measure_five_apps(command, workspace, 3 if quick else 7, out)
    client = TimedClient(command, workspace)
    try:
        mixed = measure_answers(client, workspace, quick, out)
        client.request("workspace/executeCommand", {"command": "minicloud.logs.tail",
                                                    "arguments": [{"env": "test", "role": "app", "since": "1s"}]})
        client.wait(1.5)
        site = (cloud.url("test"), cloud.ca_path())
        lat_logs = measure_log_latency(client, site, 40 if quick else 150, out)
        measure_log_burst(client, site, mixed, quick, out)
        measure_log_flood(client, site, mixed, 2 if quick else 4, lat_logs, out)
    finally:
        client.close()


def median_initialize_ms(make_client, runs: int) -> float:
    """The median of `runs` starts: process start → `initialize` answered."""
    starts = []
    for _ in range(runs):
        c = make_client()
        starts.append(c.initialize_ms)
        c.close()
    return statistics.median(starts)


def measure_startup(command: list[str], workspace: Path, runs: int, out: dict[str, Any]) -> None:
    from .lsp import TimedClient

    out["initialize_ms"] = median_initialize_ms(lambda: TimedClient(command, workspace), runs)


def measure_five_apps(command: list[str], workspace: Path, runs: int, out: dict[str, Any]) -> None:
    """Start-up and idle memory of one server answering five apps of one workspace: five copies of
    bench/app under different names (the measured app's packages and saved tables each), each a
    workspace folder, a document of each open (every app's index running)."""
    from codegen.abilities import grant

    from .lsp import TimedClient

    base = Path(tempfile.mkdtemp(prefix="minicloud-bench-apps-"))
    try:
        roots = []
        for i in range(1, 6):
            root = base / f"app{i}"
            shutil.copytree(Path(__file__).with_name("app"), root)
            manifest = root / "minicloud.toml"
            manifest.write_text(manifest.read_text().replace('name = "benchapp"', f'name = "benchapp{i}"'))
            grant(root, "test", PACKAGES)
            saved = workspace / ".minicloud" / "index-test.json"
            if saved.is_file():
                shutil.copyfile(saved, root / ".minicloud" / "index-test.json")
            roots.append(root)
        folders = [{"uri": r.as_uri(), "name": r.name} for r in roots]

        class FoldersClient(TimedClient):  # TimedClient announces a root only: the five apps as folders
            def request(self, method: str, params: Any, timeout: float = 600) -> Any:
                if method == "initialize":
                    params = {**params, "workspaceFolders": folders}
                return super().request(method, params, timeout)

        out["initialize_5_apps_ms"] = median_initialize_ms(lambda: FoldersClient(command, base), runs)
        client = FoldersClient(command, base)
        try:
            text, positions, _ = source_file()
            variable = next(p for kind, p in positions if kind == "injected-variable")
            uris = []
            for root in roots:
                uris.append((root / "bench_big.js").as_uri())
                client.notify("textDocument/didOpen", {"textDocument": {"uri": uris[-1], "languageId": "javascript",
                                                                        "version": 1, "text": text}})
            for uri in uris:  # each app answers from its own index
                items = client.request("textDocument/completion", {"textDocument": {"uri": uri},
                                                                   "position": variable})["items"]
                if not any(i["label"] == "MINICLOUD_ENV" for i in items):
                    raise RuntimeError(f"no variables for {uri}")
            client.wait(1.0)
            out["rss_idle_5_apps_mb"] = client.rss_mb()
        finally:
            client.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def measure_answers(client, workspace: Path, quick: bool, out: dict[str, Any]) -> list:
    """Idle memory, completion, hover and codegen latency, memory after 10k completions."""
    mixed, (table_uri, table_pos), hover_pos = open_documents(client, workspace)
    wait_for_index(client, table_uri, table_pos, 20)
    client.wait(1.0)
    out["rss_idle_mb"] = client.rss_mb()
    n = 600 if quick else 3000
    completion_latencies(client, mixed, 100)  # warm-up
    lat = completion_latencies(client, mixed, n)
    out.update(completion_requests=n, completion_p50_ms=statistics.median(lat), completion_p99_ms=percentile(lat, 99))
    hovers = []
    for k in range(300):
        uri, pos = hover_pos[k % len(hover_pos)]
        hovers.append(client.timed("textDocument/hover", {"textDocument": {"uri": uri}, "position": pos})[0])
    out["hover_p99_ms"] = percentile(hovers, 99)
    gen = [client.timed("workspace/executeCommand", {"command": "minicloud.codegen", "arguments": [
        {"method": "alipay.trade.precreate", "lang": lang}]})[0] for lang in ("node", "python", "java") * 7]
    out["codegen_ms"] = statistics.median(gen)
    completion_latencies(client, mixed, 10_000 - n - 100)
    out["rss_after_10k_completions_mb"] = client.rss_mb()
    return mixed


def _latencies(lines: list[tuple[str, float]]) -> list[float]:
    """Arrival minus the time the app wrote into the line (its third word, in ms)."""
    return [arrived * 1000 - int(line.split()[2]) for line, arrived in lines]


def measure_log_latency(client, site: tuple[str, str], marks: int, out: dict[str, Any]) -> list[float]:
    """Single lines, one every 30 ms: from the app's write to the editor."""
    from bench.load import request

    base, ca = site
    for i in range(marks):
        request(f"{base}/mark?id={i}", ca)
        client.wait(0.03)
    client.wait(1.0)
    lat_logs = _latencies([(line, t) for line, t in client.take_logs() if line.startswith("mark ")])
    out["log_latency_samples"] = len(lat_logs)
    return lat_logs


def measure_log_burst(client, site: tuple[str, str], mixed: list, quick: bool, out: dict[str, Any]) -> None:
    """As many lines as the app can write; completions during it; lines per second received."""
    from bench.load import request

    base, ca = site
    flood_n = 50_000 if quick else 200_000
    flooding = threading.Thread(target=lambda: request(f"{base}/flood?n={flood_n}", ca, timeout=120))
    flooding.start()
    while not client.raw_logs and flooding.is_alive():
        client.wait(0.01)
    flood_lat = completion_latencies(client, mixed, 400 if quick else 1500)
    flooding.join()
    flood: list[tuple[str, float]] = []
    deadline = time.monotonic() + 60
    while len(flood) < flood_n and time.monotonic() < deadline:
        client.wait(0.5)
        flood += [(line, t) for line, t in client.take_logs() if line.startswith("flood ")]
    if len(flood) > 1:
        span = flood[-1][1] - flood[0][1]
        out["log_lines_per_s"] = len(flood) / span if span > 0 else None
        out["log_flood_lines_received"] = len(flood)
        out["log_flood_lines_sent"] = flood_n
        out["log_latency_under_burst_p95_ms"] = percentile(_latencies(flood), 95)
    out["completion_p99_under_burst_ms"] = percentile(flood_lat, 99)


def measure_log_flood(client, site: tuple[str, str], mixed: list, windows: int, lat_logs: list[float],
                      out: dict[str, Any]) -> None:
    """A sustained flood at the goal's rate, in windows that alternate with quiet ones: the ratio compares
    completions under the flood with completions just before it, with the same log stream open, so that
    the machine's drift over a run (it is shared) does not enter it."""
    from bench.load import request

    base, ca = site
    rate, seconds = 12_000, 2.5
    client.take_logs()
    quiet_lat: list[float] = []
    steady_lat: list[float] = []
    steady: list[tuple[str, float]] = []
    for _ in range(windows):
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            quiet_lat += completion_latencies(client, mixed, 20)
        request(f"{base}/steady?rate={rate}&seconds={seconds}", ca)
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            steady_lat += completion_latencies(client, mixed, 20)
        client.wait(0.5)  # the last lines of the window arrive before the next quiet one
        steady += [(line, t) for line, t in client.take_logs() if line.startswith("steady ")]
    client.wait(1.5)
    steady += [(line, t) for line, t in client.take_logs() if line.startswith("steady ")]
    out["log_steady_rate_lines_per_s"] = rate
    out["log_steady_lines_sent"] = int(rate * seconds) * windows
    out["log_steady_lines_received"] = len(steady)
    if steady:
        out["log_latency_p95_ms"] = percentile(_latencies(steady), 95)
        out["log_latency_single_lines_p95_ms"] = percentile(lat_logs, 95) if lat_logs else None
    out["completion_p99_between_floods_ms"] = percentile(quiet_lat, 99)
    out["completion_p99_under_log_flood_ms"] = percentile(steady_lat, 99)
    out["completion_flood_ratio"] = out["completion_p99_under_log_flood_ms"] / out["completion_p99_between_floods_ms"]


# ------------------------------------------------------------------ the run
def machine() -> dict[str, Any]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    docker_version = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                                    capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "docker": docker_version,
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}


def table_rows(results: dict[str, Any]) -> list[tuple[str, float, str, str]]:
    """(metric, value, goal, verdict) for every figure of a run."""
    rows = []
    for key, value in results.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        goal = GOALS.get(key)
        verdict, goal_text = "", ""
        if goal:
            target, op = goal
            ok = value < target if op == "<" else value > target if op == ">" else value <= target
            verdict, goal_text = ("ok" if ok else "MISS"), f"{op} {target:g}"
        rows.append((key, value, goal_text, verdict))
    return rows


def print_table(results: dict[str, Any]) -> None:
    print(f"{'metric':36} {'value':>12}  {'goal':>10}  ")
    for key, value, goal_text, verdict in table_rows(results):
        print(f"{key:36} {value:12.2f}  {goal_text:>10}  {verdict}")


def markdown(results: dict[str, Any]) -> str:
    """The run as README shows it (bench/results/latest.md): written by the bench, never copied by hand."""
    m = results.get("machine", {})
    lines = [f"# Latest benchmark run ({'quick' if results.get('quick') else 'full'})", "",
             f"{m.get('date', '')}, {m.get('cpu', '')}, Python {m.get('python', '')}, Docker {m.get('docker', '')}", "",
             "| figure | median | goal | |", "|---|---|---|---|"]
    lines += [f"| `{key}` | {value:.2f} | {goal} | {verdict} |" for key, value, goal, verdict in table_rows(results)]
    lines += [""] + [f"- {note}" for note in results.get("notes", [])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a run under 5 minutes (fewer repetitions)")
    args = parser.parse_args(argv)
    sys.setswitchinterval(0.0005)  # the client's reader thread must not delay the timed requests
    sys.path.insert(0, str(ROOT))
    subprocess.run([str(ROOT / "scripts" / "ensure-docker.sh")], check=True)
    instance = isolate()

    from docker.errors import APIError

    from codegen.abilities import grant
    from deploy_bridge import engine, images
    from deploy_bridge.cloud import Cloud

    results: dict[str, Any] = {"quick": args.quick}
    workdir = Path(tempfile.mkdtemp(prefix="minicloud-bench-ws-"))
    try:
        workspace = workdir / "benchapp"
        shutil.copytree(Path(__file__).with_name("app"), workspace)
        cloud = Cloud(workspace)
        if not args.quick:
            # cold: no images at all (they are a cache; this run rebuilds them)
            client = engine.client()
            # other instances' containers and release images build on these: never pull the rug from
            # under them; cold is then not measured
            in_use = sorted({c.name for c in client.containers.list(all=True, filters={"label": "minicloud.instance"})})
            for image in client.images.list(filters={"label": "minicloud.image"}) if not in_use else []:
                try:
                    client.images.remove(image.id, force=True)
                except APIError as err:  # e.g. a release image of another instance builds on it
                    in_use.append(f"{', '.join(image.tags)}: {err.explanation}")
            if in_use:
                results["notes"] = [f"env_build_cold_s not measured: other minicloud containers exist ({', '.join(in_use)})"]
            else:
                log("cold build (every image from debootstrap)")
                start = time.perf_counter()
                images.ensure_all(client, ["mariadb", "gateway", "sandbox", "nodejs"])
                results["env_build_cold_images_s"] = time.perf_counter() - start
        log("env build with cached images")
        start = time.perf_counter()
        cloud.build_env("test")
        first = time.perf_counter() - start
        if "env_build_cold_images_s" in results:
            results["env_build_cold_s"] = results.pop("env_build_cold_images_s") + first
            cloud.destroy_env("test")
            start = time.perf_counter()
            cloud.build_env("test")
            first = time.perf_counter() - start
        results["env_build_cached_s"] = first
        for i in range(1, 21):
            cloud.db_query("test", f"CREATE TABLE IF NOT EXISTS t{i:02d} (id INT PRIMARY KEY, c1 INT, c2 VARCHAR(20),"
                                   f" c3 DATETIME, c4 DECIMAL(10,2))")
        grant(workspace, "test", PACKAGES)
        measure_cloud(cloud, 3 if args.quick else 5, results)
        log("language server")
        results["empty_server_completion_p99_ms"] = measure_empty_server(workspace, 500)
        measure_lsp(cloud, workspace, args.quick, results)
        log("a real-sized database (2,000 tables of 25 columns)")
        command = [str(Path(sys.executable).parent / "minicloud-lsp")]
        measure_large_schema(cloud, command, workspace, args.quick, results)
        log("the first seconds after start, beside the empty server")
        measure_first_seconds(command, workspace, 3 if args.quick else 8, results)
        cloud.destroy_env("test", with_data=True)  # the functions and metrics figures get the machine to themselves
        from bench.functions import measure_functions

        measure_functions(workdir, args.quick, results, log)
        measure_metrics(workdir, args.quick, results, log)
        log("canary: failed requests across start, promote and abort")
        measure_canary(workdir, Path(__file__).with_name("app"), args.quick, results, log)
        measure_data(workdir, args.quick, results, log)
        measure_swarm(workdir, args.quick, results, log)
    finally:
        log("removing what the benchmark created")
        cleanup(instance)
        shutil.rmtree(workdir, ignore_errors=True)
    results["machine"] = machine()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    (RESULTS / "latest.md").write_text(markdown(results))
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
