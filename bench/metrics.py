"""Metrics and alerts, measured: what the collector costs the gateway (throughput against a tiny
endpoint with the collector running and paused, interleaved windows of the same run), and how soon an
alert fires once its window is met (an app made to answer 5xx, the webhook on a local receiver)."""

from __future__ import annotations

import json
import shutil
import statistics
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx

from .load import RequestLoop, WebhookReceiver, trusting

GOALS = {"metrics_overhead_ratio": (1.1, "<"), "alert_delay_s": (5.0, "<")}
FOR_SECONDS = 10
MANIFEST = """\
[app]
name = "metricsbench"
runtime = "nodejs"
start = "node server.js"
port = 3000

[env.test]
sandbox = false

[alerts]
error_rate = "5xx > 1% for {for_seconds}s"
webhook = "http://127.0.0.1:{port}/hook"
"""
SERVER = """\
const http = require('http');
http.createServer((req, res) => {
  const status = req.url === '/fail' ? 500 : 200;
  res.writeHead(status, { 'content-type': 'text/plain' });
  res.end(status === 200 ? 'ok' : 'failed');
}).listen(Number(process.env.PORT || 3000));
"""


def throughput(url: str, ca: str, seconds: float, clients: int = 8) -> float:
    loop = RequestLoop(url, ca, clients=clients, keep_alive=True, limit=10**7)
    with loop:
        loop.wait_for(clients)
        first, start = len(loop.statuses), time.perf_counter()
        time.sleep(seconds)
        done, elapsed = len(loop.statuses), time.perf_counter() - start
    return (done - first) / elapsed


def caught_up(listen: str, timeout: float = 30) -> None:
    """Wait until the collector has read the whole access log (after a pause)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{listen}/health", timeout=2) as r:
                if json.loads(r.read())["lag_bytes"] == 0:
                    return
        except OSError:
            pass
        time.sleep(0.2)


def measure_overhead(cloud, collector, listen: str, windows: int, seconds: float, out: dict[str, Any]) -> None:
    url, ca = cloud.url("test") + "/", cloud.ca_path()
    throughput(url, ca, 2)  # warm: connections, the app's JIT
    on: list[float] = []
    off: list[float] = []
    for i in range(windows):
        for state in (("on", "off") if i % 2 == 0 else ("off", "on")):
            if state == "off":
                collector.pause()
                try:
                    off.append(throughput(url, ca, seconds))
                finally:
                    collector.unpause()
                caught_up(listen)  # its catching up is not counted against either window
            else:
                on.append(throughput(url, ca, seconds))
    out.update(metrics_throughput_on_rps=round(statistics.median(on), 1),
               metrics_throughput_off_rps=round(statistics.median(off), 1),
               metrics_overhead_ratio=statistics.median(off) / statistics.median(on))


def measure_alert_delay(cloud, receiver: WebhookReceiver, runs: int, out: dict[str, Any]) -> None:
    """From the first 5xx answer: the rule `5xx > 1% for 10s` is met FOR_SECONDS later; the delay is
    from then to the firing webhook's arrival."""
    ca, base = cloud.ca_path(), cloud.url("test")
    delays = []
    with RequestLoop(base + "/", ca, interval=0.05, limit=10**7):
        for _ in range(runs):
            stop = threading.Event()
            first: list[float] = []

            def fail(stop: threading.Event = stop, first: list[float] = first) -> None:
                with httpx.Client(verify=trusting(ca), timeout=10) as client:
                    while not stop.is_set():
                        if client.get(base + "/fail").status_code == 500 and not first:
                            first.append(time.time())
                        time.sleep(0.05)

            thread = threading.Thread(target=fail, daemon=True)
            started = time.time()
            thread.start()
            try:
                fired = receiver.wait("firing", started, FOR_SECONDS + 30)[0]
            finally:
                stop.set()
                thread.join()
            delays.append(fired - (first[0] + FOR_SECONDS))
            receiver.wait("resolved", fired, 60)
    out.update(alert_delay_s=max(delays), alert_delay_median_s=statistics.median(delays), alert_delay_runs=runs)


def measure_metrics(root: Path, quick: bool, out: dict[str, Any], log) -> None:
    from deploy_bridge import engine
    from deploy_bridge import metrics as host_metrics
    from deploy_bridge.cloud import Cloud

    receiver = WebhookReceiver()
    ws = root / "metricsbench"
    if ws.exists():
        shutil.rmtree(ws)
    ws.mkdir(parents=True)
    (ws / "server.js").write_text(SERVER)
    (ws / "minicloud.toml").write_text(MANIFEST.format(for_seconds=FOR_SECONDS, port=receiver.port))
    cloud = Cloud(ws)
    cloud.build_env("test")
    try:
        collector = engine.client().containers.get(host_metrics.container_name(cloud.settings))
        listen = collector.labels[host_metrics.LABEL_LISTEN]
        log("metrics: gateway throughput with the collector running and paused")
        measure_overhead(cloud, collector, listen, 3 if quick else 6, 4 if quick else 8, out)
        log("metrics: alert delay (5xx)")
        measure_alert_delay(cloud, receiver, 2 if quick else 4, out)
    finally:
        receiver.server.shutdown()
        cloud.destroy_env("test", with_data=True)
