"""The server's cloud commands, index and log stream against the real engine (a built env)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from bench.load import request

from .lsp_helpers import SERVER, complete, start, wait_for

pytestmark = pytest.mark.docker


def _collect_logs(client: LanguageClient) -> None:
    client.log_batches = []
    client.changes = []

    @client.feature("minicloud/logs")
    def on_logs(params):
        client.log_batches.append(params)

    @client.feature("minicloud/changed")
    def on_changed(params):
        client.changes.append(params)


@pytest_lsp.fixture(config=SERVER)
async def client(lsp_client: LanguageClient, request):
    _collect_logs(lsp_client)
    await start(lsp_client, request.getfixturevalue("cloud_env").workspace)
    yield
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(config=SERVER)
async def plain_client(lsp_client: LanguageClient, request):
    """A client that does not declare experimental.minicloudLogs."""
    await start(lsp_client, request.getfixturevalue("cloud_env").workspace, logs=False)
    yield
    await lsp_client.shutdown_session()


async def execute(client: LanguageClient, command: str, arg: dict):
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(command, [arg]))


def lines_of(client: LanguageClient) -> list[str]:
    out = []
    for batch in client.log_batches:
        lines = batch["lines"] if isinstance(batch, dict) else batch.lines
        out += [ln["line"] if isinstance(ln, dict) else ln.line for ln in lines]
    return out


async def add_until_seen(client: LanguageClient, cloud_env, seen, what: str) -> None:
    """Add a product every half second until `seen()`: the stream may attach after the first one."""
    ca = cloud_env.cloud.ca_path()
    deadline = asyncio.get_running_loop().time() + 30
    while not seen():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.to_thread(request, cloud_env.url + "/products", ca, {"name": what, "price_cents": 3})
        await wait_for_or_timeout(seen, 0.5)


async def wait_for_or_timeout(predicate, seconds: float) -> bool:
    with contextlib.suppress(AssertionError):
        await wait_for(predicate, seconds)
        return True
    return False


async def test_index_learns_the_live_tables(client, cloud_env):
    async def tables():
        return {i.label for i in await complete(client, cloud_env.workspace, "t.js", "db.query('SELECT * FROM |')",
                                                "javascript")}

    for _ in range(300):
        if "products" in await tables():
            break
        await asyncio.sleep(0.1)
    assert "products" in await tables()
    items = await complete(client, cloud_env.workspace, "t.js", "db.query('SELECT | FROM products')", "javascript")
    assert {"id", "name", "price_cents", "created_at"} <= {i.label for i in items}
    saved = cloud_env.workspace / ".minicloud" / "index-test.json"
    assert saved.is_file() and "price_cents" in saved.read_text()


async def test_status_releases_and_log_stream(client, cloud_env):
    status = await execute(client, "minicloud.status", {"env": "test"})
    assert status["state"] == "running" and status["url"] == cloud_env.url
    releases = await execute(client, "minicloud.releases", {"env": "test"})
    assert releases["releases"] and any(r["current"] for r in releases["releases"])
    stream = await execute(client, "minicloud.logs.tail", {"env": "test", "role": "app", "since": "1s"})
    assert stream["stream"]
    await add_until_seen(client, cloud_env, lambda: any("from-the-editor" in ln for ln in lines_of(client)),
                         "from-the-editor")
    batch = client.log_batches[-1]
    line = (batch["lines"] if isinstance(batch, dict) else batch.lines)[-1]
    field = (lambda name: line[name]) if isinstance(line, dict) else (lambda name: getattr(line, name))
    assert field("role") == "app" and field("release") == status["release"] and field("time")
    stopped = await execute(client, "minicloud.logs.stop", {"stream": stream["stream"]})
    assert stopped["stopped"] is True


async def test_deploy_reports_progress_and_completions_keep_answering(client, cloud_env):
    deploy = asyncio.create_task(execute(client, "minicloud.deploy", {"env": "test"}))
    await wait_for(lambda: any(client.progress_reports.values()), 30, "the deploy's first progress report")
    items = await complete(client, cloud_env.workspace, "d.js", "process.env.MYSQL_|", "javascript")
    assert "MYSQL_HOST" in {i.label for i in items}
    result = await deploy
    assert result["release"] and result["url"] == cloud_env.url
    reports = [r for token_reports in client.progress_reports.values() for r in token_reports]
    messages = [getattr(r, "message", None) or "" for r in reports]
    assert any(isinstance(r, types.WorkDoneProgressBegin) for r in reports)
    assert any("building release" in m for m in messages) and any("switching the gateway" in m for m in messages)
    assert any(isinstance(r, types.WorkDoneProgressEnd) for r in reports)


async def test_failed_command_is_a_clear_error_and_a_message(client):
    with pytest.raises(JsonRpcException) as err:
        await execute(client, "minicloud.rollback", {"env": "staging"})
    assert "staging" in str(err.value) and "test" in str(err.value)
    await wait_for(lambda: any("staging" in m.message for m in client.messages), 5, "showMessage")


async def test_client_without_the_log_capability_gets_log_messages(plain_client, cloud_env):
    stream = await execute(plain_client, "minicloud.logs.tail", {"env": "test", "role": "app", "since": "1s"})
    await add_until_seen(plain_client, cloud_env,
                         lambda: any("as-log-message" in m.message for m in plain_client.log_messages), "as-log-message")
    await execute(plain_client, "minicloud.logs.stop", {"stream": stream["stream"]})


NO_ENGINE = ClientServerConfig(server_command=[sys.executable, "-m", "lsp_server"],
                               server_env={**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"})


@pytest.fixture
def saved_index(cloud_env):
    """The index of the env as a server with an engine saves it (what a server without one reads)."""
    from lsp_server.index import Index

    index = Index(cloud_env.workspace, "test")
    snapshot = index.refresh()
    assert "products" in snapshot.tables
    return index.path


@pytest_lsp.fixture(config=NO_ENGINE)
async def no_engine_client(lsp_client: LanguageClient, request):
    request.getfixturevalue("saved_index")
    await start(lsp_client, request.getfixturevalue("cloud_env").workspace)
    yield
    await lsp_client.shutdown_session()


async def test_no_engine_commands_fail_and_completions_work(no_engine_client, cloud_env):
    with pytest.raises(JsonRpcException) as err:
        await execute(no_engine_client, "minicloud.status", {"env": "test"})
    assert "Docker engine" in str(err.value)
    # the last saved snapshot still completes tables
    items = await complete(no_engine_client, cloud_env.workspace, "n.js", "db.query('SELECT * FROM |')", "javascript")
    assert "products" in {i.label for i in items}


async def test_the_client_hears_when_an_env_changes_instead_of_polling(client, cloud_env):
    """A container of the env starting or stopping is told to the client (minicloud/changed)."""
    await execute(client, "minicloud.status", {"env": "test"})  # the server is up and watching
    before = len(client.changes)
    await execute(client, "minicloud.restart", {"env": "test"})
    await wait_for(lambda: len(client.changes) > before, 30, "minicloud/changed")
    change = client.changes[-1]
    env = change["env"] if isinstance(change, dict) else getattr(change, "env", None)
    assert env == "test"


CHILD_PROBE = """
import sys, threading
from pathlib import Path
from lsp_server.index import READER_NICENESS, Index
seen = threading.Event()
index = Index(Path(sys.argv[1]), "test", on_change=lambda snap: "products" in snap.tables and seen.set())
index.start()
ok = seen.wait(60)
import os
child = index._child
mine = os.getpriority(os.PRIO_PROCESS, 0)
print("reader niceness", (os.getpriority(os.PRIO_PROCESS, child.pid) - mine, min(19 - mine, READER_NICENESS))
      if child is not None and child.poll() is None else "no reader")
index.stop()
print("tables from the engine" if ok else "no tables")
print("docker loaded" if "docker" in sys.modules else "docker not loaded")
"""


def test_the_index_reads_the_engine_in_a_child_process(cloud_env, tmp_path):
    """Architecture Invariant (engine_view.py): the server keeps its index without importing the Docker SDK."""
    import subprocess

    saved = cloud_env.workspace / ".minicloud" / "index-test.json"
    saved.unlink(missing_ok=True)  # nothing persisted: the tables can only come from the engine reader
    out = subprocess.run([sys.executable, "-c", CHILD_PROBE, str(cloud_env.workspace)], capture_output=True,
                         text=True, timeout=120).stdout
    assert "tables from the engine" in out and "docker not loaded" in out, out
    # background work: the reader yields the CPU to the server's requests (lsp_server/index.py)
    assert re.search(r"reader niceness \(([1-9]\d*), \1\)", out), out
