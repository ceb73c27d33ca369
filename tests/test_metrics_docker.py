"""Metrics and alerts on the real engine: series from real traffic through the gateway, each alert rule
firing and resolving on an app made to misbehave (5xx, slowness, a CPU loop, a crash loop) and reaching
a local webhook receiver, the Prometheus endpoint, and `minicloud top` in a pseudo-terminal."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from bench.load import RequestLoop, WebhookReceiver, request, trusting

pytestmark = pytest.mark.docker

SERVER = """\
const http = require('http');
const fs = require('fs');
const version = 'VERSION';
const FLAG = '/tmp/crashloop';
if (fs.existsSync(FLAG)) {  // a crash loop: the first starts after /crashloop die at once
  const left = Number(fs.readFileSync(FLAG, 'utf8'));
  if (left > 0) { fs.writeFileSync(FLAG, String(left - 1)); setTimeout(() => process.exit(1), 300); }
}
function burn(ms) { const end = Date.now() + ms; while (Date.now() < end) { Math.sqrt(Math.random()); } }
http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  const send = (status, body) => { res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ...body, release: process.env.MINICLOUD_RELEASE, version })); };
  if (url.pathname === '/healthz' || url.pathname === '/ok') return send(200, { ok: true });
  if (url.pathname === '/fail') return send(500, { error: 'made to fail' });
  if (url.pathname === '/slow') return setTimeout(() => send(200, { slow: true }), Number(url.searchParams.get('ms')));
  if (url.pathname === '/burn') { send(200, { burning: true });
    const until = Date.now() + Number(url.searchParams.get('ms'));
    const step = () => { burn(50); if (Date.now() < until) setImmediate(step); }; return setImmediate(step); }
  if (url.pathname === '/crashloop') { fs.writeFileSync(FLAG, url.searchParams.get('times') || '3');
    send(200, { crashing: true }); return setTimeout(() => process.exit(1), 100); }
  send(404, { error: 'not found' });
}).listen(Number(process.env.PORT || 3000));
"""

MANIFEST = """\
[app]
name = "mtest"
runtime = "nodejs"
start = "node server.js"
port = 3000
health = "/healthz"

[env.test]
sandbox = false

[alerts]
error_rate = "5xx > 5% for 3s"
latency = "p95 > 300ms for 3s"
cpu = "cpu > 50% for 4s"
restarts = "restarts > 0"
webhook = "http://127.0.0.1:{port}/hook"
"""


def write_app(workspace: Path, port: int, version: str = "1") -> None:
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / "server.js").write_text(SERVER.replace("VERSION", version))
    (workspace / "minicloud.toml").write_text(MANIFEST.format(port=port))


@pytest.fixture(scope="module")
def metrics_env(docker_engine, tmp_path_factory):
    from deploy_bridge.cloud import Cloud

    receiver = WebhookReceiver()
    workspace = tmp_path_factory.mktemp("metrics") / "mtest"
    write_app(workspace, receiver.port)
    cloud = Cloud(workspace)
    cloud.build_env("test")
    yield cloud, receiver
    receiver.server.shutdown()
    cloud.destroy_env("test", with_data=True)


def get(cloud, path: str, n: int = 1) -> list[int]:
    ca, url = cloud.ca_path(), cloud.url("test") + path
    with httpx.Client(verify=trusting(ca), timeout=30) as client:
        return [client.get(url).status_code for _ in range(n)]


def app_series(cloud, since: float) -> dict[str, dict]:
    from deploy_bridge import metrics

    data = metrics.series(cloud.settings, cloud.app, "test", since)
    return {r["release"]: r for r in data["releases"] if r["role"] == "app"}


def wait_for(check, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_series_count_every_request_per_release(metrics_env):
    cloud, _ = metrics_env
    since = time.time() - 5
    write_app(cloud.workspace, metrics_env[1].port, version=uuid.uuid4().hex[:6])
    first = cloud.deploy("test").release
    assert get(cloud, "/ok", 37) == [200] * 37
    assert get(cloud, "/fail", 3) == [500] * 3
    write_app(cloud.workspace, metrics_env[1].port, version=uuid.uuid4().hex[:6])
    second = cloud.deploy("test").release
    assert get(cloud, "/ok", 23) == [200] * 23
    assert get(cloud, "/nothing", 2) == [404] * 2

    def counted():
        series = app_series(cloud, since)
        return series if series.get(first, {}).get("requests") == 40 and \
            series.get(second, {}).get("requests") == 25 else None

    wait_for(counted, 15, "the collector to count the requests")
    time.sleep(2.5)  # nothing else arrives: minicloud's own probes are not the app's traffic
    series = app_series(cloud, since)
    assert (series[first]["requests"], series[first]["s5xx"], series[first]["s4xx"]) == (40, 3, 0)
    assert (series[second]["requests"], series[second]["s5xx"], series[second]["s4xx"]) == (25, 0, 2)
    assert series[first]["p95_ms"] is not None and series[first]["points"]
    # the CLI reads the same series
    out = subprocess.run([sys.executable, "-m", "deploy_bridge.cli", "-w", str(cloud.workspace), "metrics", "test",
                          "--since", "10m", "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    by_release = {r["release"]: r for r in data["releases"] if r["role"] == "app"}
    assert by_release[first]["requests"] >= 40 and by_release[second]["requests"] >= 25
    # and the containers, sampled on the same 10 s clock
    from deploy_bridge import metrics

    wait_for(lambda: any(c["role"] == "app" and c["memory_max"] for c in
                         metrics.series(cloud.settings, cloud.app, "test", since - 60)["containers"]), 25,
             "a container sample")


def test_prometheus_endpoint_on_its_own_host(metrics_env):
    cloud, _ = metrics_env
    get(cloud, "/ok", 5)
    url = f"https://metrics.localhost:{cloud.settings.gateway_port}/metrics"

    def scraped():
        status, text = request(url, cloud.ca_path())
        return text if status == 200 and 'minicloud_http_requests_total{app="mtest"' in text \
            and "minicloud_container_cpu_percent{" in text else None

    text = wait_for(scraped, 20, "the Prometheus endpoint")
    assert '# TYPE minicloud_http_requests_total counter' in text
    assert 'code="200"' in text and 'env="test"' in text and 'release="' in text
    assert 'minicloud_http_request_duration_seconds_bucket{app="mtest"' in text and 'le="+Inf"' in text
    assert "minicloud_container_memory_bytes{" in text and "minicloud_container_restarts_total{" in text


def test_5xx_alert_fires_and_resolves(metrics_env):
    cloud, receiver = metrics_env
    start = time.time()
    with RequestLoop(cloud.url("test") + "/fail", cloud.ca_path(), clients=2, interval=0.05):
        fired, post = receiver.wait("firing", start, 30, alert="error_rate")
    assert post["app"] == "mtest" and post["env"] == "test" and post["value"] > 5
    assert fired - start >= 3  # held for 3 s first
    receiver.wait("resolved", fired, 30, alert="error_rate")


def alert_cycle(receiver, alert: str, misbehaving, resolved_within: float) -> dict:
    """While `misbehaving` (a context: the app made to misbehave) the alert fires; after, it resolves.
    Returns the firing POST."""
    since = time.time()
    with misbehaving:
        at, post = receiver.wait("firing", since, 30, alert=alert)
    receiver.wait("resolved", at, resolved_within, alert=alert)
    return post


def test_latency_alert_fires_and_resolves(metrics_env):
    cloud, receiver = metrics_env
    slow = RequestLoop(cloud.url("test") + "/slow?ms=500", cloud.ca_path(), clients=4)
    assert alert_cycle(receiver, "latency", slow, 30)["value"] > 300


def test_cpu_alert_fires_and_resolves(metrics_env):
    cloud, receiver = metrics_env
    @contextlib.contextmanager
    def burning():  # the app burns a core for 15 s
        assert get(cloud, "/burn?ms=15000") == [200]
        yield

    fired = alert_cycle(receiver, "cpu", burning(), 40)
    assert fired["value"] > 50 and fired["subject"].startswith(f"mc-{os.environ['MINICLOUD_INSTANCE']}-mtest-test-app")


def test_restarts_alert_fires_on_a_crash_loop_and_resolves(metrics_env):
    cloud, receiver = metrics_env
    start = time.time()
    assert get(cloud, "/crashloop?times=2") == [200]
    fired, post = receiver.wait("firing", start, 30, alert="restarts")
    assert post["value"] >= 1
    # it comes back (Docker's restart policy), and a minute without a restart resolves the alert
    wait_for(lambda: cloud.status("test", stats=False).state == "running", 60, "the app to serve again")
    receiver.wait("resolved", fired, 100, alert="restarts")
    out = subprocess.run([sys.executable, "-m", "deploy_bridge.cli", "-w", str(cloud.workspace), "alerts", "test",
                          "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    events = json.loads(out.stdout)["events"]
    mine = [e for e in events if e["alert"] == "restarts" and e["at"] >= start]
    assert [e["state"] for e in mine][:2] == ["firing", "resolved"]
    assert all(e["delivery"] == "delivered" for e in mine)


def test_top_in_a_pseudo_terminal(metrics_env):
    cloud, _ = metrics_env
    release = cloud.status("test", stats=False).release
    env = {**os.environ, "COLUMNS": "160", "LINES": "40", "TERM": "xterm-256color"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: minicloud top on the terminal
        os.execve(sys.executable, [sys.executable, "-m", "deploy_bridge.cli", "-w", str(cloud.workspace), "top",
                                   "test"], env)
    seen = b""
    try:
        with RequestLoop(cloud.url("test") + "/ok", cloud.ca_path(), interval=0.05):
            deadline = time.time() + 30
            while time.time() < deadline:
                ready, _, _ = select.select([fd], [], [], 0.5)
                if ready:
                    try:
                        seen += os.read(fd, 65536)
                    except OSError:
                        break
                text = seen.decode(errors="replace")
                if release in text and "req/s" in text and "memory" in text and text.count("mtest/test") >= 2:
                    break  # drawn at least twice: it refreshes
        text = seen.decode(errors="replace")
        assert release in text and "req/s" in text and "p95" in text, text[-2000:]
        assert text.count("mtest/test") >= 2, "top did not refresh"
    finally:
        os.kill(pid, signal.SIGINT)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
