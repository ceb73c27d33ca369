"""The verbs. The CLI and the language server both call these, and nothing else of deploy_bridge.

`Cloud(workspace)` binds one app (its minicloud.toml). Every method takes the environment name.
Long verbs take a `Progress` (see progress.py) and honour its cancellation.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from .manifest import Manifest, load_manifest
from .model import DeployResult, EnvStatus, InjectedVar, LogLine, QueryResult, Release, TableInfo
from .progress import NullProgress, Progress


class Cloud:
    def __init__(self, workspace: Path | None = None, manifest: Manifest | None = None) -> None:
        self.manifest = manifest or load_manifest(workspace)
        self.workspace = self.manifest.workspace

    # -- environments
    def build_env(self, env: str, progress: Progress | None = None) -> DeployResult:
        """Network, database, sandbox, gateway route, and a first deploy of the app."""
        raise NotImplementedError

    def destroy_env(self, env: str, with_data: bool = False, progress: Progress | None = None) -> None:
        raise NotImplementedError

    def status(self, env: str, stats: bool = True) -> EnvStatus:
        raise NotImplementedError

    def url(self, env: str) -> str:
        raise NotImplementedError

    # -- releases
    def deploy(self, env: str, progress: Progress | None = None) -> DeployResult:
        raise NotImplementedError

    def releases(self, env: str) -> list[Release]:
        raise NotImplementedError

    def rollback(self, env: str, to: str | None = None, progress: Progress | None = None) -> DeployResult:
        raise NotImplementedError

    def restart(self, env: str, progress: Progress | None = None) -> EnvStatus:
        raise NotImplementedError

    def stop(self, env: str, progress: Progress | None = None) -> EnvStatus:
        raise NotImplementedError

    def start(self, env: str, progress: Progress | None = None) -> EnvStatus:
        raise NotImplementedError

    # -- observing
    def logs(self, env: str, *, follow: bool = False, since: str | None = None, tail: int | None = None,
             grep: str | None = None, roles: list[str] | None = None,
             stop: threading.Event | None = None) -> Iterator[LogLine]:
        raise NotImplementedError

    def injected_vars(self, env: str) -> list[InjectedVar]:
        """The variables the app of `env` receives, secrets masked. Needs no engine."""
        raise NotImplementedError

    # -- database
    def db_query(self, env: str, sql: str) -> QueryResult:
        raise NotImplementedError

    def db_schema(self, env: str) -> list[TableInfo]:
        """Tables, columns and row counts of the env's database (one query, for the server's index)."""
        raise NotImplementedError


__all__ = ["Cloud", "NullProgress"]
