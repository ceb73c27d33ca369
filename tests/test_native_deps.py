"""Apps with native dependencies on the real engine, built offline with [build] packages: Django with
mysqlclient against the env's MariaDB, Node with bcrypt; without the packages, one readable line and the fix.

Every env built here is destroyed with its data, whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from pathlib import Path

import pytest

from bench.load import request
from deploy_bridge.errors import BuildFailed, NotBuilt

from .conftest import copy_example
from .test_cloud_docker import minicloud

pytestmark = pytest.mark.docker

# bcrypt 5 fetches a prebuilt binary from GitHub and falls back to node-gyp; `build_from_source` makes it
# compile wherever it runs, so the test proves the offline compile (headers from the image, no download)
BCRYPT_APP = {
    "minicloud.toml": """\
[app]
name = "hashes"
runtime = "nodejs"
start = "node server.js"
port = 3000
health = "/healthz"

[env.test]
""",
    "package.json": json.dumps({"name": "hashes", "version": "1.0.0", "private": True,
                                "dependencies": {"bcrypt": "5.1.1"}}),
    ".npmrc": "build_from_source=true\n",
    "server.js": """\
const http = require('http');
const bcrypt = require('bcrypt');

http.createServer(async (req, res) => {
  const send = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  if (req.url === '/healthz') return send(200, { ok: true });
  if (req.url === '/hash' && req.method === 'POST') {
    let raw = '';
    for await (const chunk of req) raw += chunk;
    const { password, hash } = JSON.parse(raw);
    if (hash) return send(200, { match: await bcrypt.compare(password, hash) });
    return send(200, { hash: await bcrypt.hash(password, 8) });
  }
  send(404, { error: 'not found' });
}).listen(Number(process.env.PORT || 3000), '0.0.0.0');
""",
}


def bcrypt_app(root: Path, packages: bool) -> Path:
    ws = root / f"hashes-{uuid.uuid4().hex[:6]}"
    ws.mkdir()
    for name, text in BCRYPT_APP.items():
        (ws / name).write_text(text)
    if packages:
        with (ws / "minicloud.toml").open("a") as f:
            f.write('\n[build]\npackages = ["build-essential"]\n')
    return ws


def without_build_table(ws: Path) -> Path:
    manifest = ws / "minicloud.toml"
    manifest.write_text(manifest.read_text().split("\n[build]")[0] + "\n")
    return ws


def destroy(cloud, env: str = "test") -> None:
    with contextlib.suppress(NotBuilt):
        cloud.destroy_env(env, with_data=True)


def tools_in(docker_engine, image: str) -> str:
    """Which build tools the image that runs holds (none, if the build stage kept them)."""
    out = docker_engine.containers.run(image, ["sh", "-c", "command -v gcc g++ make pkg-config || true"],
                                       entrypoint=[], remove=True)
    return out.decode().strip()


def test_django_with_mysqlclient_reads_and_writes_the_env_database(docker_engine, tmp_path):
    from deploy_bridge.cloud import Cloud

    cloud = Cloud(copy_example("django-shop", tmp_path))
    try:
        result = cloud.build_env("test")
        ca = cloud.ca_path()
        status, root = request(result.url + "/", ca, timeout=15)
        assert status == 200 and root["driver"].startswith("mysqlclient ") and "MariaDB" in root["server"]
        assert request(result.url + "/products", ca, {"name": "kettle", "price_cents": 1200})[0] == 201
        rows = request(result.url + "/products", ca)[1]
        assert [(r["name"], r["price_cents"]) for r in rows] == [("kettle", 1200)]
        db_rows = cloud.db_query("test", "SELECT name FROM products")[0].rows
        assert [tuple(r) for r in db_rows] == [("kettle",)]
        image = cloud.settings.app_image("djshop", "test", result.release)
        assert tools_in(docker_engine, image) == "", "compilers and headers must stay in the build stage"
    finally:
        destroy(cloud)


def test_node_bcrypt_compiles_offline_and_hashes_and_verifies(docker_engine, tmp_path):
    from deploy_bridge.cloud import Cloud

    cloud = Cloud(bcrypt_app(tmp_path, packages=True))
    try:
        result = cloud.build_env("test")
        ca = cloud.ca_path()
        status, body = request(result.url + "/hash", ca, {"password": "s3cret"}, timeout=15)
        assert status == 200 and body["hash"].startswith("$2b$08$")
        assert request(result.url + "/hash", ca, {"password": "s3cret", "hash": body["hash"]})[1] == {"match": True}
        assert request(result.url + "/hash", ca, {"password": "other", "hash": body["hash"]})[1] == {"match": False}
        image = cloud.settings.app_image("hashes", "test", result.release)
        assert tools_in(docker_engine, image) == ""
        log = next((cloud.settings.instance_dir() / "build-logs").glob(f"hashes-test-{result.release}.log"))
        assert "nodejs.org" not in log.read_text(), "node-gyp must not download headers"
    finally:
        destroy(cloud)


def test_mysqlclient_without_packages_fails_with_one_readable_line_and_the_fix(docker_engine, tmp_path):
    from deploy_bridge.cloud import Cloud

    ws = without_build_table(copy_example("django-shop", tmp_path))
    cloud = Cloud(ws)
    try:
        out = minicloud("env", "build", "test", workspace=ws)
        assert out.returncode == 1, out.stderr
        lines = out.stderr.strip().splitlines()
        error = next(i for i, ln in enumerate(lines) if ln.startswith("minicloud: error: "))
        assert lines[error] == (
            "minicloud: error: installing Python dependencies failed (pip install --no-cache-dir -r requirements.txt, "
            "exit 1): Exception: Can not find valid pkg-config name.")
        log = re.fullmatch(r"the full build log: (\S+)", lines[error + 1])
        assert log and "Can not find valid pkg-config name" in Path(log.group(1)).read_text()
        assert lines[error + 2] == (
            'hint: mysqlclient builds against the MariaDB client library: add to minicloud.toml  [build] packages = '
            '["pkg-config", "default-libmysqlclient-dev", "build-essential", "python3-dev"]  runtime_packages = '
            '["libmariadb3"]')
        assert len(lines) == error + 3, "the hint is the last line"
    finally:
        destroy(cloud)


def test_bcrypt_without_a_compiler_names_the_missing_make_and_the_fix(docker_engine, tmp_path):
    from deploy_bridge.cloud import Cloud

    cloud = Cloud(bcrypt_app(tmp_path, packages=False))
    try:
        with pytest.raises(BuildFailed) as err:
            cloud.build_env("test")
        assert err.value.message.startswith("installing Node dependencies failed (npm install")
        assert err.value.message.endswith("gyp ERR! stack Error: not found: make")
        assert err.value.hint.endswith('[build] packages = ["build-essential"]')
    finally:
        destroy(cloud)
