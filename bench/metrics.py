"""Metrics and alerts, measured: what the collector costs the gateway (throughput against a tiny
endpoint with the collector running and paused, interleaved windows of the same run), and how soon an
alert fires once its window is met (an app made to answer 5xx, the webhook on a local receiver)."""

from __future__ import annotations

import contextlib
import json
import shutil
import statistics
import sys
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
    """Throughput with the collector running and paused, in adjacent pairs (alternating which goes first):
    the ratio is the median of the pairs' ratios, so that the machine's drift (other work, the app's JIT)
    cancels within each pair instead of landing on one side."""
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
               metrics_overhead_ratio=statistics.median(b / a for a, b in zip(on, off, strict=True)),
               metrics_overhead_pairs=windows)


def editor_alert_at(editor, since: float, timeout: float) -> float:
    """When the language server's message about the firing alert reached the editor (after `since`)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for method, params, arrived in editor.server_requests:
            if method == "window/showMessageRequest" and arrived > since and "alert firing" in params["message"]:
                return arrived
        editor.wait(0.05)
    raise TimeoutError("the alert never reached the editor")


def measure_alert_delay(cloud, receiver: WebhookReceiver, runs: int, out: dict[str, Any]) -> None:
    """From the first 5xx answer: the rule `5xx > 1% for 10s` is met FOR_SECONDS later; the delay is
    from then to the language server's message in the editor (a client of the real server on the
    workspace), and to the firing webhook's arrival."""
    from bench.lsp import TimedClient

    ca, base = cloud.ca_path(), cloud.url("test")
    delays, hook_delays = [], []
    editor = TimedClient([sys.executable, "-m", "lsp_server"], cloud.workspace)
    with contextlib.closing(editor), RequestLoop(base + "/", ca, interval=0.05, limit=10**7):
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
                shown = editor_alert_at(editor, started, FOR_SECONDS + 30)
                fired = receiver.wait("firing", started, FOR_SECONDS + 30)[0]
            finally:
                stop.set()
                thread.join()
            delays.append(shown - (first[0] + FOR_SECONDS))
            hook_delays.append(fired - (first[0] + FOR_SECONDS))
            resolved = receiver.wait("resolved", fired, 60)[0]
            editor.wait(max(0.0, resolved - time.time()) + 1.5)  # the editor hears it resolve too
    out.update(alert_delay_s=max(delays), alert_delay_median_s=statistics.median(delays), alert_delay_runs=runs,
               alert_webhook_delay_s=max(hook_delays))


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
        measure_overhead(cloud, collector, listen, 5 if quick else 10, 4 if quick else 6, out)
        log("metrics: alert delay (5xx)")
        measure_alert_delay(cloud, receiver, 2 if quick else 4, out)
    finally:
        receiver.server.shutdown()
        cloud.destroy_env("test", with_data=True)
