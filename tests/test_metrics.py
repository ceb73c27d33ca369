"""Metrics and alerts without an engine: the rule grammar and its manifest errors, the collector's
aggregation of access log lines (and its resume after a restart), the alert state machine, and webhooks
retried with backoff without holding up the others."""

from __future__ import annotations

import http.server
import json
import threading
import time
from pathlib import Path

import pytest

from deploy_bridge.manifest import check_manifest_text, parse_manifest
from deploy_bridge.services.alert_rules import RuleError, parse_rule
from deploy_bridge.services.collector import Collector

BASE = '[app]\nname = "shop"\nruntime = "nodejs"\nstart = "node s.js"\nport = 3000\n\n'


@pytest.mark.parametrize(("text", "metric", "op", "value", "seconds"), [
    ("5xx > 1% for 1m", "5xx", ">", 1.0, 60),
    ("p95 > 500ms for 2m", "p95", ">", 500.0, 120),
    ("p99 >= 1.5s", "p99", ">=", 1500.0, 0),
    ("cpu > 80% for 5m", "cpu", ">", 80.0, 300),
    ("restarts > 0", "restarts", ">", 0.0, 0),
    ("memory > 1GiB for 30s", "memory", ">", 2.0**30, 30),
    ("rps < 1 for 1h", "rps", "<", 1.0, 3600),
])
def test_rules_parse(text, metric, op, value, seconds):
    rule = parse_rule(text, "x")
    assert (rule.metric, rule.op, rule.value, rule.for_seconds) == (metric, op, value, seconds)


@pytest.mark.parametrize(("text", "says"), [
    ("latency > 1s", "unknown metric 'latency'"), ("p95 > 500", "needs a unit"), ("5xx > 1ms", "takes the unit"),
    ("5xx > 1% for 1d", "use s, m or h"), ("5xx > 200%", "at most 100%"), ("cpu >", "is not a rule"),
])
def test_bad_rules_say_what_is_wrong(text, says):
    with pytest.raises(RuleError, match=says):
        parse_rule(text)


def test_manifest_alerts_are_validated_with_file_and_line():
    text = BASE + '[alerts]\nerror_rate = "5xx > 1% for 1m"\nlatency = "p95 > 500 for 2m"\nwebhook = "ftp://x"\n' \
                  'cpu = 80\nnoise = "cpu > 1%"\n'
    problems, _ = check_manifest_text(text, "minicloud.toml")
    found = {(p.line, p.key): p.message for p in problems}
    assert "p95 needs a unit" in found[(9, "alerts.latency")]
    assert "not an http:// or https:// URL" in found[(10, "alerts.webhook")]
    assert "expected string" in found[(11, "alerts.cpu")]
    assert "unknown key in [alerts]" in found[(12, "alerts.noise")]
    assert len(problems) == 4


def test_manifest_alerts_reach_the_manifest(tmp_path):
    text = BASE + '[alerts]\nerror_rate = "5xx > 1% for 1m"\nwebhook = "http://127.0.0.1:9/hook"\n'
    manifest = parse_manifest(text, tmp_path / "minicloud.toml")
    assert manifest.alerts == {"error_rate": "5xx > 1% for 1m", "webhook": "http://127.0.0.1:9/hook"}


class FakeEngine:
    def __init__(self) -> None:
        self.listed = [
            {"Id": "a1", "Names": ["/mc-x-shop-test-app-r1"], "State": "running",
             "Labels": {"minicloud.app": "shop", "minicloud.env": "test", "minicloud.role": "app",
                        "minicloud.release": "r1"}},
            {"Id": "a2", "Names": ["/mc-x-shop-test-app-r2"], "State": "running",
             "Labels": {"minicloud.app": "shop", "minicloud.env": "test", "minicloud.role": "app",
                        "minicloud.release": "r2"}},
        ]

    def containers(self, labels, all=True):
        return self.listed

    def call(self, *args, **kwargs):
        return 404, {}


def line(t: float, release: str, status: int = 200, rt: float = 0.01, addr: str = "172.17.0.1") -> str:
    return json.dumps({"t": t, "host": "shop.test.localhost", "up": f"mc-x-shop-test-app-{release}:3000",
                       "addr": addr, "status": status, "rt": rt, "urt": str(rt), "path": "/"}) + "\n"


def collector(tmp_path: Path) -> Collector:
    (tmp_path / "access").mkdir(exist_ok=True)
    (tmp_path / "access" / "access.log").touch()
    c = Collector(FakeEngine(), "x", tmp_path, tmp_path / "access", "edge")
    c.resume()
    return c


def feed(c: Collector) -> None:
    c.ingest(c.tail.read())
    c.commit()


def test_lines_become_buckets_per_release_and_a_restart_counts_nothing_twice(tmp_path):
    now = time.time()
    log = tmp_path / "access" / "access.log"
    c = collector(tmp_path)
    with log.open("a") as f:
        f.writelines(line(now, "r1", rt=0.001 * (i + 1)) for i in range(100))
        f.writelines(line(now, "r1", status=503) for _ in range(3))
        f.writelines(line(now, "r2", status=404) for _ in range(7))
        f.write(line(now, "r1", addr="127.0.0.1"))  # minicloud's own probe: not counted
        f.write('{"t": 1, "host": "x", "up": "mc-x-shop-test-app-r1:3000", "status": 200, "rt": 0.1')  # half a line
    feed(c)
    rows = {r[0]: r[1:] for r in c.db.execute("SELECT release, SUM(requests), SUM(s4xx), SUM(s5xx), MAX(p95) "
                                              "FROM http GROUP BY release")}
    assert rows["r1"][:3] == (103, 0, 3) and rows["r2"][:3] == (7, 7, 0)
    assert 90 <= rows["r1"][3] <= 100  # ms: the exact p95 of 1..100 ms and three fast ones
    # a new collector on the same files resumes where the last one committed
    with log.open("a") as f:
        f.write(', "urt": "0.1", "path": "/"}\n')
        f.write(line(now, "r2"))
    c2 = collector(tmp_path)
    feed(c2)
    rows = dict(c2.db.execute("SELECT release, SUM(requests) FROM http GROUP BY release"))
    assert rows == {"r1": 104, "r2": 8}
    text = c2.prometheus()
    assert 'minicloud_http_requests_total{app="shop",env="test",role="app",release="r2",code="200"} 1' in text


def test_an_alert_fires_after_its_window_and_resolves(tmp_path):
    c = collector(tmp_path)
    rule = parse_rule("5xx > 1% for 5s", "error_rate")
    key = ("shop", "test", "error_rate", "")
    c._step(key, rule, 50.0, 100.0, None)
    c._step(key, rule, 50.0, 104.5, None)
    assert not c.alert_state[key]["firing"]
    c._step(key, rule, 50.0, 105.0, None)
    assert c.alert_state[key]["firing"]
    c._step(key, rule, 0.0, 106.0, None)
    c._step(key, rule, None, 107.0, None)  # no requests: the condition does not hold
    states = [r[0] for r in c.db.execute("SELECT state FROM alerts ORDER BY id")]
    assert states == ["firing", "resolved"]


class Hooks:
    """A local webhook receiver: /flaky fails twice then takes it, /hang never answers in time, /ok takes it."""

    def __init__(self) -> None:
        self.got: dict[str, list[float]] = {"/flaky": [], "/hang": [], "/ok": []}
        hooks = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("content-length", 0)))
                hooks.got[self.path].append(time.monotonic())
                if self.path == "/hang":
                    time.sleep(8)
                status = 500 if self.path == "/flaky" and len(hooks.got["/flaky"]) <= 2 else 204
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_a_failing_webhook_is_retried_with_backoff_and_blocks_nothing(tmp_path):
    hooks = Hooks()
    c = collector(tmp_path)
    threading.Thread(target=c.outbox_loop, daemon=True).start()
    rule = parse_rule("5xx > 1%", "error_rate")
    c._step(("shop", "test", "error_rate", ""), rule, 50.0, time.time(), hooks.url + "/hang")
    c._step(("shop", "test", "latency", ""), rule, 50.0, time.time(), hooks.url + "/flaky")
    started = time.monotonic()
    c._step(("shop", "test", "cpu", ""), rule, 50.0, time.time(), hooks.url + "/ok")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (len(hooks.got["/flaky"]) < 3 or not hooks.got["/ok"]):
        time.sleep(0.05)
    assert hooks.got["/ok"] and hooks.got["/ok"][0] - started < 1, "the hanging webhook held up the others"
    flaky = hooks.got["/flaky"]
    assert len(flaky) == 3, flaky
    assert flaky[2] - flaky[1] > (flaky[1] - flaky[0]) * 1.5  # backing off

    def recorded() -> dict:
        return dict(c.db.execute("SELECT name, delivered || '/' || attempts FROM alerts"))

    deadline = time.monotonic() + 10  # the deliveries are written just after they are made
    while (recorded().get("latency"), recorded().get("cpu")) != ("1/3", "1/1") and time.monotonic() < deadline:
        time.sleep(0.05)
    rows = recorded()
    assert rows["latency"] == "1/3" and rows["cpu"] == "1/1"
    hooks.server.shutdown()


def test_status_reads_fresh_container_samples_from_the_collector(tmp_path):
    """`status` takes CPU and memory from the collector's recent samples (the engine takes ~1 s a container)."""
    import sqlite3

    from deploy_bridge import metrics
    from deploy_bridge.config import Settings
    from deploy_bridge.services.collector import SCHEMA

    settings = Settings(home=tmp_path, instance="t", gateway_port=1)
    metrics.folder(settings).mkdir(parents=True)
    db = sqlite3.connect(metrics.db_path(settings))
    db.executescript(SCHEMA)
    now = time.time()
    db.executemany("INSERT INTO container_now VALUES (?,?,?,?,?,?,?,?,?,?)", [
        ("fresh", now - 2, "shop", "test", "app", "r1", 12.5, 50 * 2**20, 0, "running"),
        ("stale", now - 60, "shop", "test", "db", None, 3.0, 80 * 2**20, 0, "running"),
        ("stopped", now - 1, "shop", "test", "sandbox", None, None, None, 0, "exited")])
    db.commit()
    db.close()
    assert metrics.recent_samples(settings) == {"fresh": (12.5, 50 * 2**20)}
    assert metrics.recent_samples(Settings(home=tmp_path / "none", instance="t", gateway_port=1)) == {}
