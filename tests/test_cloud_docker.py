"""The local cloud on the real Docker engine: deploys, rollback, restart, failures, labels, data."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy_bridge.errors import BuildFailed, ReleaseUnhealthy

from .webclient import RequestLoop, request

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
    return cloud_env.cloud._containers(cloud_env.env, role="app")


@pytest.fixture
def ca(cloud_env) -> str:
    return cloud_env.cloud.ca_path()


def test_env_serves_https_and_keeps_rows(cloud_env, ca):
    status, body = request(cloud_env.url + "/products", ca, {"name": "green tea", "price_cents": 1200})
    assert status == 201, body
    status, rows = request(cloud_env.url + "/products", ca)
    assert status == 200
    assert "green tea" in [r["name"] for r in rows]
    status, root = request(cloud_env.url + "/", ca)
    assert root["env"] == "test" and root["release"] == cloud_env.cloud.status("test").release


def test_deploy_switches_with_no_failed_request(cloud_env, ca):
    before = cloud_env.cloud.status("test", stats=False).release
    edit_message(cloud_env.workspace, "second release")
    with RequestLoop(cloud_env.url + "/products", ca) as loop:
        time.sleep(0.3)
        result = cloud_env.cloud.deploy("test")
        time.sleep(0.5)
    assert loop.failures == [], f"{len(loop.failures)} of {len(loop.statuses)} requests failed"
    assert len(loop.statuses) > 20, "the loop hardly ran"
    assert result.previous == before and result.release > before
    assert request(cloud_env.url + "/", ca)[1]["message"] == "second release"
    running = [c for c in app_containers(cloud_env) if c.status == "running"]
    assert [c.labels["minicloud.release"] for c in running] == [result.release]


def test_rollback_without_rebuild_and_no_failed_request(cloud_env, ca):
    releases = cloud_env.cloud.releases("test")
    current = next(r for r in releases if r.current)
    older = next(r for r in releases if r.id < current.id)
    images_before = {i.id for i in cloud_env.cloud._client().images.list(filters={"label": "minicloud.app=shop"})}
    with RequestLoop(cloud_env.url + "/products", ca) as loop:
        result = cloud_env.cloud.rollback("test")
    assert loop.failures == [] and len(loop.statuses) > 5
    assert result.release == older.id and result.previous == current.id
    images_after = {i.id for i in cloud_env.cloud._client().images.list(filters={"label": "minicloud.app=shop"})}
    assert images_after == images_before, "rollback must not build anything"
    assert request(cloud_env.url + "/", ca)[1]["release"] == older.id
    rows = request(cloud_env.url + "/products", ca)[1]
    assert "green tea" in [r["name"] for r in rows]
    # and forward again with --to, through the CLI
    out = minicloud("--json", "rollback", "test", "--to", current.id[:17], workspace=cloud_env.workspace)
    assert out.returncode == 0, out.stderr
    assert request(cloud_env.url + "/", ca)[1]["release"] == current.id


def test_restart_keeps_rows(cloud_env, ca):
    request(cloud_env.url + "/products", ca, {"name": "oolong", "price_cents": 900})
    status = cloud_env.cloud.restart("test")
    assert status.state == "running"
    code, rows = request(cloud_env.url + "/products", ca)
    assert code == 200, rows
    assert {"green tea", "oolong"} <= {r["name"] for r in rows}


def test_stop_then_start(cloud_env, ca):
    stopped = cloud_env.cloud.stop("test")
    assert stopped.state == "stopped"
    code, body = request(cloud_env.url + "/", ca)
    assert code == 503 and "stopped" in body
    started = cloud_env.cloud.start("test")
    assert started.state == "running"
    assert request(cloud_env.url + "/products", ca)[0] == 200


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


def test_unhealthy_release_times_out_and_cli_shows_log_tail(cloud_env, ca):
    serving = cloud_env.cloud.status("test", stats=False).release
    manifest = cloud_env.workspace / "minicloud.toml"
    good = manifest.read_text()
    manifest.write_text(good.replace('health = "/healthz"', 'health = "/missing"\nhealth_timeout = 4'))
    try:
        out = minicloud("deploy", "test", workspace=cloud_env.workspace)
    finally:
        manifest.write_text(good)
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


def test_second_deploy_at_once_is_refused(cloud_env):
    with cloud_env.cloud._lock("test", "deploy"):
        out = minicloud("deploy", "test", workspace=cloud_env.workspace)
    assert out.returncode == 4
    assert "busy" in out.stderr and "deploy by pid" in out.stderr


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


def test_status_json_logs_and_db_through_the_cli(cloud_env):
    import json

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
    assert ["green tea"] in json.loads(db.stdout)["rows"]
    creds = (cloud_env.workspace / ".minicloud" / "test" / "db.json")
    assert oct(creds.stat().st_mode & 0o777) == "0o600"
    password = json.loads(creds.read_text())["password"]
    assert password not in out.stdout + logs.stdout + db.stdout
    assert password not in minicloud("vars", "test", workspace=cloud_env.workspace, check=True).stdout


def test_same_app_name_in_another_folder_is_refused(cloud_env, tmp_path):
    from .conftest import copy_example

    other = copy_example("node-shop", tmp_path)
    for verb in (["status", "test"], ["env", "destroy", "test"], ["deploy", "test"]):
        out = minicloud(*verb, workspace=other)
        assert out.returncode != 0 and "belongs to another workspace" in out.stderr, verb
        assert str(cloud_env.workspace) in out.stderr
    assert cloud_env.cloud.status("test", stats=False).state == "running"


def test_logs_follow_shows_new_lines_as_they_come(cloud_env, ca):
    import threading

    proc = subprocess.Popen([sys.executable, "-m", "deploy_bridge.cli", "--workspace", str(cloud_env.workspace),
                             "logs", "test", "-f", "--role", "app", "--since", "1s"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        time.sleep(1.5)
        request(cloud_env.url + "/products", ca, {"name": "followed-item", "price_cents": 1})
        deadline = time.monotonic() + 15
        while not any("followed-item" in ln for ln in lines) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    found = [ln for ln in lines if "followed-item" in ln]
    assert found and "added product" in found[0] and " app " in found[0]


@pytest.mark.parametrize("reader", ["log file", "engine socket", "docker-py"])
def test_each_way_of_following_gives_history_then_new_lines_once(cloud_env, ca, monkeypatch, reader):
    """The follower reads the log file where it may, else the engine's socket, else docker-py: each
    must give the history, then new lines, each once."""
    import threading

    from deploy_bridge import logs

    def refuse(cls, *args):
        raise AssertionError(f"{cls.__name__} used: the log file should have been read")  # ends the reader

    if reader == "log file":  # this machine runs the tests as root, beside the engine
        monkeypatch.setattr(logs._FollowedLog, "open", classmethod(refuse))
    else:
        monkeypatch.setattr(logs._LogFile, "open", classmethod(lambda cls, *a: None))
    if reader == "docker-py":
        monkeypatch.setattr(logs._FollowedLog, "open", classmethod(lambda cls, *a: None))
    before = f"before-{reader}"
    request(cloud_env.url + "/products", ca, {"name": before, "price_cents": 1})
    stop = threading.Event()
    lines: list[str] = []

    def follow() -> None:
        for batch in cloud_env.cloud.log_batches("test", follow=True, since="30s", roles=["app"], stop=stop):
            lines.extend(ln.line for ln in batch)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not any(before in ln for ln in lines) and time.monotonic() < deadline:
            time.sleep(0.05)
        after = f"after-{reader}"
        request(cloud_env.url + "/products", ca, {"name": after, "price_cents": 1})
        deadline = time.monotonic() + 15
        while not any(after in ln for ln in lines) and time.monotonic() < deadline:
            time.sleep(0.05)
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
        if c.labels.get("minicloud.role") == "gateway":
            continue  # the edge is shared by every app of the instance
        assert c.labels["minicloud.app"] == "shop" and c.labels["minicloud.env"] == "test"
        assert c.labels["minicloud.role"] in {"app", "db", "sandbox"}
        if c.labels["minicloud.role"] == "app":
            assert c.labels["minicloud.release"]
    for kind in (docker_engine.networks, docker_engine.volumes):
        found = kind.list(filters=instance)
        assert found and all("minicloud.app" in (x.attrs.get("Labels") or {}) for x in found)
    app_images = docker_engine.images.list(filters=instance)
    assert app_images and all(i.labels.get("minicloud.release") for i in app_images)


def test_destroy_keeps_data_and_build_finds_it(cloud_env, ca, docker_engine):
    cloud = cloud_env.cloud
    cloud.destroy_env("test")
    s = cloud.settings
    assert docker_engine.volumes.get(s.volume("shop", "test", "db"))
    assert not cloud._containers("test")
    assert cloud.status("test").state == "not-built"
    cloud.build_env("test")
    rows = request(cloud_env.url + "/products", ca)[1]
    assert {"green tea", "oolong"} <= {r["name"] for r in rows}


def test_other_runtimes_deploy_and_use_the_database(docker_engine, tmp_path):
    from deploy_bridge.cloud import Cloud

    from .conftest import copy_example

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
    from .conftest import copy_example

    ws = copy_example("node-shop", tmp_path)
    out = minicloud("status", "test", workspace=ws, env={**os.environ, "DOCKER_HOST": "unix:///nonexistent.sock"})
    assert out.returncode == 3 and "Docker engine" in out.stderr
    out = minicloud("deploy", "staging", workspace=ws)
    assert out.returncode == 2 and "staging" in out.stderr and "test" in out.stderr
    (ws / "minicloud.toml").write_text((ws / "minicloud.toml").read_text().replace('port = 3000', 'port = "3000"'))
    out = minicloud("deploy", "test", workspace=ws)
    assert out.returncode == 2 and "minicloud.toml:6" in out.stderr and "port" in out.stderr


def test_gateway_port_taken_is_reported(docker_engine, tmp_path):
    from .conftest import copy_example

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

