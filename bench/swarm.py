"""A swarm env, measured on the lab of real engines (tests/swarm_lab.py: a manager and two workers in network
namespaces, the registry on the host engine): a deploy of 3 replicas (image built, pushed, every task
updated) and a rollback, each under request loops of every kind of client through the env's gateway
service; then one worker lost at once, under the same loops."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

GOALS = {"swarm_deploy_s": (15.0, "<"), "swarm_deploy_failed_requests": (0, "<="),
         "swarm_failover_failed_requests": (0, "<="), "swarm_rollback_s": (10.0, "<")}

# the app of the bench and of tests/test_swarm_env.py: `version.txt` says what it answers ("broken" fails
# its health check), /slow takes 3 s, and it logs one line when it listens
MANIFEST = """\
[app]
name = "{name}"
runtime = "nodejs"
start = "node server.js"
port = 3000
health = "/healthz"
health_timeout = 10
drain_seconds = 1
drain_timeout = 8

[env.prod]
sandbox = false
engine = "swarm"
replicas = 3
registry = "{registry}"
"""

SERVER = """\
const version = require('fs').readFileSync('version.txt', 'utf8').trim();
require('http').createServer((q, s) => {
  if (q.url === '/healthz') { s.writeHead(version === 'broken' ? 500 : 200); return s.end('ok'); }
  if (q.url === '/slow') return setTimeout(() => s.end('slow ' + version), 3000);
  s.end(version + ' ' + require('os').hostname());
}).listen(3000, () => console.log('listening ' + version));
"""


class Loops:
    """Keep-alive clients, new connections and long requests, all through the gateway, while a step runs."""

    def __init__(self, url: str, ca: str, host: str) -> None:
        from .load import LongRequests, RequestLoop

        self.loops = [RequestLoop(url + "/", ca, clients=2, keep_alive=True, interval=0.02, limit=20_000,
                                  sni_hostname=host),
                      RequestLoop(url + "/", ca, clients=2, interval=0.02, limit=20_000, sni_hostname=host)]
        self.long = LongRequests(url + "/slow", ca, count=3, sni_hostname=host)

    def __enter__(self) -> Loops:
        for loop in self.loops:
            loop.__enter__()
        for loop in self.loops:
            loop.wait_for(20)
        self.long.__enter__()
        self.long.started.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        for loop in self.loops:
            loop.__exit__()
        self.long.__exit__()

    @property
    def failed(self) -> int:
        return sum(len(loop.failures) for loop in self.loops) + sum(1 for r in self.long.results if r != 200)

    @property
    def count(self) -> int:
        return sum(len(loop.statuses) for loop in self.loops) + len(self.long.results)


def write_app(ws: Path, name: str, registry: str, version: str = "v1", replicas: int = 3) -> None:
    """The measured app (MANIFEST, SERVER) in `ws`, answering `version`."""
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "minicloud.toml").write_text(MANIFEST.format(name=name, registry=registry)
                                       .replace("replicas = 3", f"replicas = {replicas}"))
    (ws / "server.js").write_text(SERVER)
    (ws / "version.txt").write_text(f"{version}\n")


def measure_swarm(root: Path, quick: bool, out: dict[str, Any], log) -> None:
    from deploy_bridge import engine
    from deploy_bridge.cloud import Cloud
    from tests.swarm_lab import swarm_lab

    host = engine.client()
    with swarm_lab(workers=2, host=host) as lab:
        lab.start_registry()
        ws = root / "swarmbench"
        name = f"sb{lab.name[-5:]}"
        write_app(ws, name, lab.registry_address, version="v0")
        cloud = Cloud(ws)
        env = lab.swarm_env(cloud)
        log("swarm: the first deploy (the runtime's layers go to the registry and to every node)")
        release, _ = env.deploy({})
        releases = [release]
        url = f"https://{lab.manager_address}:{cloud.settings.gateway_port}"
        host_name = cloud.settings.app_host(name, "prod")
        deploys, rollbacks, failed, asked = [], [], 0, 0
        for run in range(1 if quick else 3):
            (ws / "version.txt").write_text(f"v{run + 1}\n")
            with Loops(url, cloud.ca_path(), host_name) as loops:
                started = time.perf_counter()
                release, _ = env.deploy({})
                deploys.append(time.perf_counter() - started)
            releases.append(release)
            failed, asked = failed + loops.failed, asked + loops.count
            log(f"swarm: deploy {run + 1}: {deploys[-1]:.1f} s, {loops.failed} failed of {loops.count}")
            with Loops(url, cloud.ca_path(), host_name) as loops:
                started = time.perf_counter()
                env.rollback({})
                rollbacks.append(time.perf_counter() - started)
            failed, asked = failed + loops.failed, asked + loops.count
            log(f"swarm: rollback {run + 1}: {rollbacks[-1]:.1f} s, {loops.failed} failed of {loops.count}")
        lab.images.extend(cloud.settings.app_image(name, "prod", r) for r in releases)
        out.update(swarm_deploy_s=statistics.median(deploys), swarm_rollback_s=statistics.median(rollbacks),
                   swarm_deploy_failed_requests=failed, swarm_deploy_requests=asked)
        log("swarm: one worker lost at once")
        lost = lab.workers[1]
        with Loops(url, cloud.ca_path(), host_name) as loops:
            started = time.perf_counter()
            lab.kill(lost)
            deadline = time.monotonic() + 120
            while not (len(tasks := env.tasks()) == 3 and lost.name not in {t.node for t in tasks}
                       and {t.state for t in tasks} == {"running"}):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the lost node's task was not rescheduled within 120 s: {tasks}")
                time.sleep(0.25)
            out["swarm_failover_rescheduled_s"] = time.perf_counter() - started
        out.update(swarm_failover_failed_requests=loops.failed, swarm_failover_requests=loops.count)
        env.destroy()
