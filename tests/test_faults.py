"""Faults and isolation on the real engine: killed containers and killed deploys, unknown hosts, two
apps with envs of the same name, keys and secrets on disk, failed first builds, the last destroy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import pytest

from bench.load import request
from deploy_bridge.gateway import Edge

from .conftest import copy_example
from .test_cloud_docker import app_containers, edit_message, minicloud, wait_until

pytestmark = pytest.mark.docker


def healthy(url: str, ca: str) -> bool:
    try:
        return request(url + "/healthz", ca, timeout=2)[0] == 200
    except Exception:  # noqa: BLE001 - refused while it comes back
        return False


@pytest.mark.parametrize("role", ["app", "db"])
def test_a_killed_container_of_a_running_env_comes_back_by_itself(cloud_env, docker_engine, role):
    ca = cloud_env.cloud.ca_path()
    victim = cloud_env.cloud.containers("test", role=role, running_only=True)[0]
    docker_engine.api.kill(victim.id)
    victim.reload()
    assert victim.status != "running"
    wait_until(lambda: healthy(cloud_env.url, ca), 60, f"the env answers again after `docker kill` of its {role}")
    victim.reload()
    assert victim.status == "running"
    assert cloud_env.cloud.status("test", stats=False).state == "running"


def test_a_stopped_env_stays_stopped(cloud_env, docker_engine):
    keeper = docker_engine.containers.get(f"mc-{os.environ['MINICLOUD_INSTANCE']}-keeper")
    app = cloud_env.cloud.containers("test", role="app", running_only=True)[0]
    cloud_env.cloud.stop("test")
    try:
        # the keeper saw the app die, and decided to leave it stopped
        wait_until(lambda: f"{app.name} stopped; left stopped".encode() in keeper.logs(), 30,
                   "the keeper handled the stop")
        app.reload()
        assert app.status == "exited"
    finally:
        cloud_env.cloud.start("test")


def test_status_exits_non_zero_when_the_app_does_not_answer(cloud_env, docker_engine):
    app = cloud_env.cloud.containers("test", role="app", running_only=True)[0]
    # freeze the app: it runs, but answers nothing (the keeper has nothing to restart)
    docker_engine.api.pause(app.id)
    try:
        out = minicloud("status", "test", workspace=cloud_env.workspace)
        assert out.returncode == 1 and "degraded" in out.stdout
    finally:
        docker_engine.api.unpause(app.id)
    assert minicloud("status", "test", workspace=cloud_env.workspace).returncode == 0


@pytest.mark.parametrize("moment", ["switching the gateway", "draining"])
def test_a_deploy_killed_at_any_point_is_cleaned_up_by_the_next_verb(cloud_env, docker_engine, moment):
    ca = cloud_env.cloud.ca_path()
    edit_message(cloud_env.workspace, f"killed {uuid.uuid4().hex[:6]}")
    proc = subprocess.Popen([sys.executable, "-m", "deploy_bridge.cli", "--workspace", str(cloud_env.workspace),
                             "deploy", "test"], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if moment in line:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    # whatever serves now has its restart policy and answers
    route = Edge(docker_engine, cloud_env.cloud.settings).route("shop.test.localhost")
    serving = docker_engine.containers.get(route.upstream)
    assert serving.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    wait_until(lambda: healthy(cloud_env.url, ca), 30, "the env answers after the kill")
    # the next verb finds the leftovers and removes them
    cloud_env.cloud.restart("test")
    running = [c for c in app_containers(cloud_env) if c.status == "running"]
    assert len(running) == 1 and len(app_containers(cloud_env)) == 1
    assert cloud_env.cloud.status("test", stats=False).state == "running"


def test_unknown_hosts_get_minicloud_s_404_never_an_app(cloud_env):
    port = cloud_env.cloud.settings.gateway_port
    for host in ("nosuch.prod.localhost", "shop.nosuch.localhost", "typo.test.localhost"):
        out = subprocess.run(["curl", "-sk", "--resolve", f"{host}:{port}:127.0.0.1", "-w", "\n%{http_code}",
                              f"https://{host}:{port}/"], capture_output=True, text=True, timeout=30)
        body, _, code = out.stdout.rpartition("\n")
        assert code == "404", (host, out.stdout)
        assert "minicloud: no app at" in body and "shop" not in body.replace(host, "")


def test_two_apps_with_an_env_of_the_same_name_each_keep_their_sandbox(cloud_env, tmp_path):
    from deploy_bridge.cloud import Cloud
    from deploy_bridge.sandbox import client

    other_ws = copy_example("node-shop", tmp_path)
    manifest = other_ws / "minicloud.toml"
    manifest.write_text(manifest.read_text().replace('name = "shop"', 'name = "bazaar"'))
    other = Cloud(other_ws)
    try:
        other.build_env("test")
        mine, theirs = client.sandbox_info(cloud_env.cloud, "test"), client.sandbox_info(other, "test")
        assert mine["gateway"] != theirs["gateway"] and mine["app_id"] != theirs["app_id"]
        for cloud, info in ((cloud_env.cloud, mine), (other, theirs)):
            status, body = request(info["endpoint"] + "/_sandbox/info", cloud.ca_path())
            assert status == 200 and body["app_id"] == info["app_id"], body
            injected = {v.name: v.value for v in cloud.injected_vars("test")}
            assert injected["ALIPAY_GATEWAY"] == info["gateway"]
    finally:
        other.destroy_env("test", with_data=True)
    # destroying the other app leaves ours whole
    assert request(client.sandbox_info(cloud_env.cloud, "test")["endpoint"] + "/_sandbox/info",
                   cloud_env.cloud.ca_path())[0] == 200


def test_keys_and_secrets_on_disk(cloud_env):
    certs = cloud_env.cloud.settings.instance_dir() / "gateway" / "certs"
    keys = list(certs.glob("*-key.pem"))
    assert keys and all(oct(k.stat().st_mode & 0o777) == "0o600" for k in keys)
    state = cloud_env.workspace / ".minicloud"
    ignore = state / ".gitignore"
    assert ignore.is_file()
    # git itself agrees: nothing under .minicloud/ is added
    subprocess.run(["git", "init", "-q"], cwd=cloud_env.workspace, check=True)
    try:
        listed = subprocess.run(["git", "add", "--dry-run", "."], cwd=cloud_env.workspace, capture_output=True,
                                text=True, check=True).stdout
        assert ".minicloud" not in listed and "server.js" in listed
    finally:
        subprocess.run(["rm", "-rf", str(cloud_env.workspace / ".git")], check=True)


def test_a_failed_first_build_leaves_nothing_behind(docker_engine, tmp_path):
    from deploy_bridge.cloud import Cloud

    ws = copy_example("node-shop", tmp_path)
    manifest = ws / "minicloud.toml"
    manifest.write_text(manifest.read_text().replace('name = "shop"', 'name = "broken"')
                        + '\n[build]\ninstall = "exit 3"\n')
    cloud = Cloud(ws)
    labels = {"label": [f"minicloud.instance={os.environ['MINICLOUD_INSTANCE']}", "minicloud.app=broken"]}
    out = minicloud("env", "build", "test", workspace=ws)
    assert out.returncode != 0
    assert docker_engine.containers.list(all=True, filters=labels) == []
    assert docker_engine.networks.list(filters=labels) == []
    assert docker_engine.volumes.list(filters=labels) == []
    assert cloud.status("test").state == "not-built"


def test_the_last_destroy_removes_the_gateway_and_the_keeper(docker_engine, tmp_path):
    from .conftest import _free_port

    instance = os.environ["MINICLOUD_INSTANCE"] + "-last"
    env = {**os.environ, "MINICLOUD_INSTANCE": instance, "MINICLOUD_GATEWAY_PORT": str(_free_port()),
           "MINICLOUD_HOME": str(tmp_path / "home")}
    ws = copy_example("node-shop", tmp_path)
    try:
        assert minicloud("env", "build", "test", workspace=ws, env=env).returncode == 0
        mine = {"label": f"minicloud.instance={instance}"}
        roles = {c.labels["minicloud.role"] for c in docker_engine.containers.list(filters=mine)}
        assert {"gateway", "keeper", "app"} <= roles
        out = minicloud("env", "destroy", "test", "--with-data", workspace=ws, env=env)
        assert out.returncode == 0, out.stderr
        assert docker_engine.containers.list(all=True, filters=mine) == []
    finally:
        from deploy_bridge.engine import remove_instance

        remove_instance(docker_engine, instance)
