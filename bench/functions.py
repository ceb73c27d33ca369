"""Cloud functions, measured: cold starts (pool warm, and from zero), warm overhead against the same
handler in a plain HTTP server behind the same gateway, P95 as load doubles, a reserved burst, and a
code deploy. Each figure against a baseline measured in the same run."""

from __future__ import annotations

import concurrent.futures
import shutil
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from .load import trusting

# a workspace of an app and functions (the tests use it too): the app part and the pool, functions to add
WORKSPACE_HEAD = """\
[app]
name = "{name}"
runtime = "nodejs"
start = "node server.js"
port = 3000

[env.test]
sandbox = false

[functions]
pool = {pool}
keep_alive = 120

"""
MANIFEST = WORKSPACE_HEAD + """\
[functions.echo]
memory = 128

[functions.work]
memory = 128
max_instances = 20

[functions.burst]
memory = 128
reserved = 4
"""

# the same 20 ms of work in a function and in the plain server
WORK = "await new Promise((r) => setTimeout(r, event.ms || 0));"
SERVER = """\
const http = require('http');
http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', async () => {
    const event = JSON.parse(body || '{}');
    WORK
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ echo: event }));
  });
}).listen(Number(process.env.PORT || 3000));
""".replace("WORK", WORK)
FUNCTION = "exports.main = async (event) => { WORK return { echo: event }; };\n".replace("WORK", WORK)
GOALS = {"fn_cold_start_p95_ms": (100.0, "<"), "fn_cold_from_zero_p95_ms": (1000.0, "<"),
         "fn_warm_overhead_ratio": (1.5, "<"), "fn_p95_growth_ratio": (1.5, "<"),
         "fn_reserved_burst_ratio": (1.5, "<"), "fn_code_deploy_s": (1.0, "<")}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def workspace(root: Path, name: str, pool: int) -> Path:
    ws = root / name
    if ws.exists():
        shutil.rmtree(ws)
    for fn in ("echo", "work", "burst"):
        (ws / "functions" / fn).mkdir(parents=True)
        (ws / "functions" / fn / "index.js").write_text(FUNCTION)
    (ws / "server.js").write_text(SERVER)
    (ws / "minicloud.toml").write_text(MANIFEST.format(name=name, pool=pool))
    return ws


class Caller:
    """Timed POSTs through the gateway on one keep-alive connection (what an app's client does)."""

    def __init__(self, cloud) -> None:
        self.base = cloud.url("test")
        self.client = httpx.Client(verify=trusting(cloud.ca_path()), timeout=60)

    def post(self, path: str, event: dict) -> tuple[float, httpx.Response]:
        started = time.perf_counter()
        reply = self.client.post(self.base + path, json=event)
        return (time.perf_counter() - started) * 1000, reply

    def close(self) -> None:
        self.client.close()


def wait_pool(cloud, runtime: str, at_least: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while cloud.fn_list("test")["pool"].get(runtime, 0) < at_least:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {runtime} pool did not reach {at_least} within {timeout}s")
        time.sleep(0.05)


def bump(ws: Path, name: str, i: int) -> None:
    path = ws / "functions" / name / "index.js"
    path.write_text(FUNCTION + f"// version {i} {time.time_ns()}\n")


def measure_cold(cloud, ws: Path, tries: int) -> list[float]:
    """A new code version each try, the pool warm: the first call takes a pool instance and loads the code."""
    times = []
    caller = Caller(cloud)
    try:
        for i in range(tries):
            bump(ws, "echo", i)
            cloud.fn_deploy("test", ["echo"])
            wait_pool(cloud, "nodejs", 1)
            ms, reply = caller.post("/fn/echo", {"i": i})
            if reply.headers.get("x-minicloud-cold") == "true":
                times.append(ms)
    finally:
        caller.close()
    return times


def measure_warm(cloud, n: int) -> tuple[list[float], list[float]]:
    caller = Caller(cloud)
    try:
        caller.post("/fn/echo", {})
        fn, plain = [], []
        for _ in range(n):  # interleaved: the machine's drift enters both alike
            fn.append(caller.post("/fn/echo", {"x": 1})[0])
            plain.append(caller.post("/echo", {"x": 1})[0])
        return fn, plain
    finally:
        caller.close()


def open_loop(cloud, rate: float, seconds: float) -> list[float]:
    """Arrivals at a fixed rate whatever the answers (open loop); the latency of each. The callers keep
    their connections (as mini-program clients do), so the figure is the scheduler's, not TLS set-ups."""
    latencies: list[float] = []
    lock = threading.Lock()
    shared = httpx.Client(verify=trusting(cloud.ca_path()), timeout=60,
                          limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
    url = cloud.url("test") + "/fn/work"

    def one() -> None:
        started = time.perf_counter()
        reply = shared.post(url, json={"ms": 20})
        if reply.status_code == 200:
            with lock:
                latencies.append((time.perf_counter() - started) * 1000)

    # warm connections, as a running client has them
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: shared.post(url, json={"ms": 0}), range(8)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
        start = time.perf_counter()
        for k in range(int(rate * seconds)):
            delay = start + k / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one)
    shared.close()
    return latencies


def measure_burst(cloud, rounds: int, path: str = "/fn/burst") -> tuple[list[float], list[float]]:
    """Four calls at once after 0.5 s idle (on the four reserved instances), against the same four calls
    at once while warm (right after another burst): the figure isolates what idleness costs (a cold
    start would show here), not what four concurrent calls cost on this machine's cores."""
    burst, warm = [], []
    callers = [Caller(cloud) for _ in range(4)]  # four clients with their connections open

    def four() -> list[float]:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            return [ms for ms, _ in pool.map(lambda c: c.post(path, {}), callers)]

    try:
        four()
        for _ in range(rounds):
            time.sleep(0.5)  # idle between bursts, by design of the figure
            burst += four()
            warm += four()  # at once again: the instances are warm
    finally:
        for c in callers:
            c.close()
    return burst, warm


def measure_deploy(cloud, ws: Path, runs: int) -> list[float]:
    """Changed code until new invocations run it."""
    out = []
    caller = Caller(cloud)
    try:
        for i in range(runs):
            marker = f"deploy-{i}-{time.time_ns()}"
            (ws / "functions" / "echo" / "index.js").write_text(
                f"exports.main = async () => ({{ marker: '{marker}' }});\n")
            started = time.perf_counter()
            cloud.fn_deploy("test", ["echo"])
            while caller.post("/fn/echo", {})[1].json().get("marker") != marker:
                pass
            out.append(time.perf_counter() - started)
    finally:
        caller.close()
    return out


def memory_mb(client, labels: list[str]) -> float | None:
    found = client.containers.list(filters={"label": labels})
    if not found:
        return None
    stats = found[0].stats(stream=False)
    mem = stats.get("memory_stats", {})
    cache = mem.get("stats", {}).get("cache", 0) or mem.get("stats", {}).get("inactive_file", 0)
    return (mem.get("usage", 0) - cache) / 2**20


def measure_functions(root: Path, quick: bool, out: dict[str, Any], log) -> None:
    from deploy_bridge import engine
    from deploy_bridge.cloud import Cloud

    cloud = Cloud(workspace(root, "fnbench", pool=2))
    cloud.build_env("test")
    try:
        log("functions: cold starts with the pool warm")
        cold = measure_cold(cloud, cloud.workspace, 20 if quick else 40)
        out["fn_cold_start_p50_ms"] = statistics.median(cold)
        out["fn_cold_start_p95_ms"] = percentile(cold, 95)
        out["fn_cold_start_tries"] = len(cold)
        log("functions: warm calls against the same handler in a plain server")
        fn, plain = measure_warm(cloud, 300 if quick else 1000)
        out.update(fn_warm_p50_ms=statistics.median(fn), fn_warm_p99_ms=percentile(fn, 99),
                   plain_server_p50_ms=statistics.median(plain), plain_server_p99_ms=percentile(plain, 99))
        out["fn_warm_overhead_ratio"] = out["fn_warm_p50_ms"] / out["plain_server_p50_ms"]
        log("functions: P95 as the arrival rate doubles")
        seconds = 5 if quick else 20
        open_loop(cloud, 10, 3)  # the function is deployed and running before the first step counts
        steps = {rate: open_loop(cloud, rate, seconds) for rate in (10, 20, 40, 80)}
        out.update({f"fn_p95_at_{rate}_per_s_ms": percentile(lat, 95) for rate, lat in steps.items()})
        out["fn_p95_growth_ratio"] = percentile(steps[80], 95) / percentile(steps[10], 95)
        log("functions: a burst on the reserved instances")
        burst, warm = measure_burst(cloud, 5 if quick else 20)
        out["fn_reserved_burst_ratio"] = percentile(burst, 99) / percentile(warm, 99)
        # the baseline: the same burst on the plain server (four calls at once on this machine's cores)
        burst, warm = measure_burst(cloud, 5 if quick else 20, "/echo")
        out["plain_server_burst_ratio"] = percentile(burst, 99) / percentile(warm, 99)
        log("functions: code deploys")
        out["fn_code_deploy_s"] = statistics.median(measure_deploy(cloud, cloud.workspace, 3 if quick else 10))
        client = engine.client()
        instance = cloud.settings.instance
        out["fn_pool_instance_idle_rss_mb"] = memory_mb(client, [f"minicloud.instance={instance}",
                                                                 "minicloud.role=function", "minicloud.app=fnbench"])
        out["fn_scheduler_idle_rss_mb"] = memory_mb(client, [f"minicloud.instance={instance}",
                                                             "minicloud.role=functions", "minicloud.app=fnbench"])
    finally:
        cloud.destroy_env("test", with_data=True)

    log("functions: cold starts from zero (no pool)")
    zero = Cloud(workspace(root, "fnzero", pool=0))
    zero.build_env("test")
    try:
        times = []
        caller = Caller(zero)
        try:
            for i in range(10 if quick else 20):
                bump(zero.workspace, "echo", i)
                zero.fn_deploy("test", ["echo"])
                times.append(caller.post("/fn/echo", {})[0])
        finally:
            caller.close()
        out["fn_cold_from_zero_p95_ms"] = percentile(times, 95)
    finally:
        zero.destroy_env("test", with_data=True)
