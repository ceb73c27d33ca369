"""Cloud functions on the real engine: the pool, specialisation, keep_alive, reserved instances, the queue,
failures that fail one invocation alone, code deploys with no failed call, node and python."""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from bench.functions import WORKSPACE_HEAD
from bench.load import trusting

pytestmark = pytest.mark.docker

MANIFEST = WORKSPACE_HEAD.format(name="fnshop", pool=2) + """\
[functions.hello]
memory = 128

[functions.pyhello]
runtime = "python"

[functions.boom]
memory = 64
timeout = 2
max_instances = 4

[functions.brief]
keep_alive = 1

[functions.held]
reserved = 2

[functions.single]
max_instances = 1
"""

CODE = {
    "server.js": "require('http').createServer((q, s) => { s.writeHead(200); s.end('{}'); }).listen(3000);\n",
    "functions/hello/index.js": """\
let calls = 0;
exports.main = async (event, context) => {
  calls += 1;
  console.log('hello called', calls);
  return { hello: event.name || 'world', calls, version: 'v1', requestId: context.requestId, env: context.env,
           left: context.getRemainingTimeInMillis(), db: process.env.MYSQL_HOST };
};
""",
    "functions/pyhello/main.py": """\
import os

calls = 0


async def main(event, context):
    global calls
    calls += 1
    print("python hello", calls)
    return {"hello": event.get("name", "world"), "calls": calls, "env": context["env"],
            "left": context.time_left() > 0, "db": os.environ.get("MYSQL_HOST")}
""",
    "functions/boom/index.js": """\
exports.main = async (event) => {
  if (event.mode === 'throw') throw new TypeError('bad input: ' + event.mode);
  if (event.mode === 'crash') process.exit(3);
  if (event.mode === 'sleep') await new Promise((r) => setTimeout(r, event.ms));
  if (event.mode === 'oom') { const hog = []; for (;;) hog.push(Buffer.alloc(8 * 2 ** 20, 1)); }
  return { ok: true };
};
""",
    "functions/brief/index.js": """\
let calls = 0;
exports.main = async () => { calls += 1; globalThis.leftBehind = 'secret'; return { calls }; };
""",
    "functions/held/index.js": "exports.main = async () => ({ held: true });\n",
    "functions/single/index.js": """\
exports.main = async (event) => { await new Promise((r) => setTimeout(r, event.ms || 500)); return { at: Date.now() }; };
""",
}


def minicloud(workspace: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploy_bridge.cli", "--workspace", str(workspace), *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def fn_env(docker_engine, tmp_path_factory):
    from deploy_bridge.cloud import Cloud

    workspace = tmp_path_factory.mktemp("fn") / "fnshop"
    for rel, text in CODE.items():
        (workspace / rel).parent.mkdir(parents=True, exist_ok=True)
        (workspace / rel).write_text(text)
    (workspace / "minicloud.toml").write_text(MANIFEST)
    cloud = Cloud(workspace)
    cloud.build_env("test")
    yield cloud
    cloud.destroy_env("test", with_data=True)


def call(cloud, name: str, event=None, timeout: float = 60) -> httpx.Response:
    url = cloud.url("test") + f"/fn/{name}"
    with httpx.Client(verify=trusting(cloud.ca_path()), timeout=timeout) as client:
        return client.post(url, json=event if event is not None else {})


def status(cloud) -> dict:
    return cloud.fn_list("test")


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.1)
    return result


def test_node_and_python_functions_answer_with_context_and_the_env_s_settings(fn_env):
    node = call(fn_env, "hello", {"name": "ann"})
    assert node.status_code == 200, node.text
    body = node.json()
    assert body["hello"] == "ann" and body["env"] == "test" and body["db"] == "db" and 0 < body["left"] <= 10_000
    assert body["requestId"] == node.headers["x-minicloud-request-id"]
    py = call(fn_env, "pyhello", {"name": "bo"})
    assert py.status_code == 200, py.text
    assert py.json()["hello"] == "bo" and py.json()["env"] == "test" and py.json()["left"] is True
    # warm: the same instance keeps its function loaded
    again = call(fn_env, "hello")
    assert again.headers["x-minicloud-cold"] == "false"
    assert again.headers["x-minicloud-instance"] == node.headers["x-minicloud-instance"]


def test_a_pool_instance_is_specialised_on_the_first_call(fn_env):
    before = status(fn_env)
    assert before["pool"]["nodejs"] >= 1 and before["pool"]["python"] >= 1
    first = call(fn_env, "single")
    assert first.status_code == 200
    listed = status(fn_env)["functions"]["single"]
    assert listed["on_demand"] == 1 and listed["invocations"] >= 1
    # the pool is refilled in the background
    wait_until(lambda: status(fn_env)["pool"]["nodejs"] >= 2, 30, "the pool is refilled")


def test_an_idle_instance_goes_back_after_keep_alive_as_a_fresh_process(fn_env, docker_engine):
    first = call(fn_env, "brief")
    assert first.status_code == 200
    instance = first.headers["x-minicloud-instance"]
    wait_until(lambda: status(fn_env)["functions"]["brief"]["on_demand"] == 0, 30, "brief's instance is reaped")
    # it is in the pool as a fresh process (restarted), or gone when the pool was full
    matching = [i for i in status(fn_env)["instances"] if i["name"] == instance]
    if matching:
        assert matching[0]["state"] == "pool" and matching[0]["fn"] is None
        assert docker_engine.containers.get(instance).attrs["RestartCount"] >= 0
    # nothing of the function's state survives: the next call starts from scratch
    again = call(fn_env, "brief")
    assert again.headers["x-minicloud-cold"] == "true" and again.json()["calls"] == 1


def test_reserved_instances_are_there_after_deploy_and_after_a_scheduler_restart(fn_env, docker_engine):
    held = status(fn_env)["functions"]["held"]
    assert held["reserved"] == 2
    names = sorted(i["name"] for i in held["instances"])
    def function_containers() -> set[str]:  # sparse: a container recycled between list and inspect is no error
        listed = docker_engine.containers.list(filters={"label": "minicloud.role=function"}, sparse=True)
        return {c.attrs["Names"][0].lstrip("/") for c in listed}

    before = function_containers()
    docker_engine.containers.get(fn_env.settings.container("fnshop", "test", "functions")).restart(timeout=1)
    wait_until(lambda: fn_env._functions("test").status(quiet=True), 30, "the scheduler answers again")
    after = wait_until(lambda: (s := status(fn_env)["functions"]["held"])["reserved"] == 2 and s, 30,
                       "the reserved instances are known again")
    assert sorted(i["name"] for i in after["instances"]) == names, "the same containers: none lost, none new"
    now = function_containers()
    assert before <= now, "no instance was lost or orphaned by the restart"
    reply = call(fn_env, "held")
    assert reply.status_code == 200 and reply.headers["x-minicloud-instance"] in names
    assert reply.headers["x-minicloud-cold"] == "false", "reserved instances are specialised ahead"


def test_requests_queue_when_max_instances_is_reached(fn_env):
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda _: call(fn_env, "single", {"ms": 700}), range(4)))
    assert [r.status_code for r in replies] == [200] * 4
    assert len({r.headers["x-minicloud-instance"] for r in replies}) == 1, "max_instances = 1"
    finished = sorted(r.json()["at"] for r in replies)
    gaps = [b - a for a, b in zip(finished, finished[1:], strict=False)]
    assert all(gap >= 600 for gap in gaps), f"one at a time, in turn: {gaps}"


@pytest.mark.parametrize(("mode", "code", "kind"), [("sleep", 504, "Timeout"), ("crash", 500, "Crashed"),
                                                    ("oom", 500, "OutOfMemory"), ("throw", 500, "TypeError")])
def test_a_failure_fails_its_invocation_alone(fn_env, mode, code, kind):
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        failing = pool.submit(call, fn_env, "boom", {"mode": mode, "ms": 10_000})
        fine = pool.submit(call, fn_env, "boom", {"mode": "ok"})  # at the same time, on another instance
        bad, good = failing.result(), fine.result()
    assert good.status_code == 200 and good.json() == {"ok": True}
    assert bad.status_code == code, bad.text
    error = bad.json()["error"]
    assert error["type"] == kind and error["message"]
    if kind == "TypeError":
        assert "bad input" in error["message"] and "index.js" in error["stack"]
    if kind == "OutOfMemory":
        assert "64 MB" in error["message"]
    # and the function keeps answering
    assert call(fn_env, "boom", {"mode": "ok"}).status_code == 200


def test_stable_errors_for_unknown_functions_and_bad_events(fn_env):
    missing = call(fn_env, "nosuch")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "NotFound"
    assert "hello" in missing.json()["error"]["message"]
    with httpx.Client(verify=trusting(fn_env.ca_path()), timeout=10) as client:
        bad = client.post(fn_env.url("test") + "/fn/hello", content=b"{not json")
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "BadEvent"


def test_a_code_deploy_under_load_fails_no_call(fn_env):
    source = fn_env.workspace / "functions" / "hello" / "index.js"
    original = source.read_text()
    marker = f"v-{uuid.uuid4().hex[:6]}"
    results: list[tuple[int, str]] = []
    stop = time.monotonic() + 60

    def loop() -> None:
        with httpx.Client(verify=trusting(fn_env.ca_path()), timeout=30) as client:
            while time.monotonic() < stop and not any(v == marker for _, v in results[-5:]):
                try:
                    reply = client.post(fn_env.url("test") + "/fn/hello", json={})
                    results.append((reply.status_code, reply.json().get("version", "") if reply.status_code == 200 else ""))
                except httpx.HTTPError as err:
                    results.append((0, type(err).__name__))

    try:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            loops = [pool.submit(loop) for _ in range(3)]
            wait_until(lambda: len(results) >= 30, 30, "the loop runs")
            source.write_text(original.replace("version: 'v1'", f"version: '{marker}'"))
            started = time.monotonic()
            result = fn_env.fn_deploy("test", ["hello"])
            deployed_in = time.monotonic() - started
            for f in loops:
                f.result()
    finally:
        source.write_text(original)
        fn_env.fn_deploy("test", ["hello"])
    assert [r for r in results if r[0] != 200] == [], "a call failed during the code deploy"
    assert any(v == marker for _, v in results), "new calls run the new code"
    first_new = next(i for i, (_, v) in enumerate(results) if v == marker)
    assert all(v == marker for _, v in results[first_new + 3:]), "once live, the new version takes new calls"
    assert deployed_in < 10 and result["versions"]["hello"]


def test_function_logs_are_tagged_and_framed(fn_env):
    reply = call(fn_env, "hello", {"name": "logged"})
    request_id = reply.headers["x-minicloud-request-id"]

    def logged() -> list[str]:
        out = minicloud(fn_env.workspace, "logs", "test", "--fn", "hello", "--grep", request_id)
        return [ln for ln in out.stdout.splitlines() if request_id in ln]

    lines = wait_until(lambda: len(logged()) >= 3 and logged(), 20, "START, the function's line and END")
    text = "\n".join(lines)
    assert "START" in text and "hello called" in text and "END duration=" in text and "peak_memory=" in text
    assert all(f"[hello {request_id}]" in ln and " function " in ln for ln in lines)


def test_the_cli_invokes_and_lists(fn_env, tmp_path):
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"name": "cli"}))
    out = minicloud(fn_env.workspace, "fn", "invoke", "test", "hello", "--data", f"@{event}")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["hello"] == "cli" and ("warm" in out.stderr or "cold" in out.stderr)
    bad = minicloud(fn_env.workspace, "fn", "invoke", "test", "hello", "--data", "{nope")
    assert bad.returncode == 2 and "--data" in bad.stderr and "not JSON" in bad.stderr
    listed = json.loads(minicloud(fn_env.workspace, "--json", "fn", "list", "test").stdout)
    assert {"hello", "pyhello", "boom", "held"} <= set(listed["functions"]) and listed["pool"]["nodejs"] >= 0


def test_deploy_and_rollback_cover_the_functions(fn_env):
    source = fn_env.workspace / "functions" / "held" / "index.js"
    original = source.read_text()
    first = fn_env.deploy("test")
    try:
        source.write_text(original.replace("held: true", "held: 'second'"))
        second = fn_env.deploy("test")
        assert call(fn_env, "held").json() == {"held": "second"}
        fn_env.rollback("test", to=first.release)
        assert call(fn_env, "held").json() == {"held": True}, "the rollback brings the functions back too"
        assert second.release != first.release
    finally:
        source.write_text(original)
        fn_env.deploy("test")


def test_a_manifest_function_without_code_is_refused_clearly(fn_env, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(fn_env.workspace, ws, ignore=shutil.ignore_patterns(".minicloud"))
    (ws / "minicloud.toml").write_text(MANIFEST.replace('name = "fnshop"', 'name = "fnbroken"')
                                       + "\n[functions.ghost]\n")
    out = minicloud(ws, "fn", "deploy", "test", "ghost")
    assert out.returncode == 2 and "functions.ghost" in out.stderr and "index.js" in out.stderr


@pytest.fixture
async def fn_client(fn_env):
    """The language server on the functions workspace (started the way an editor does)."""
    from pytest_lsp import ClientServerConfig, make_test_lsp_client

    from .lsp_helpers import start

    client = make_test_lsp_client()
    await client.start_io(*ClientServerConfig(server_command=[sys.executable, "-m", "lsp_server"]).server_command)
    await start(client, fn_env.workspace)
    yield client
    await client.shutdown_session()
    await client.stop()


async def test_the_editor_invokes_a_function_and_shows_its_result_and_logs(fn_client, fn_env):
    from lsprotocol import types

    result = await fn_client.workspace_execute_command_async(types.ExecuteCommandParams(
        "minicloud.fn.invoke", [{"env": "test", "name": "hello", "event": {"name": "editor"}}]))
    assert result["status"] == 200 and result["result"]["hello"] == "editor"
    assert any("START" in ln for ln in result["logs"]) and any("END duration=" in ln for ln in result["logs"])
    listed = await fn_client.workspace_execute_command_async(types.ExecuteCommandParams(
        "minicloud.fn.list", [{"env": "test"}]))
    assert listed["functions"]["hello"]["invocations"] >= 1


def test_a_workspace_of_functions_alone(docker_engine, tmp_path):
    """[app] with only a name: no server, the functions are the release; deploy, rollback, status, stop."""
    from deploy_bridge.cloud import Cloud

    ws = tmp_path / "fnonly"
    (ws / "functions" / "hi").mkdir(parents=True)
    code = ws / "functions" / "hi" / "index.js"
    code.write_text("exports.main = async () => ({ v: 1 });\n")
    (ws / "minicloud.toml").write_text('[app]\nname = "fnonly"\n\n[env.test]\nsandbox = false\n\n'
                                       '[functions]\npool = 1\n\n[functions.hi]\n')
    cloud = Cloud(ws)
    try:
        first = cloud.build_env("test")
        assert call(cloud, "hi").json() == {"v": 1}
        assert not cloud.containers("test", role="app"), "no server runs"
        code.write_text("exports.main = async () => ({ v: 2 });\n")
        second = cloud.deploy("test")
        assert call(cloud, "hi").json() == {"v": 2}
        assert [r.id for r in cloud.releases("test")][:2] == [second.release, first.release]
        assert cloud.status("test").release == second.release
        back = cloud.rollback("test")
        assert back.release == first.release and call(cloud, "hi").json() == {"v": 1}
        assert cloud.status("test", stats=False).state == "running"
        assert minicloud(ws, "status", "test").returncode == 0
        cloud.stop("test")
        stopped = call(cloud, "hi")
        assert stopped.status_code == 503 and cloud.status("test", stats=False).state == "stopped"
        cloud.start("test")
        assert call(cloud, "hi").json() == {"v": 1}
    finally:
        cloud.destroy_env("test", with_data=True)
