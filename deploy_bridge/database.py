"""The env's MariaDB: a container on the env network with its data in a named volume.

Its credentials are in credentials.py.
"""

from __future__ import annotations

import docker
from docker.errors import NotFound

from .config import LOG_CONFIG, Settings
from .credentials import DB_ALIAS, DbCredentials
from .errors import MinicloudError
from .model import QueryResult, TableInfo
from .polling import poll_until
from .progress import NullProgress, Progress


class Database:
    def __init__(self, client: docker.DockerClient, settings: Settings, app: str, env: str) -> None:
        self.client, self.settings, self.app, self.env = client, settings, app, env
        self.name = settings.container(app, env, "db")
        self.volume_name = settings.volume(app, env, "db")

    def container(self) -> docker.models.containers.Container | None:
        try:
            return self.client.containers.get(self.name)
        except NotFound:
            return None

    def ensure(self, image: str, network: str, creds: DbCredentials, progress: Progress | None = None):
        progress = progress or NullProgress()
        labels = self.settings.labels(app=self.app, env=self.env, role="db")
        try:
            self.client.volumes.get(self.volume_name)
            progress.report(f"database volume {self.volume_name} found: its data is kept")
        except NotFound:
            self.client.volumes.create(self.volume_name, labels=labels)
        container = self.container()
        if container is None:
            progress.report("starting MariaDB")
            container = self.client.containers.create(
                image, name=self.name, labels=labels, network=network,
                networking_config={network: self.client.api.create_endpoint_config(aliases=[DB_ALIAS])},
                # the MYSQL_* names are read by our image and by the official one, which also
                # wants a root password: a random one, as root is only reachable over the socket
                environment={"MYSQL_DATABASE": creds.database, "MYSQL_USER": creds.user,
                             "MYSQL_PASSWORD": creds.password, "MARIADB_RANDOM_ROOT_PASSWORD": "1"},
                volumes={self.volume_name: {"bind": "/var/lib/mysql", "mode": "rw"}},
                restart_policy={"Name": "unless-stopped"}, log_config=LOG_CONFIG,
            )
        if container.status != "running":
            container.start()
        self.wait_ready(creds)
        return container

    def wait_ready(self, creds: DbCredentials, timeout: float = 90) -> None:
        def ready() -> bool:
            container = self.container()
            if container is None:
                raise MinicloudError(f"the database container of {self.app}/{self.env} is gone")
            if container.status == "exited":
                raise MinicloudError(f"the database of {self.app}/{self.env} stopped while starting",
                                     details=container.logs(tail=30).decode(errors="replace"))
            code, _ = container.exec_run(["mariadb", "-u", creds.user, creds.database, "-e", "SELECT 1"],
                                         environment={"MYSQL_PWD": creds.password})
            return code == 0

        if not poll_until(ready, timeout, 0.5):
            raise MinicloudError(f"the database of {self.app}/{self.env} did not get ready in {timeout:.0f}s")

    def _run(self, creds: DbCredentials, sql: str, output: str) -> str:
        """`mariadb OUTPUT -e SQL` in the env's database container; its stdout."""
        container = self.container()
        if container is None or container.status != "running":
            raise MinicloudError(f"the database of {self.app}/{self.env} is not running",
                                 hint=f"minicloud start {self.env}")
        code, out = container.exec_run(["mariadb", output, "-u", creds.user, creds.database, "-e", sql],
                                       environment={"MYSQL_PWD": creds.password}, demux=True)
        stdout, stderr = (out[0] or b"").decode(errors="replace"), (out[1] or b"").decode(errors="replace")
        if code != 0:
            raise MinicloudError(f"SQL failed: {stderr.strip() or stdout.strip()}")
        return stdout

    def query(self, creds: DbCredentials, sql: str) -> QueryResult:
        """The (last) result set of `sql`."""
        return parse_batch(self._run(creds, sql, "--batch"))

    def query_all(self, creds: DbCredentials, sql: str) -> list[QueryResult]:
        """Every result set of `sql` (several statements give several), read from `mariadb --xml`."""
        return parse_xml(self._run(creds, sql, "--xml"))

    def schema(self, creds: DbCredentials) -> list[TableInfo]:
        """Tables (and views) with their columns and row counts. One statement, without a join: MariaDB
        joins information_schema's COLUMNS and TABLES by opening every table once per column (12 s for
        2,000 tables of 25 columns, against 0.6 s for the two read apart)."""
        result = self.query(creds, (
            "SELECT TABLE_NAME, NULL, NULL, TABLE_ROWS, 0 FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE() "
            "UNION ALL SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, NULL, ORDINAL_POSITION "
            "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1, 5"))
        tables: dict[str, TableInfo] = {}
        for name, column, ctype, rows, _position in result.rows:
            if column is None:  # the table's own row comes first (position 0)
                tables[name] = TableInfo(name, [], int(rows) if rows not in (None, "NULL") else None)
            elif name in tables:
                tables[name].columns.append((column, ctype))
        return [t for t in tables.values() if t.columns]


def _unescape(value: str) -> str | None:
    if value == "NULL":
        return None
    return value.replace("\\t", "\t").replace("\\n", "\n").replace("\\\\", "\\")


def parse_xml(text: str) -> list[QueryResult]:
    """Parse `mariadb --xml` output: one <resultset> per statement that returned rows."""
    import xml.etree.ElementTree as ET

    body = "\n".join(line for line in text.splitlines() if not line.startswith("<?xml"))
    root = ET.fromstring(f"<results>{body}</results>")
    nil = "{http://www.w3.org/2001/XMLSchema-instance}nil"
    results = []
    for resultset in root.iter("resultset"):
        rows = resultset.findall("row")
        columns = [f.get("name", "") for f in rows[0].findall("field")] if rows else []
        results.append(QueryResult(columns, [[None if f.get(nil) == "true" else (f.text or "")
                                              for f in row.findall("field")] for row in rows]))
    return results


def parse_batch(text: str) -> QueryResult:
    """Parse `mariadb --batch` output: a header line, then tab-separated rows with escapes."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        return QueryResult([], [])
    columns = lines[0].split("\t")
    rows = [[_unescape(v) for v in line.split("\t")] for line in lines[1:]]
    return QueryResult(columns, rows)
