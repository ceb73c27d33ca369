"""The local cloud on the real Docker engine: deploys, rollback, restart, failures, labels, data.

Every test sets up what it reads (rows, releases) and restores what it changes, so the tests pass in
any order and alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from bench.load import RequestLoop, request
from deploy_bridge.errors import BuildFailed, DeployBusy, ReleaseUnhealthy

from .conftest import copy_example

pytestmark = pytest.mark.docker


def minicloud(*args: str, workspace: Path, check: bool = False, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "deploy_bridge.cli", "--workspace", str(workspace), *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=600, **kw)


def edit_message(workspace: Path, text: str) -> None:
    server = workspace / "server.js"
    source = server.read_text()
    start = source.index("message: '") + len("message: '")
    end = source.index("'", start)
    server.write_text(source[:start] + text + source[end:])


def app_containers(cloud_env) -> list:
    return cloud_env.cloud.containers(cloud_env.env, role="app")


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.1)


def add_product(cloud_env, ca: str) -> str:
    name = f"item-{uuid.uuid4().hex[:8]}"
    status, body = request(cloud_env.url + "/products", ca, {"name": name, "price_cents": 100})
    assert status == 201, body
    return name


def product_names(cloud_env, ca: str) -> set[str]:
    status, rows = request(cloud_env.url + "/products", ca)
    assert status == 200, rows
    return {r["name"] for r in rows}


@pytest.fixture
def ca(cloud_env) -> str:
    return cloud_env.cloud.ca_path()


@pytest.fixture
def two_releases(cloud_env) -> tuple[str, str]:
    """At least two releases, the newer one serving: (older, current)."""
    edit_message(cloud_env.workspace, f"release {uuid.uuid4().hex[:6]}")
    current = cloud_env.cloud.deploy("test").release
    older = next(r.id for r in cloud_env.cloud.releases("test") if r.id < current)
    return older, current


def test_env_serves_https_and_keeps_rows(cloud_env, ca):
    name = add_product(cloud_env, ca)
    assert name in product_names(cloud_env, ca)
    status, root = request(cloud_env.url + "/", ca)
    assert root["env"] == "test" and root["release"] == cloud_env.cloud.status("test").release


def test_deploy_switches_with_no_failed_request(cloud_env, ca):
    before = cloud_env.cloud.status("test", stats=False).release
    text = f"release {uuid.uuid4().hex[:6]}"
    edit_message(cloud_env.workspace, text)
    with RequestLoop(cloud_env.url + "/products", ca) as loop:
        loop.wait_for(5)
        result = cloud_env.cloud.deploy("test")
        count = len(loop.statuses)
        loop.wait_for(count + 5)
    assert loop.failures == [], f"{len(loop.failures)} of {len(loop.statuses)} requests failed"
    assert result.previous == before and result.release > before
    assert request(cloud_env.url + "/", ca)[1]["message"] == text
    running = [c for c in app_containers(cloud_env) if c.status == "running"]
    assert [c.labels["minicloud.release"] for c in running] == [result.release]


def test_rollback_without_rebuild_and_no_failed_request(cloud_env, ca, two_releases, docker_engine):
    older, current = two_releases
    name = add_product(cloud_env, ca)
    mine = {"label": ["minicloud.app=shop", "minicloud.env=test", f"minicloud.instance={os.environ['MINICLOUD_INSTANCE']}"]}
    images_before = {i.id for i in docker_engine.images.list(filters=mine)}
    with RequestLoop(cloud_env.url + "/products", ca) as loop:
        loop.wait_for(5)
        result = cloud_env.cloud.rollback("test")
    assert loop.failures == []
    assert result.release == older and result.previous == current
    images_after = {i.id for i in docker_engine.images.list(filters=mine)}
    assert images_after == images_before, "rollback must not build anything"
    assert request(cloud_env.url + "/", ca)[1]["release"] == older
    assert name in product_names(cloud_env, ca)
    # and forward again with --to, through the CLI
    out = minicloud("--json", "rollback", "test", "--to", current[:17], workspace=cloud_env.workspace)
    assert out.returncode == 0, out.stderr
    assert request(cloud_env.url + "/", ca)[1]["release"] == current


def test_restart_keeps_rows_and_release(cloud_env, ca):
    name = add_product(cloud_env, ca)
    release = cloud_env.cloud.status("test", stats=False).release
    status = cloud_env.cloud.restart("test")
    assert status.state == "running" and status.release == release
    assert name in product_names(cloud_env, ca)


def test_stop_then_start(cloud_env, ca):
    name = add_product(cloud_env, ca)
    stopped = cloud_env.cloud.stop("test")
    try:
        assert stopped.state == "stopped"
        code, body = request(cloud_env.url + "/", ca)
        assert code == 503 and "stopped" in body
        out = minicloud("status", "test", workspace=cloud_env.workspace)
        assert out.returncode == 1 and "stopped" in out.stdout
    finally:
        started = cloud_env.cloud.start("test")
    assert started.state == "running"
    assert name in product_names(cloud_env, ca)


def test_crashing_release_is_removed_and_old_keeps_serving(cloud_env, ca):
    serving = cloud_env.cloud.status("test", stats=False).release
    releases_before = [r.id for r in cloud_env.cloud.releases("test")]
    server = cloud_env.workspace / "server.js"
    good = server.read_text()
    server.write_text(good + "\nthrow new Error('boom at start');\n")
    try:
        with pytest.raises(ReleaseUnhealthy) as err:
            cloud_env.cloud.deploy("test")
    finally:
        server.write_text(good)
    assert "boom at start" in err.value.render()
    assert request(cloud_env.url + "/", ca)[1]["release"] == serving
    assert [c.labels["minicloud.release"] for c in app_containers(cloud_env)] == [serving]
    assert [r.id for r in cloud_env.cloud.releases("test")] == releases_before, "the failed image must go"


def deploy_with_manifest(cloud_env, old: str, new: str) -> subprocess.CompletedProcess:
    """`minicloud deploy test` with one edit to minicloud.toml, restored after."""
    manifest = cloud_env.workspace / "minicloud.toml"
    good = manifest.read_text()
    manifest.write_text(good.replace(old, new))
    try:
        return minicloud("deploy", "test", workspace=cloud_env.workspace)
    finally:
        manifest.write_text(good)


def test_start_command_that_daemonises_gets_advice(cloud_env, ca):
    serving = cloud_env.cloud.status("test", stats=False).release
    out = deploy_with_manifest(cloud_env, 'start = "node server.js"', 'start = "nohup node server.js > /dev/null &"')
    assert out.returncode != 0
    assert "exited (code 0)" in out.stderr and "foreground" in out.stderr and "nohup" in out.stderr
    assert request(cloud_env.url + "/", ca)[1]["release"] == serving


def test_unhealthy_release_times_out_and_cli_shows_log_tail(cloud_env, ca):
    serving = cloud_env.cloud.status("test", stats=False).release
    out = deploy_with_manifest(cloud_env, 'health = "/healthz"', 'health = "/missing"\nhealth_timeout = 4')
    assert out.returncode != 0
    assert "healthy" in out.stderr and "listening on 3000" in out.stderr  # the app's last log lines
    assert request(cloud_env.url + "/", ca)[1]["release"] == serving


def test_failed_build_shows_build_log_tail(cloud_env):
    manifest = cloud_env.workspace / "minicloud.toml"
    good = manifest.read_text()
    manifest.write_text(good + '\n[build]\ninstall = "echo resolving dependencies; exit 7"\n')
    try:
        with pytest.raises(BuildFailed) as err:
            cloud_env.cloud.deploy("test")
    finally:
        manifest.write_text(good)
    assert "resolving dependencies" in err.value.render()


def test_named_image_is_used_when_present_and_a_missing_one_fails_clearly(cloud_env, docker_engine, ca):
    from deploy_bridge import images

    local = docker_engine.images.get(images.ensure_recipe(docker_engine, "nodejs"))
    ref = f"example.invalid/node:{os.environ['MINICLOUD_INSTANCE']}"
    local.tag(ref)
    manifest = cloud_env.workspace / "minicloud.toml"
    good = manifest.read_text()
    try:
        manifest.write_text(good + f'\n[images]\nruntime = "{ref}"\n')
        result = cloud_env.cloud.deploy("test")
        built = docker_engine.images.get(cloud_env.cloud.settings.app_image("shop", "test", result.release))
        assert local.id in [h["Id"] for h in built.history()], "the release must build on the named image"
        assert request(cloud_env.url + "/", ca)[1]["release"] == result.release
        manifest.write_text(good + '\n[images]\nruntime = "example.invalid/node:none"\n')
        out = minicloud("deploy", "test", workspace=cloud_env.workspace)
        assert out.returncode != 0 and "cannot pull example.invalid/node:none" in out.stderr
        assert "locally built" in out.stderr
    finally:
        manifest.write_text(good)
        docker_engine.images.remove(ref)


def test_second_deploy_at_once_is_refused_and_keeps_the_holder(cloud_env):
    lock = cloud_env.cloud.lock("test")
    with lock.hold("deploy"):
        out = minicloud("deploy", "test", workspace=cloud_env.workspace)
        assert out.returncode == 4
        assert "busy" in out.stderr and "deploy by pid" in out.stderr
        # the refused command must not erase who holds the lock
        assert lock.holder() is not None and "deploy by pid" in lock.holder()
        with pytest.raises(DeployBusy):
            cloud_env.cloud.restart("test")
        assert "deploy by pid" in lock.holder()
    assert lock.holder() is None


def test_ctrl_c_during_deploy_keeps_old_release(cloud_env, ca):
    serving = cloud_env.cloud.status("test", stats=False).release
    # slow health so that the interrupt lands while the new release is starting
    server = cloud_env.workspace / "server.js"
    good = server.read_text()
    server.write_text(good.replace("migrate()\n", "new Promise((r) => setTimeout(r, 15000)).then(migrate)\n", 1))
    proc = subprocess.Popen([sys.executable, "-m", "deploy_bridge.cli", "--workspace", str(cloud_env.workspace),
                             "deploy", "test"], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "waiting for /healthz" in line:
                break
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[1]
    finally:
        server.write_text(good)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    assert proc.returncode == 130, rest
    assert "still serves" in rest
    assert request(cloud_env.url + "/", ca)[1]["release"] == serving
    assert [c.labels["minicloud.release"] for c in app_containers(cloud_env)] == [serving]


def test_status_json_logs_and_db_through_the_cli(cloud_env, ca):
    name = add_product(cloud_env, ca)
    out = minicloud("status", "test", "--json", workspace=cloud_env.workspace, check=True)
    status = json.loads(out.stdout)
    assert {"env", "app", "state", "release", "url", "containers"} <= status.keys()
    assert status["state"] == "running" and status["url"] == cloud_env.url
    roles = {c["role"] for c in status["containers"]}
    assert {"app", "db", "gateway"} <= roles
    for c in status["containers"]:
        assert {"role", "name", "state", "health", "cpu_percent", "mem_bytes"} <= c.keys()
        if c["state"] == "running":
            assert c["mem_bytes"] > 0
    logs = minicloud("logs", "test", "--role", "app", "--grep", "listening", "--tail", "50",
                     workspace=cloud_env.workspace, check=True)
    lines = logs.stdout.splitlines()
    assert lines and all("listening on 3000" in ln and " app " in ln for ln in lines)
    db = minicloud("db", "test", "-e", "SELECT name FROM products ORDER BY id", "--json",
                   workspace=cloud_env.workspace, check=True)
    assert [name] in json.loads(db.stdout)[0]["rows"]
    creds = (cloud_env.workspace / ".minicloud" / "test" / "db.json")
    assert oct(creds.stat().st_mode & 0o777) == "0o600"
    password = json.loads(creds.read_text())["password"]
    assert password not in out.stdout + logs.stdout + db.stdout
    assert password not in minicloud("vars", "test", workspace=cloud_env.workspace, check=True).stdout


def test_db_prints_each_result_set(cloud_env):
    out = minicloud("db", "test", "-e", "select 1 as one; select 2 as two, NULL as nothing",
                    workspace=cloud_env.workspace, check=True)
    first, second = out.stdout.strip().split("\n\n")
    assert first.splitlines() == ["one", "1"]
    assert second.splitlines() == ["two\tnothing", "2\tNULL"]
    results = json.loads(minicloud("db", "test", "--json", "-e", "select 1 as one; select 2 as two",
                                   workspace=cloud_env.workspace, check=True).stdout)
    assert [r["columns"] for r in results] == [["one"], ["two"]]


def test_same_app_name_in_another_folder_is_refused(cloud_env, tmp_path):
    other = copy_example("node-shop", tmp_path)
    for verb in (["status", "test"], ["env", "destroy", "test"], ["deploy", "test"]):
        out = minicloud(*verb, workspace=other)
        assert out.returncode != 0 and "belongs to another workspace" in out.stderr, verb
        assert str(cloud_env.workspace) in out.stderr
    assert cloud_env.cloud.status("test", stats=False).state == "running"


def test_logs_follow_shows_new_lines_as_they_come(cloud_env, ca):
    proc = subprocess.Popen([sys.executable, "-m", "deploy_bridge.cli", "--workspace", str(cloud_env.workspace),
                             "logs", "test", "-f", "--role", "app", "--tail", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        # keep adding until one shows: the follower may attach after the first request
        def shown() -> bool:
            add_product(cloud_env, ca)
            return any("added product" in ln for ln in lines)

        wait_until(shown, 20, "a new log line is followed")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    found = [ln for ln in lines if "added product" in ln]
    assert found and " app " in found[0]


@pytest.mark.parametrize("reader", ["log file", "engine socket", "docker-py"])
def test_each_way_of_following_gives_history_then_new_lines_once(cloud_env, ca, monkeypatch, reader):
    """The follower reads the log file where it may, else the engine's socket, else docker-py: each
    must give the history, then new lines, each once."""
    from deploy_bridge import logs

    def refuse(cls, *args):
        raise AssertionError(f"{cls.__name__} used: the log file should have been read")  # ends the reader

    if reader == "log file":  # this machine runs the tests as root, beside the engine
        monkeypatch.setattr(logs._FollowedLog, "open", classmethod(refuse))
    else:
        monkeypatch.setattr(logs._LogFile, "open", classmethod(lambda cls, *a: None))
    if reader == "docker-py":
        monkeypatch.setattr(logs._FollowedLog, "open", classmethod(lambda cls, *a: None))
    before = add_product(cloud_env, ca)
    stop = threading.Event()
    lines: list[str] = []

    def follow() -> None:
        for batch in cloud_env.cloud.log_batches("test", follow=True, since="30s", roles=["app"], stop=stop):
            lines.extend(ln.line for ln in batch)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        wait_until(lambda: any(before in ln for ln in lines), 15, "the history is read")
        after = add_product(cloud_env, ca)
        wait_until(lambda: any(after in ln for ln in lines), 15, "a new line is followed")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert sum(before in ln for ln in lines) == 1, lines[-20:]
    assert sum(after in ln for ln in lines) == 1, lines[-20:]


def test_everything_carries_labels(cloud_env, docker_engine):
    instance = {"label": f"minicloud.instance={os.environ['MINICLOUD_INSTANCE']}"}
    containers = docker_engine.containers.list(all=True, filters=instance)
    assert containers
    for c in containers:
        # rotated json-file logs, whatever the engine's default: a chatty app cannot fill the disk
        log_config = c.attrs["HostConfig"]["LogConfig"]
        assert log_config["Type"] == "json-file" and log_config["Config"].get("max-size") == "20m", c.name
        if c.labels.get("minicloud.role") in ("gateway", "keeper", "collector"):
            continue  # one of each per instance, shared by every app
        assert c.labels["minicloud.app"] and c.labels["minicloud.env"]
        assert c.labels["minicloud.role"] in {"app", "db", "sandbox"}
        if c.labels["minicloud.role"] == "app":
            assert c.labels["minicloud.release"]
    for kind in (docker_engine.networks, docker_engine.volumes):
        found = kind.list(filters=instance)
        assert found and all("minicloud.app" in (x.attrs.get("Labels") or {}) for x in found)
    app_images = docker_engine.images.list(filters=instance)
    assert app_images and all(i.labels.get("minicloud.release") for i in app_images)


def test_destroy_keeps_data_and_build_finds_it(docker_engine, tmp_path):
    from deploy_bridge.cloud import Cloud

    cloud = Cloud(copy_example("node-shop", tmp_path))
    try:
        url = cloud.build_env("prod").url
        ca = cloud.ca_path()
        assert request(url + "/products", ca, {"name": "kept", "price_cents": 1})[0] == 201
        cloud.destroy_env("prod")
        s = cloud.settings
        assert docker_engine.volumes.get(s.volume("shop", "prod", "db"))
        assert not cloud.containers("prod")
        assert cloud.status("prod").state == "not-built"
        cloud.build_env("prod")
        assert "kept" in {r["name"] for r in request(url + "/products", ca)[1]}
    finally:
        cloud.destroy_env("prod", with_data=True)


def test_other_runtimes_deploy_and_use_the_database(docker_engine, tmp_path):
    from deploy_bridge.cloud import Cloud

    for example, product in (("python-shop", "kettle"), ("java-shop", "teapot")):
        cloud = Cloud(copy_example(example, tmp_path))
        try:
            result = cloud.build_env("test")
            ca = cloud.ca_path()
            assert request(result.url + "/products", ca, {"name": product, "price_cents": 5})[0] == 201
            rows = request(result.url + "/products", ca)[1]
            assert [r["name"] for r in rows] == [product], example
        finally:
            cloud.destroy_env("test", with_data=True)


def test_clear_errors_without_engine_or_with_bad_input(tmp_path):
    ws = copy_example("node-shop", tmp_path)
    out = minicloud("status", "test", workspace=ws, env={**os.environ, "DOCKER_HOST": "unix:///nonexistent.sock"})
    assert out.returncode == 3 and "Docker engine" in out.stderr
    out = minicloud("deploy", "staging", workspace=ws)
    assert out.returncode == 2 and "staging" in out.stderr and "test" in out.stderr
    (ws / "minicloud.toml").write_text((ws / "minicloud.toml").read_text().replace('port = 3000', 'port = "3000"'))
    out = minicloud("deploy", "test", workspace=ws)
    assert out.returncode == 2 and "minicloud.toml:6" in out.stderr and "port" in out.stderr


def test_gateway_port_taken_is_reported(docker_engine, tmp_path):
    ws = copy_example("node-shop", tmp_path)
    with socketserver_on_free_port() as port:
        env = {**os.environ, "MINICLOUD_INSTANCE": os.environ["MINICLOUD_INSTANCE"] + "-port",
               "MINICLOUD_GATEWAY_PORT": str(port)}
        try:
            out = minicloud("env", "build", "test", workspace=ws, env=env)
        finally:
            from deploy_bridge.engine import remove_instance

            remove_instance(docker_engine, env["MINICLOUD_INSTANCE"])
    assert out.returncode == 3 and str(port) in out.stderr and "taken" in out.stderr


@contextlib.contextmanager
def socketserver_on_free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]
