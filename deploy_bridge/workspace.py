"""A workspace's view of its cloud that needs no engine: the manifest, the env's URLs, the variables
the app receives. `Cloud` (cloud.py) adds the verbs that talk to Docker.

Kept free of the Docker SDK so that what an editor needs at start-up imports in a few milliseconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

from . import variables
from .config import Settings, settings
from .credentials import credentials, data_secrets
from .manifest import Manifest, load_manifest
from .model import InjectedVar


class Workspace:
    def __init__(self, workspace: Path | None = None, manifest: Manifest | None = None) -> None:
        self._manifest = manifest or load_manifest(workspace)
        self.workspace = self._manifest.workspace
        self._manifest_stamp = self._stamp()

    def _stamp(self) -> tuple[int, int] | None:
        with contextlib.suppress(OSError):
            st = self._manifest.path.stat()
            return (st.st_mtime_ns, st.st_size)
        return None

    @property
    def manifest(self) -> Manifest:
        """The workspace's manifest, read again when the file changed (a Cloud can live as long as an editor)."""
        stamp = self._stamp()
        if stamp != self._manifest_stamp:
            self._manifest = load_manifest(self.workspace)
            self._manifest_stamp = stamp
        return self._manifest

    # ----------------------------------------------------------------- helpers
    @property
    def settings(self) -> Settings:
        return settings()

    def env_settings(self, env: str) -> Settings:
        """The settings `env` is named and reached by: a swarm env may publish its gateway on its own port."""
        port = self.manifest.env(env).gateway_port
        return dataclasses.replace(self.settings, gateway_port=port) if port else self.settings

    @property
    def app(self) -> str:
        return self.manifest.name

    def _check_env(self, env: str) -> None:
        self.manifest.env(env)  # raises UnknownEnv with the list of known ones

    def _sandbox_keys(self, env: str, create: bool):
        """The env's platform and app key pairs (codegen owns their format); None when unavailable."""
        try:
            from codegen import keys
        except ImportError:
            return None
        return keys.ensure_env_keys(self.workspace, env) if create else keys.env_keys(self.workspace, env)

    # ----------------------------------------------------------------- no engine needed
    def url(self, env: str) -> str:
        self._check_env(env)
        s = self.env_settings(env)
        return s.url(s.app_host(self.app, env))

    def sandbox_url(self, env: str) -> str:
        self._check_env(env)
        s = self.env_settings(env)
        return s.url(s.sandbox_host(self.app, env))

    def ca_path(self) -> str:
        from .ca import ensure_ca

        return str(ensure_ca(self.settings.instance_dir() / "ca").cert_path)

    def _variables(self, env: str, release: str | None) -> list[InjectedVar]:
        keys = self._sandbox_keys(env, create=False)
        creds = credentials(self.workspace, env, self.app, create=False)
        return variables.injected(self.env_settings(env), self.manifest, env, creds, release,
                                  app_id=keys.app_id if keys else None,
                                  data=data_secrets(self.workspace, env, create=False))

    def injected_vars(self, env: str) -> list[InjectedVar]:
        """The variables the app of `env` receives, secrets masked. Needs no engine."""
        self._check_env(env)
        return variables.masked(self._variables(env, None))

