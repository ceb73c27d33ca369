"""The env's database credentials: generated once per workspace and env, kept in
`.minicloud/<env>/db.json` (0600), never printed. They survive `env destroy` without `--with-data`,
so a rebuild opens the same data. No engine needed (the editor reads them at start-up).
"""

from __future__ import annotations

import json
import os
import secrets
import string
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import workspace_state_dir

DB_ALIAS = "db"  # the host name apps use (MYSQL_HOST)
DB_PORT = 3306


@dataclass(frozen=True)
class DbCredentials:
    database: str
    user: str
    password: str

    def url(self) -> str:
        return f"mysql://{self.user}:{self.password}@{DB_ALIAS}:{DB_PORT}/{self.database}"


def credentials_path(workspace: Path, env: str) -> Path:
    return workspace_state_dir(workspace, env) / "db.json"


def credentials(workspace: Path, env: str, app: str, create: bool = True) -> DbCredentials | None:
    path = credentials_path(workspace, env)
    if path.is_file():
        return DbCredentials(**json.loads(path.read_text()))
    if not create:
        return None
    alphabet = string.ascii_letters + string.digits
    creds = DbCredentials(database=app.replace("-", "_"), user=app.replace("-", "_")[:16],
                          password="".join(secrets.choice(alphabet) for _ in range(24)))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(creds), f)
    return creds


# The data API's ([data]): its PostgreSQL password and the server credential injected into functions and
# the app, in `.minicloud/<env>/data.json` (0600), kept like db.json.
@dataclass(frozen=True)
class DataSecrets:
    pg_password: str
    server_key: str
    server_secret: str


def secrets_path(workspace: Path, env: str) -> Path:
    return workspace_state_dir(workspace, env) / "data.json"


def data_secrets(workspace: Path, env: str, create: bool = True) -> DataSecrets | None:
    """The env's data secrets, made on first use (0600); None when absent and `create` is False."""
    path = secrets_path(workspace, env)
    if path.is_file():
        return DataSecrets(**json.loads(path.read_text()))
    if not create:
        return None
    made = DataSecrets(secrets.token_urlsafe(24), "mck_" + secrets.token_hex(12), secrets.token_urlsafe(32))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(made), f)
    return made
