"""The engine is the one Docker's own settings name, read as the docker CLI reads them: DOCKER_HOST, else the
context DOCKER_CONTEXT names or `docker context use` chose, else the local socket. The contexts here are
made by the real docker CLI in a configuration folder of the test's own (DOCKER_CONFIG)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from deploy_bridge import engine, keeper
from deploy_bridge.errors import EngineUnavailable

pytestmark = pytest.mark.docker

LOCAL = "/var/run/docker.sock"


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch, docker_engine) -> Path:
    """An empty docker CLI configuration; DOCKER_HOST and DOCKER_CONTEXT unset."""
    config = tmp_path / "docker-config"
    config.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    return config


def docker_cli(*args: str) -> None:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60, env=os.environ.copy())
    assert done.returncode == 0, done.stderr


def context(name: str, socket_path: Path | str) -> None:
    docker_cli("context", "create", name, "--docker", f"host=unix://{socket_path}")


def test_the_context_docker_context_use_chose_is_the_engine(docker_config, tmp_path):
    other_path = tmp_path / "engine.sock"  # the local engine by another path: only the context names it
    other_path.symlink_to(LOCAL)
    context("lab", other_path)
    assert engine.engine_url() == f"unix://{LOCAL}"  # made, not chosen yet
    docker_cli("context", "use", "lab")
    assert engine.engine_address() == engine.EngineAddress(f"unix://{other_path}", "lab")
    assert engine.client().ping()
    assert keeper.engine_socket() == str(other_path)  # the keeper mounts the engine the context names

    context("dead", tmp_path / "nothing.sock")
    docker_cli("context", "use", "dead")
    with pytest.raises(EngineUnavailable, match=r"nothing\.sock \(docker context dead\)"):
        engine.client()


def test_docker_context_and_docker_host_come_first(docker_config, tmp_path, monkeypatch):
    context("dead", tmp_path / "nothing.sock")
    docker_cli("context", "use", "dead")
    other_path = tmp_path / "engine.sock"
    other_path.symlink_to(LOCAL)
    context("lab", other_path)
    monkeypatch.setenv("DOCKER_CONTEXT", "lab")  # over the configuration's choice
    assert engine.engine_url() == f"unix://{other_path}" and engine.client().ping()
    monkeypatch.setenv("DOCKER_CONTEXT", "dead")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{LOCAL}")  # over any context, as the docker CLI
    assert engine.engine_address() == engine.EngineAddress(f"unix://{LOCAL}") and engine.client().ping()


def test_a_context_that_does_not_exist_is_named(docker_config, monkeypatch):
    monkeypatch.setenv("DOCKER_CONTEXT", "nosuch")
    with pytest.raises(EngineUnavailable, match="the docker context 'nosuch' \\(DOCKER_CONTEXT chose it\\) does not "
                                                "exist") as missing:
        engine.client()
    assert "docker context ls" in missing.value.hint
