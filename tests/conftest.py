"""Shared fixtures: a throw-away minicloud instance per test session, on the real Docker engine.

Every test run gets its own `MINICLOUD_INSTANCE` (names and the `minicloud.instance` label), home
folder and gateway port, so it never touches the user's own environments and removes exactly what it
created. The base and runtime images are a cache shared by all instances (built once, kept).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
INSTANCE = f"pytest-{uuid.uuid4().hex[:6]}"
_HOME = Path(tempfile.mkdtemp(prefix="minicloud-pytest-"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Set before any test imports deploy_bridge, and inherited by every subprocess (CLI, server, nvim).
os.environ["MINICLOUD_INSTANCE"] = INSTANCE
os.environ["MINICLOUD_HOME"] = str(_HOME)
os.environ["MINICLOUD_GATEWAY_PORT"] = str(_free_port())
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"


def _engine_answers() -> bool:
    try:
        from deploy_bridge import engine

        engine.client()
        return True
    except Exception:  # noqa: BLE001 - any failure means "no engine"
        return False


@pytest.fixture(scope="session")
def docker_engine():
    """The real engine; started by the project's own script when none answers (as the README does)."""
    if not _engine_answers():
        subprocess.run([str(ROOT / "scripts" / "ensure-docker.sh")], check=False)
    if not _engine_answers():
        pytest.fail("no Docker engine answers and scripts/ensure-docker.sh could not start one")
    from deploy_bridge import engine

    return engine.client()


def pytest_sessionfinish(session, exitstatus) -> None:
    """Remove everything this run's instance created: containers, networks, volumes, images, hosts."""
    try:
        from deploy_bridge import engine

        client = engine.client()
    except Exception:  # noqa: BLE001 - no engine: nothing of ours can exist on it
        shutil.rmtree(_HOME, ignore_errors=True)
        return
    engine.remove_instance(client, INSTANCE)
    shutil.rmtree(_HOME, ignore_errors=True)


def copy_example(name: str, dest: Path) -> Path:
    target = dest / name
    shutil.copytree(EXAMPLES / name, target, ignore=shutil.ignore_patterns(".minicloud", "node_modules", "abilities"))
    return target


@dataclass
class CloudEnv:
    workspace: Path
    env: str
    cloud: object  # deploy_bridge.cloud.Cloud

    @property
    def url(self) -> str:
        return self.cloud.url(self.env)


SLOW_ROUTE = """    if (req.url.startsWith('/slow')) {  // added by the tests: a request that takes seconds
      const ms = Number(new URL(req.url, 'http://x').searchParams.get('ms') || 5000);
      await new Promise((r) => setTimeout(r, ms));
      return send(res, 200, { slow: ms, release: process.env.MINICLOUD_RELEASE });
    }
"""


def with_slow_route(workspace: Path) -> Path:
    """The node shop with GET /slow?ms=N, which answers after N milliseconds."""
    server = workspace / "server.js"
    text = server.read_text()
    anchor = "    if (req.url === '/') {"
    server.write_text(text.replace(anchor, SLOW_ROUTE + anchor, 1))
    return workspace


@pytest.fixture(scope="session")
def cloud_env(docker_engine, tmp_path_factory) -> Iterator[CloudEnv]:
    """The node example shop's `test` env (with a /slow route), built once per session; a test that
    changes the env or its workspace restores it, and sets up the rows and releases it reads."""
    from deploy_bridge.cloud import Cloud

    workspace = with_slow_route(copy_example("node-shop", tmp_path_factory.mktemp("ws")))
    cloud = Cloud(workspace)
    cloud.build_env("test")
    yield CloudEnv(workspace, "test", cloud)
    with contextlib.suppress(Exception):
        cloud.destroy_env("test", with_data=True)


@pytest.fixture
async def client(request):
    """The language server (a real process over stdio) on the module's `workspace` fixture, from a
    client that applies the edits the server asks for (recorded in `client.edits`). Modules that need
    another client define their own `client`."""
    from lsprotocol import types
    from pytest_lsp import make_test_lsp_client

    from .lsp_helpers import SERVER, start

    lsp_client = make_test_lsp_client()
    lsp_client.edits = []

    @lsp_client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply_edit(params: types.ApplyWorkspaceEditParams):
        lsp_client.edits.append(params)
        return types.ApplyWorkspaceEditResult(applied=True)

    await lsp_client.start_io(*SERVER.server_command)
    await start(lsp_client, request.getfixturevalue("workspace"))
    yield lsp_client
    await lsp_client.shutdown_session()
    await lsp_client.stop()
