"""A swarm env's app service on a lab of real engines (tests/swarm_lab.py: a manager and two workers in
namespaces of their own, the registry on the host engine, which builds and pushes the releases).

Proves: a deploy spreads the replicas over the nodes, the workers pull the release from the registry,
every task answers on the overlay by `tasks.SERVICE`; a second deploy replaces every task (start-first);
an unhealthy release is rolled back by Swarm and the deploy says so; scale; releases from the registry's
tags; a grey release (sticky split, counted per side, promoted with no failed request, judged, removed);
destroy removes the service and the network, and the host engine stays out of the swarm.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import httpx
import pytest

from bench.load import LongRequests, RequestLoop, by_name, trusting
from bench.swarm import write_app
from deploy_bridge.errors import ReleaseUnhealthy
from tests.swarm_lab import swarm_lab

pytestmark = pytest.mark.docker

def answers_by_task(probe, service: str) -> dict[str, str]:
    """What each task answers, asked from a container on the env's overlay network by its address."""
    code, out = probe.exec_run(["sh", "-c", f"getent ahostsv4 tasks.{service} | awk '{{print $1}}' | sort -u"])
    assert code == 0, out
    found = {}
    for ip in out.decode().split():
        code, body = probe.exec_run(["curl", "-fsS", "--max-time", "5", f"http://{ip}:3000/"])
        assert code == 0, f"task {ip}: {body!r}"
        found[ip] = body.decode()
    return found


def under_every_client(url: str, ca, host_name: str, action, long_requests: int = 3):
    """`action()` while keep-alive clients, new connections and `long_requests` slow ones in flight ask through
    the gateway: (its result, the failures of each kind, the slow requests' answers)."""
    kinds = dict(keep_alive=RequestLoop(url + "/", ca, clients=2, keep_alive=True, interval=0.02, limit=3000,
                                        sni_hostname=host_name),
                 new_connections=RequestLoop(url + "/", ca, clients=2, interval=0.02, limit=3000, sni_hostname=host_name))
    long = LongRequests(url + "/slow", ca, count=long_requests, sni_hostname=host_name)
    with kinds["keep_alive"], kinds["new_connections"]:
        for loop in kinds.values():
            loop.wait_for(20)
        with long:
            long.started.wait(10)
            result = action()
    assert all(len(loop.statuses) > 50 for loop in kinds.values()), "too few requests to say anything"
    return result, {kind: loop.failures for kind, loop in kinds.items()}, long.results


def test_an_app_service_deploys_updates_rolls_back_scales_and_goes(docker_engine, tmp_path):
    from deploy_bridge.cloud import Cloud

    host = docker_engine
    host_swarm = host.info()["Swarm"].get("LocalNodeState")
    with swarm_lab(workers=2, host=host) as lab:
        ws, name = tmp_path / "swarmapp", f"sw{lab.name[-5:]}"
        write_app(ws, name, lab.registry_address)
        lab.start_registry()

        cloud = Cloud(ws)
        env = lab.swarm_env(cloud)
        first, image = env.deploy({"MINICLOUD_ENV": "prod"})
        lab.images.extend([image, cloud.settings.app_image(name, "prod", first)])
        assert image == f"{lab.registry_address}/{cloud.settings.app_image(name, 'prod', first)}"
        tasks = env.tasks()
        assert len(tasks) == 3 and {t.release for t in tasks} == {first} and {t.state for t in tasks} == {"running"}
        assert {t.node for t in tasks} == {w.name for w in lab.engines}, "one task on each node"
        for worker in lab.worker_clients:  # the workers had no other way to the image than the registry
            assert any(d.startswith(image.rsplit(":", 1)[0] + "@") for i in worker.images.list()
                       for d in i.attrs.get("RepoDigests") or [])
        service = lab.manager.services.get(env.service_name)
        spec = service.attrs["Spec"]
        assert spec["UpdateConfig"]["Order"] == "start-first" and spec["UpdateConfig"]["FailureAction"] == "rollback"
        assert spec["EndpointSpec"]["Mode"] == "dnsrr" and spec["Labels"]["minicloud.app"] == name

        probe = lab.manager.containers.run(image, ["sleep", "600"], name=f"{lab.name}-probe", detach=True,
                                           network=env.network_name, labels=lab.labels)
        answers = answers_by_task(probe, env.service_name)
        assert len(answers) == 3 and all(a.startswith("v1 ") for a in answers.values()), answers

        # the env's HTTPS gateway, a service publishing its port on the manager, reaches every task
        url, host_name = f"https://{lab.manager_address}:{cloud.settings.gateway_port}", cloud.settings.app_host(name, "prod")
        # (nginx takes the first of the addresses Docker's DNS shuffled, kept a second: ask until each answered)
        seen, deadline = set(), time.monotonic() + 20
        with httpx.Client(verify=trusting(cloud.ca_path()), timeout=10) as client:
            while len(seen) < 3 and time.monotonic() < deadline:
                seen.add(client.get(url + "/", **by_name(host_name)).text)
                time.sleep(0.1)
        assert len(seen) == 3 and all(a.startswith("v1 ") for a in seen), seen

        # a second release replaces every task, while every kind of client keeps asking through the gateway
        (ws / "version.txt").write_text("v2\n")
        (second, _), failed, long = under_every_client(url, cloud.ca_path(), host_name,
                                                       lambda: env.deploy({"MINICLOUD_ENV": "prod"}))
        assert failed == {"keep_alive": [], "new_connections": []}, failed
        assert long == [200] * 3, f"requests in flight during the deploy: {long}"

        lab.images.append(cloud.settings.app_image(name, "prod", second))
        assert {t.release for t in env.tasks()} == {second}
        answers = answers_by_task(probe, env.service_name)
        assert len(answers) == 3 and all(a.startswith("v2 ") for a in answers.values()), answers
        assert env.releases() == sorted([first, second])

        # a release that never gets healthy: Swarm rolls it back, the deploy says so, v2 keeps answering
        (ws / "version.txt").write_text("broken\n")
        with pytest.raises(ReleaseUnhealthy, match=r"rolled it back|did not") as failed:
            env.deploy({"MINICLOUD_ENV": "prod"})
        assert env.service_name in str(failed.value)
        assert {t.release for t in env.tasks()} == {second}
        assert all(a.startswith("v2 ") for a in answers_by_task(probe, env.service_name).values())
        lab.images.extend(i.tags[0] for i in host.images.list(name=f"{cloud.settings.prefix}-{name}") if i.tags)

        env.scale(1)
        assert len(env.tasks()) == 1
        env.scale(3)
        assert len(env.tasks()) == 3 and {t.release for t in env.tasks()} == {second}

        # the same through the CLI, as a user types it: DOCKER_HOST names the manager, the host engine builds
        def cli(*args: str, check: bool = True, engine: str | None = None,
                extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
            run = subprocess.run([sys.executable, "-m", "deploy_bridge.cli", *args], cwd=ws, capture_output=True,
                                 text=True, timeout=600,
                                 env={**os.environ, "DOCKER_HOST": engine or f"unix://{lab.engines[0].sock}",
                                      "MINICLOUD_BUILD_HOST": "unix:///var/run/docker.sock", **(extra or {})})
            assert not check or run.returncode == 0, run.stderr + run.stdout
            return run

        status = json.loads(cli("status", "prod", "--json").stdout)
        assert status["state"] == "running" and status["release"] == second and len(status["tasks"]) == 3
        assert {t["health"] for t in status["tasks"]} == {"healthy"}, "running: past its health check"
        assert re.search(rf"^  task \d +running +healthy +{lab.name}-\S+ +{second}$", cli("status", "prod").stdout, re.M)
        assert json.loads(cli("scale", "prod", "2", "--json").stdout)["tasks"].__len__() == 2
        (ws / "version.txt").write_text("v3\n")
        third = json.loads(cli("deploy", "prod", "--json").stdout)["release"]
        lab.images.append(cloud.settings.app_image(name, "prod", third))
        assert {t.release for t in env.tasks()} == {third} and len(env.tasks()) == 2, "the scale is kept"
        listed = json.loads(cli("releases", "prod", "--json").stdout)["releases"]
        ids = [r["id"] for r in listed]  # newest first; the rolled-back release was pushed too
        assert len(ids) == 4 and [ids[0], *ids[2:]] == [third, second, first] and ids[1] in str(failed.value)
        assert [r["current"] for r in listed] == [True, False, False, False]
        rolled = json.loads(cli("rollback", "prod", "--json").stdout)  # to the release before the last update
        assert (rolled["release"], rolled["previous"]) == (second, third)
        assert {t.release for t in env.tasks()} == {second}
        assert json.loads(cli("rollback", "prod", "--to", third, "--json").stdout)["release"] == third
        unknown = cli("rollback", "prod", "--to", "1999", check=False)
        assert unknown.returncode != 0 and "no release of prod starts with '1999'" in unknown.stderr
        refused = cli("db", "prod", "-e", "SELECT 1", check=False)  # the env was deployed, never built
        assert refused.returncode != 0 and "has no database yet" in refused.stderr and "env build" in refused.stderr

        # the app's log, every task's lines with their release, in the local envs' line format
        lines = [json.loads(line) for line in cli("logs", "prod", "--role", "app", "--json").stdout.splitlines()]
        assert {"role": "app", "release": third, "line": "listening v3"} in [
            {k: v for k, v in line.items() if k != "time"} for line in lines], lines[-5:]
        assert lines == sorted(lines, key=lambda line: line["time"])
        text = cli("logs", "prod", "--role", "app", "--tail", "50").stdout
        assert re.search(rf"^\S+Z app {third} \| listening v3$", text, re.M), text[-500:]

        # a grey release: the new release as a service beside the app's, for half of the users and sticky
        (ws / "version.txt").write_text("v4\n")
        grey = json.loads(cli("deploy", "prod", "--canary", "50", "--json").stdout)
        fourth, canary_service = grey["release"], cloud.settings.container(name, "prod", "canary")
        lab.images.append(cloud.settings.app_image(name, "prod", fourth))
        assert (grey["canary"], grey["previous"]) == ({"percent": 50, "state": "running"}, third)
        status = json.loads(cli("status", "prod", "--json").stdout)
        assert status["release"] == third and [t["release"] for t in status["tasks"] if t["canary"]] == [fourth]
        assert re.search(rf"^  task .* {fourth}  canary$", cli("status", "prod").stdout, re.M)
        users = [httpx.Client(verify=trusting(cloud.ca_path()), timeout=10) for _ in range(40)]
        sides = [user.get(url + "/", **by_name(host_name)).text.split()[0] for user in users]
        assert set(sides) == {"v3", "v4"}, sides
        for user, side in zip(users, sides, strict=True):  # the gateway's cookie keeps each user on a side
            assert {user.get(url + "/", **by_name(host_name)).text.split()[0] for _ in range(3)} == {side}
            user.close()
        view = json.loads(cli("canary", "prod", "--json").stdout)  # each side as the gateway counted it
        assert (view["percent"], view["baseline"]["release"], view["canary"]["release"]) == (50, third, fourth)
        assert view["canary"]["requests"] == 4 * sides.count("v4") and view["canary"]["error_rate"] == 0
        assert view["baseline"]["requests"] == 4 * sides.count("v3") and view["canary"]["p95_ms"] > 0
        again = cli("deploy", "prod", check=False)
        assert again.returncode != 0 and "a canary already runs" in again.stderr, again.stderr
        # the editor's status bar: the engine reader's pulse has the env's metrics and the split
        with httpx.Client(verify=trusting(cloud.ca_path()), timeout=10) as client:  # requests of the last seconds
            for _ in range(20):  # each as a new user: either side
                client.cookies.clear()
                client.get(url + "/", **by_name(host_name))
        pulse = subprocess.run([sys.executable, "-c", "import json; from deploy_bridge.cloud import Cloud; "
                                "from lsp_server.engine_view import read_pulse; "
                                "from pathlib import Path; print(json.dumps(read_pulse(Cloud(Path('.')), 'prod', with_routes=True)))"],
                               cwd=ws, capture_output=True, text=True, timeout=120,
                               env={**os.environ, "DOCKER_HOST": f"unix://{lab.engines[0].sock}"})
        assert pulse.returncode == 0, pulse.stderr
        pulse = json.loads(pulse.stdout)
        assert pulse["canary"] == {"percent": 50, "serving": third, "canary": fourth}, pulse["canary"]
        assert {r["release"] for r in pulse["live"]["releases"] if r["role"] == "app"} >= {third, fourth}, pulse["live"]
        assert any(r["path"] == "/" for r in pulse["routes"]), pulse["routes"]

        # promoted under every kind of client: the app service rolls to it, the canary drains and goes
        promoted, failed, long = under_every_client(url, cloud.ca_path(), host_name, long_requests=4,
                                                    action=lambda: json.loads(cli("promote", "prod", "--json").stdout))
        assert failed == {"keep_alive": [], "new_connections": []}, failed
        assert long == [200] * 4, f"requests in flight during the promote: {long}"
        assert (promoted["release"], promoted["previous"]) == (fourth, third)
        assert {t.release for t in env.tasks()} == {fourth} and len(env.tasks()) == 2, "the scale is kept"
        assert not lab.manager.services.list(filters={"name": canary_service})
        with httpx.Client(verify=trusting(cloud.ca_path()), timeout=10) as client:
            assert {client.get(url + "/", **by_name(host_name)).text.split()[0] for _ in range(10)} == {"v4"}

        # a judged canary that gets no request in its window is removed, saying why; rollback removes one too
        (ws / "version.txt").write_text("v5\n")
        aborted = cli("deploy", "prod", "--canary", "30", "--judge", "10s", "--json", check=False)
        judged = json.loads(aborted.stdout)
        assert aborted.returncode == 1, "an aborted canary is a failed deploy to a script"
        lab.images.append(cloud.settings.app_image(name, "prod", judged["release"]))
        assert judged["canary"]["state"] == "aborted" and "no request" in judged["canary"]["reason"], judged
        assert not lab.manager.services.list(filters={"name": canary_service})
        grey = json.loads(cli("deploy", "prod", "--canary", "30", "--json").stdout)
        lab.images.append(cloud.settings.app_image(name, "prod", grey["release"]))
        removed = json.loads(cli("rollback", "prod", "--json").stdout)
        assert (removed["release"], removed["previous"]) == (fourth, grey["release"])
        assert not lab.manager.services.list(filters={"name": canary_service})
        assert {t.release for t in env.tasks()} == {fourth}

        status_before_restart = json.loads(cli("status", "prod", "--json").stdout)
        restarted = json.loads(cli("restart", "prod", "--json").stdout)
        assert restarted["state"] == "running" and {t["release"] for t in restarted["tasks"]} == {fourth}
        assert not {t["id"] for t in restarted["tasks"]} & {t["id"] for t in status_before_restart["tasks"]}
        assert json.loads(cli("stop", "prod", "--json").stdout)["state"] == "stopped"
        # a stopping task may finish what it serves for up to the drain time, and Docker's DNS forgets it a
        # moment after: then the gateway says there is no running task (each answer within its 2 s DNS timeout)
        deadline = time.monotonic() + 30
        with httpx.Client(verify=trusting(cloud.ca_path()), timeout=10) as client:
            while (stopped := client.get(url + "/", **by_name(host_name))).status_code != 503:
                assert stopped.status_code in (200, 502), (stopped.status_code, stopped.text)
                assert time.monotonic() < deadline, "the stopped app does not answer 503 after 30 s"
                time.sleep(0.25)
        assert "has no running task" in stopped.text, stopped.text
        started = json.loads(cli("start", "prod", "--json").stdout)
        assert started["state"] == "running" and len(started["tasks"]) == 2, "the count from before the stop"

        # the manager as a remote machine is named: DOCKER_HOST=ssh://USER@ADDRESS:PORT, through the system's ssh
        over_ssh, ssh_env = lab.start_sshd()
        scaled = json.loads(cli("scale", "prod", "3", "--json", engine=over_ssh, extra=ssh_env).stdout)
        assert len(scaled["tasks"]) == 3 and {t["node"] for t in scaled["tasks"]} == {w.name for w in lab.engines}
        tail = cli("logs", "prod", "--role", "app", "--tail", "5", engine=over_ssh, extra=ssh_env).stdout
        assert re.search(rf"^\S+Z app {fourth} \| listening v4$", tail, re.M), tail
        assert len(env.tasks()) == 3, "the manager the ssh engine reached is the lab's"

        # last, a worker lost at once (its engine and containers killed): Swarm starts its task on the others;
        # the gateway tries the next task when one does not answer, so the URL keeps answering
        env.scale(3)
        lost = next(w for w in lab.workers if w.name in {t.node for t in env.tasks()})
        kinds = dict(keep_alive=RequestLoop(url + "/", cloud.ca_path(), clients=2, keep_alive=True, interval=0.02,
                                            limit=5000, sni_hostname=host_name),
                     new_connections=RequestLoop(url + "/", cloud.ca_path(), clients=2, interval=0.02, limit=5000,
                                                 sni_hostname=host_name))
        with kinds["keep_alive"], kinds["new_connections"]:
            for loop in kinds.values():
                loop.wait_for(20)
            lab.kill(lost)
            deadline = time.monotonic() + 120
            while not (len(tasks := env.tasks()) == 3 and lost.name not in {t.node for t in tasks}
                       and {t.state for t in tasks} == {"running"}):
                assert time.monotonic() < deadline, f"the lost node's task was not rescheduled: {tasks}"
                time.sleep(0.5)
            after = {kind: len(loop.statuses) for kind, loop in kinds.items()}
            for kind, loop in kinds.items():
                loop.wait_for(after[kind] + 20)
        failed = {kind: loop.failures for kind, loop in kinds.items()}
        print(f"failover: {sum(len(f) for f in failed.values())} failed of "
              f"{sum(len(loop.statuses) for loop in kinds.values())} requests")
        assert failed == {"keep_alive": [], "new_connections": []}, failed
        probe.remove(force=True)
        cli("env", "destroy", "prod")
        assert not lab.manager.services.list(filters={"name": env.service_name})
        assert not [n for n in lab.manager.networks.list(names=[env.network_name]) if n.name == env.network_name]
    assert host.info()["Swarm"].get("LocalNodeState") == host_swarm, "the host engine stays out of the swarm"
