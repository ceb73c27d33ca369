"""Where minicloud keeps things and how it names them.

Names and labels are derived from (instance, app, env, role, release) only, so that the Docker
labels stay the single truth about what runs. An *instance* isolates whole clouds on one engine:
the default one for the user, and a throw-away one per test run (`MINICLOUD_INSTANCE`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

LABEL_APP = "minicloud.app"
LABEL_ENV = "minicloud.env"
LABEL_ROLE = "minicloud.role"
LABEL_RELEASE = "minicloud.release"
LABEL_INSTANCE = "minicloud.instance"
LABEL_RECIPE = "minicloud.recipe"
LABEL_IMAGE = "minicloud.image"
LABEL_WORKSPACE = "minicloud.workspace"  # on the network: which folder owns app/env
LABEL_FN_VERSIONS = "minicloud.fn.versions"  # on a release image: the functions deployed with it (JSON)

# Every container logs to rotated JSON files: a chatty app cannot fill the disk, and the log
# followers can read the files directly (logs.py) whatever the engine's default driver is.
LOG_CONFIG = {"type": "json-file", "config": {"max-size": "20m", "max-file": "5"}}
_INSTANCE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")


@dataclass(frozen=True)
class Settings:
    home: Path  # CA, gateway routes, locks: shared by every workspace of this instance
    instance: str
    gateway_port: int

    @property
    def prefix(self) -> str:
        return "mc" if self.instance == "default" else f"mc-{self.instance}"

    def instance_dir(self) -> Path:
        return self.home / self.instance

    # ---- names
    def network(self, app: str, env: str) -> str:
        return f"{self.prefix}-{app}-{env}"

    def container(self, app: str, env: str, role: str, release: str | None = None) -> str:
        base = f"{self.prefix}-{app}-{env}-{role}"
        return f"{base}-{release}" if release else base

    def volume(self, app: str, env: str, role: str) -> str:
        return f"{self.prefix}-{app}-{env}-{role}-data"

    def app_image(self, app: str, env: str, release: str) -> str:
        return f"{self.prefix}-{app}:{env}-{release}"

    @property
    def edge_container(self) -> str:
        return f"{self.prefix}-edge"

    # ---- labels
    def labels(self, app: str | None = None, env: str | None = None, role: str | None = None,
               release: str | None = None) -> dict[str, str]:
        labels = {LABEL_INSTANCE: self.instance}
        for key, value in ((LABEL_APP, app), (LABEL_ENV, env), (LABEL_ROLE, role), (LABEL_RELEASE, release)):
            if value is not None:
                labels[key] = value
        return labels

    def label_filter(self, **kwargs: str | None) -> list[str]:
        return [f"{k}={v}" for k, v in self.labels(**kwargs).items()]

    # ---- URLs
    def app_host(self, app: str, env: str) -> str:
        return f"{app}.{env}.localhost"

    def sandbox_host(self, app: str, env: str) -> str:
        """Each app's env has its own sandbox open platform (its own app id and keys)."""
        return f"openapi.{app}.{env}.localhost"

    def url(self, host: str) -> str:
        return f"https://{host}:{self.gateway_port}"


def settings() -> Settings:
    """Read from the environment each time (tests and the server may change it)."""
    home = Path(os.environ.get("MINICLOUD_HOME") or Path.home() / ".minicloud").expanduser()
    instance = os.environ.get("MINICLOUD_INSTANCE", "default")
    if not _INSTANCE_RE.match(instance):
        from .errors import MinicloudError

        raise MinicloudError(f"MINICLOUD_INSTANCE={instance!r} is not a valid name (lowercase letters, digits, '-')")
    port_text = os.environ.get("MINICLOUD_GATEWAY_PORT", "8443")
    try:
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError
    except ValueError:
        from .errors import MinicloudError

        raise MinicloudError(f"MINICLOUD_GATEWAY_PORT={port_text!r} is not a port number") from None
    return Settings(home=home, instance=instance, gateway_port=port)


STATE_GITIGNORE = "# minicloud's state (keys, database credentials): never commit it\n*\n"


def workspace_state_dir(workspace: Path, env: str) -> Path:
    """Per-workspace, per-env secrets (DB credentials): `<workspace>/.minicloud/<env>/`, mode 0700.

    `.minicloud/` ignores itself for git, so `git add .` in the user's app never commits a secret.
    """
    folder = workspace / ".minicloud" / env
    folder.mkdir(parents=True, exist_ok=True)
    for path in (workspace / ".minicloud", folder):
        os.chmod(path, 0o700)
    ignore = workspace / ".minicloud" / ".gitignore"
    if not ignore.is_file():
        ignore.write_text(STATE_GITIGNORE)
    return folder
