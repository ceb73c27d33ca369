"""`env build` of a swarm env, through the CLI as a user types it, on a lab of real engines (a manager and
one worker, tests/swarm_lab.py): minicloud's own registry as a service on the manager (the env names no
registry), MariaDB as a service pinned to the manager with its volume, the app reaching it by `db` on the
overlay, the sandbox open platform as a service the app reaches by its URL (the CA and the app's key given as
Swarm files), the data API (PostgreSQL and its server as services) that the app calls with the client SDK,
`minicloud db` and the editor's tables (the language server's engine reader) on it, a member's login through
the sandbox, the editor's cloud commands and log panel, a cloud function (invoked, redeployed, listed, its
log), the env's metrics and an alert's webhook, and the data kept across `env destroy` unless `--with-data`.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time

import httpx
import pytest

from bench.load import by_name, trusting
from bench.lsp import TimedClient
from tests.swarm_lab import swarm_lab

pytestmark = pytest.mark.docker

MANIFEST = """\
[app]
name = "{name}"
runtime = "nodejs"
start = "node server.js"
port = 3000
health = "/healthz"
drain_timeout = 2

[env.prod]
engine = "swarm"
replicas = 2

[data]
[data.collections.orders]
read = "auth != null"

[env.staging]
engine = "swarm"
sandbox = false
gateway_port = {staging_port}

[functions]
runtime = "nodejs"
pool = 1

[functions.hello]

[alerts]
latency = "p50 > 0ms"  # holds while requests come: fires at the first
webhook = "{webhook}"
"""

# /db: what the database greets a new connection with (MariaDB's handshake names the server); /sandbox: the
# sandbox's health through the env's URL for it (trusting the local CA by NODE_EXTRA_CA_CERTS), and whether the
# app's private key is there to sign with
SERVER = """\
const net = require('net'), fs = require('fs'), https = require('https');
require('http').createServer((q, s) => {
  if (q.url === '/data') {  // the data API through the env's URL, with the client SDK and the server credential
    const cloud = require('./minicloud-cloud.js');
    cloud.init();
    const orders = cloud.database().collection('orders');
    orders.add({ data: { item: 'tea', by: require('os').hostname() } })
      .then(() => orders.where({ item: 'tea' }).count())
      .then(r => s.end('data ' + r.total))
      .catch(e => { s.writeHead(502); s.end('data ' + (e.code || '') + ' ' + e.message); });
    return;
  }
  if (q.url === '/sandbox') {
    const key = fs.readFileSync(process.env.ALIPAY_APP_PRIVATE_KEY_PATH, 'utf8').includes('PRIVATE KEY');
    https.get(process.env.ALIPAY_ENDPOINT + '/_sandbox/health', r => {
      r.resume(); s.end(`sandbox ${r.statusCode} key ${key}`);
    }).on('error', e => { s.writeHead(502); s.end('sandbox ' + e.message); });
    return;
  }
  if (q.url === '/db') {
    const c = net.connect(+process.env.MYSQL_PORT, process.env.MYSQL_HOST);
    c.once('data', d => { s.end(d.toString('latin1').includes('MariaDB') ? 'db MariaDB' : 'db other'); c.destroy(); });
    c.on('error', e => { s.writeHead(502); s.end('db ' + e.message); });
    return;
  }
  if (q.url.startsWith('/say?')) { console.log('said ' + q.url.slice(5)); s.end('said'); return; }
  s.end('up');
}).listen(3000);
"""


class Webhook:
    """An alert webhook on this machine at `address` (where the lab's nodes reach it): every JSON POST it got."""

    def __init__(self, address: str) -> None:
        import http.server

        calls: queue.Queue[dict] = queue.Queue()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                calls.put(json.loads(self.rfile.read(int(self.headers["content-length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.calls = calls
        self.server = http.server.ThreadingHTTPServer((address, 0), Handler)
        self.url = f"http://{address}:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Webhook:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, wanted, timeout: float) -> dict:
        deadline, seen = time.monotonic() + timeout, []
        while time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                call = self.calls.get(timeout=0.5)
                if wanted(call):
                    return call
                seen.append(call)
        raise AssertionError(f"no such webhook call within {timeout:.0f} s (got {seen})")


FUNCTIONS_ONLY = """\
[app]
name = "{name}"

[env.prod]
engine = "swarm"
sandbox = false
gateway_port = {port}

[functions]
runtime = "nodejs"
pool = 1

[functions.hello]
"""

# a function that greets, and says whether it reaches the env's database (by the app's settings) and has the CA
FUNCTION = """\
const net = require('net'), fs = require('fs');
exports.main = (event, context) => new Promise(resolve => {
  console.log('hello ' + event.name);
  const c = net.connect(+process.env.MYSQL_PORT, process.env.MYSQL_HOST);
  c.once('data', d => {
    resolve({ hello: event.name, version: VERSION, db: d.toString('latin1').includes('MariaDB'),
              ca: fs.existsSync('/etc/minicloud/ca.pem') });
    c.destroy();
  });
  c.on('error', e => resolve({ hello: event.name, db: e.message }));
});
"""


def engine_view(ws, environ: dict[str, str], timeout: float = 60) -> dict:
    """The first view the language server's engine reader (its child process) sends for env prod."""
    reader = subprocess.Popen([sys.executable, "-m", "lsp_server.engine_view", str(ws), "prod"], cwd=ws, env=environ,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in reader.stdout], daemon=True).start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                message = json.loads(lines.get(timeout=1))
                assert message["kind"] != "away", message
                if message["kind"] == "view":
                    assert message["state"] == "running" and "error" not in message, message
                    return message
        raise AssertionError(f"no view from the engine reader within {timeout:.0f} s")
    finally:
        reader.kill()
        reader.wait(10)


def test_env_build_runs_the_registry_and_the_database_as_services_and_keeps_the_data(docker_engine, tmp_path,
                                                                                    monkeypatch):
    from codegen.abilities import grant
    from codegen.cloud_sdk.minicloud_cloud import Cloud as SdkCloud
    from deploy_bridge.cloud import Cloud
    from deploy_bridge.data import API_PREFIX

    host = docker_engine
    with swarm_lab(workers=1, host=host) as lab, contextlib.ExitStack() as stack:
        ws = tmp_path / "swarmdb"
        ws.mkdir()
        name = f"sd{lab.name[-5:]}"
        staging_port = int(os.environ.get("MINICLOUD_GATEWAY_PORT", "8443")) + 1
        hook = stack.enter_context(Webhook(lab.bridge_address))  # on this machine, as the lab's nodes reach it
        (ws / "minicloud.toml").write_text(MANIFEST.format(name=name, staging_port=staging_port, webhook=hook.url))
        (ws / "server.js").write_text(SERVER)
        (ws / "functions" / "hello").mkdir(parents=True)
        (ws / "functions" / "hello" / "index.js").write_text(FUNCTION.replace("VERSION", "1"))
        environ = {**os.environ, "DOCKER_HOST": f"unix://{lab.engines[0].sock}",
                   "MINICLOUD_BUILD_HOST": "unix:///var/run/docker.sock"}

        def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
            run = subprocess.run([sys.executable, "-m", "deploy_bridge.cli", *args], cwd=ws, capture_output=True,
                                 text=True, timeout=600, env=environ)
            assert not check or run.returncode == 0, run.stderr + run.stdout
            return run

        cli("codegen", "cloud-sdk", "--lang", "js", "--out", str(ws / "minicloud-cloud.js"))
        grant(ws, "prod", ["小程序授权"])  # the members' login (alipay.system.oauth.token) is a signed capability
        refused = cli("deploy", "prod", check=False)
        assert refused.returncode != 0 and "not built" in refused.stderr and "env build prod" in refused.stderr

        built = json.loads(cli("env", "build", "prod", "--json").stdout)
        for monkey in ("DOCKER_HOST", "MINICLOUD_BUILD_HOST"):
            monkeypatch.setenv(monkey, environ[monkey])
        cloud = Cloud(ws)
        s = cloud.settings
        lab.images.append(s.app_image(name, "prod", built["release"]))
        services = {svc.name: svc.attrs["Spec"] for svc in lab.manager.services.list()}
        pinned = f"node.id=={lab.manager_node_id}"
        # Architecture Invariant: a swarm service whose data is on a volume runs one task, pinned to one node
        for own in (f"{s.prefix}-registry", *(s.container(name, "prod", role) for role in ("db", "sandbox", "data",
                                                                                         "datadb", "collector",
                                                                                         "functions"))):
            assert pinned in services[own]["TaskTemplate"]["Placement"]["Constraints"], own
            assert services[own]["Labels"]["minicloud.instance"] == s.instance
        registry_address = f"{lab.manager_address}:5000"
        app = services[s.container(name, "prod", "app")]["TaskTemplate"]["ContainerSpec"]["Image"]
        assert app.startswith(f"{registry_address}/"), app
        worker = lab.worker_clients[0]  # it had no other way to the image than minicloud's registry
        assert any(d.startswith(app.split("@")[0].rsplit(":", 1)[0] + "@") for i in worker.images.list()
                   for d in i.attrs.get("RepoDigests") or [])

        status = json.loads(cli("status", "prod", "--json").stdout)
        assert status["state"] == "running" and len(status["tasks"]) == 2

        # the app reaches the database by the name it has on one machine, through the env's gateway
        url, host_name = f"https://{lab.manager_address}:{s.gateway_port}", s.app_host(name, "prod")
        assert built["url"] == f"https://{host_name}:{s.gateway_port}"
        with httpx.Client(verify=trusting(cloud.ca_path()), timeout=10) as client:
            assert client.get(url + "/db", **by_name(host_name)).text == "db MariaDB"
            assert client.get(url + "/sandbox", **by_name(host_name)).text == "sandbox 200 key true"
            assert [client.get(url + "/data", **by_name(host_name)).text for _ in range(2)] == ["data 1", "data 2"]
        # the CLI's data and files verbs from this machine, where the env's host name is not the manager's
        listed = json.loads(cli("data", "prod", "collections", "--json").stdout)["collections"]
        assert {c["name"]: c["count"] for c in listed}["orders"] == 2
        picture = b"\x89PNG\r\n\x1a\n" + bytes(range(256))  # not text: no content check needs granting
        (ws / "pic.png").write_bytes(picture)
        cli("files", "prod", "put", str(ws / "pic.png"), "pics/pic.png")
        cli("files", "prod", "get", "pics/pic.png", "--out", str(ws / "back.png"))
        assert (ws / "back.png").read_bytes() == picture
        # a member's login: the sandbox (behind the manager's gateway) issues the code, the data API trades it
        member = "2088102150477652"
        code = json.loads(cli("sandbox", "login", "prod", "--user", member, "--json").stdout)["auth_code"]
        user = SdkCloud(built["url"] + API_PREFIX, ca=cloud.ca_path(), address=lab.manager_address,
                        get_auth_code=lambda: code)
        assert user.session_from_code(code)["uid"] == member and user.uid == member

        # the editor on the swarm env: its cloud commands, and its log panel showing a line a task wrote
        editor = TimedClient([sys.executable, "-m", "lsp_server"], ws, env=environ)
        try:
            def command(name: str, **argument: str):
                return editor.request("workspace/executeCommand", {"command": name, "arguments": [argument]},
                                      timeout=120)

            seen = command("minicloud.status", env="prod")
            assert seen["state"] == "running" and seen["release"] == built["release"], seen
            current = [r["id"] for r in command("minicloud.releases", env="prod")["releases"] if r["current"]]
            assert current == [built["release"]]
            stream = command("minicloud.logs.tail", env="prod", role="app", since="1s")
            word, heard = f"w{time.monotonic_ns()}", []
            deadline = time.monotonic() + 60
            with httpx.Client(verify=trusting(cloud.ca_path()), timeout=10) as client:
                while not any(f"said {word}" in line for line in heard):
                    assert time.monotonic() < deadline, f"the log panel never showed said {word}: {heard[-5:]}"
                    client.get(f"{url}/say?{word}", **by_name(host_name))
                    editor.wait(0.5)
                    heard += [line for line, _ in editor.take_logs()]
            assert command("minicloud.logs.stop", stream=stream["stream"])["stopped"] is True
        finally:
            editor.close()

        # a function beside the app: its scheduler and instances on the manager, invoked through the env's gateway
        def invoke() -> dict:
            called = json.loads(cli("fn", "invoke", "prod", "hello", "--data", '{"name": "swarm"}', "--json").stdout)
            assert called["status"] == 200, called
            return called["result"]

        assert invoke() == {"hello": "swarm", "version": 1, "db": True, "ca": True}
        (ws / "functions" / "hello" / "index.js").write_text(FUNCTION.replace("VERSION", "2"))
        shipped = json.loads(cli("fn", "deploy", "prod", "hello", "--json").stdout)["versions"]["hello"]
        assert invoke()["version"] == 2, "the new code takes the next invocation"
        listed = json.loads(cli("fn", "list", "prod", "--json").stdout)["functions"]["hello"]
        assert (listed["version"], listed["invocations"], listed["errors"]) == (shipped, 2, 0), listed  # both calls
        assert json.loads(cli("status", "prod", "--json").stdout)["functions"]["hello"]["version"] == shipped
        said = [json.loads(line) for line in cli("logs", "prod", "--role", "function", "--json").stdout.splitlines()]
        assert [line["line"] for line in said if line["line"].endswith("hello swarm")], said[-5:]
        # a release records its functions' versions: a rollback brings them back with the app
        redeployed = json.loads(cli("deploy", "prod", "--json").stdout)
        lab.images.append(s.app_image(name, "prod", redeployed["release"]))
        rolled = json.loads(cli("rollback", "prod", "--json").stdout)
        assert (rolled["release"], rolled["previous"]) == (built["release"], redeployed["release"])
        assert invoke()["version"] == 1, "the function as it was deployed with that release"

        # metrics: the env's collector, beside its gateway, counts each request by the release of the task that
        # answered it, exactly once; an alert fires and its webhook is called from the swarm
        def counted() -> int:
            found = json.loads(cli("metrics", "prod", "--json").stdout)["releases"]
            return sum(r["requests"] for r in found if r["role"] == "app" and r["release"] == built["release"])

        before, deadline = -1, time.monotonic() + 60
        while (now := counted()) != before:  # the requests above have all been written and read
            assert time.monotonic() < deadline, "the collector's count does not settle"
            before = now
            time.sleep(1.5)
        with httpx.Client(verify=trusting(cloud.ca_path()), timeout=10) as client:
            for _ in range(40):
                assert client.get(url + "/", **by_name(host_name)).text == "up"
        deadline = time.monotonic() + 30
        while (now := counted()) != before + 40:
            assert now < before + 40 and time.monotonic() < deadline, f"counted {now - before} of 40"
            time.sleep(0.5)
        fired = hook.wait_for(lambda call: (call["alert"], call["state"], call["env"]) == ("latency", "firing", "prod"), 60)
        assert fired["app"] == name and fired["value"] > 0, fired
        events = json.loads(cli("alerts", "prod", "--json").stdout)["events"]
        assert {e["alert"] for e in events if e["state"] == "firing"} == {"latency"}, events
        # what `top` shows: the env's containers on the collector's node sampled too (the gateway is pinned there;
        # an app task may be on the worker, where no collector reads the cgroups)
        def gateway_sampled() -> bool:
            sampled = cloud.live_metrics("prod")["containers"]
            return any(c["memory_bytes"] and c["state"] == "running" for c in sampled if c["role"] == "gateway")

        deadline = time.monotonic() + 30
        while not gateway_sampled():
            assert time.monotonic() < deadline, f"the gateway task is not sampled: {cloud.live_metrics('prod')}"
            time.sleep(1)

        cli("db", "prod", "-e", "CREATE TABLE orders (id INT PRIMARY KEY, note VARCHAR(20)); "
                                "INSERT INTO orders VALUES (1, 'kept')")
        tables = {t.name: t.columns for t in cloud.db_schema("prod")}  # what the editor's completions read
        assert tables == {"orders": [("id", "int(11)"), ("note", "varchar(20)")]}
        assert engine_view(ws, environ)["tables"]["orders"]["columns"] == [["id", "int(11)"], ["note", "varchar(20)"]]
        db_lines = [json.loads(line) for line in cli("logs", "prod", "--role", "db", "--json").stdout.splitlines()]
        assert db_lines and {line["role"] for line in db_lines} == {"db"}

        # a second env on the same swarm: its own database and gateway, on the port its table names
        staged = json.loads(cli("env", "build", "staging", "--json").stdout)
        lab.images.append(s.app_image(name, "staging", staged["release"]))
        assert staged["url"] == f"https://{s.app_host(name, 'staging')}:{staging_port}"
        with httpx.Client(verify=trusting(cloud.ca_path()), timeout=10) as client:
            assert client.get(f"https://{lab.manager_address}:{staging_port}/db",
                              **by_name(s.app_host(name, "staging"))).text == "db MariaDB"
            assert client.get(url + "/db", **by_name(host_name)).text == "db MariaDB", "prod still answers"
        assert "orders" not in cli("db", "staging", "-e", "SHOW TABLES").stdout, "each env its own database"
        cli("env", "destroy", "staging", "--with-data")

        # a workspace of functions alone on the same swarm: releases that record their versions, and rollback
        fn_ws = tmp_path / "fnonly"
        (fn_ws / "functions" / "hello").mkdir(parents=True)
        (fn_ws / "minicloud.toml").write_text(FUNCTIONS_ONLY.format(name=f"{name}f", port=staging_port + 1))
        (fn_ws / "functions" / "hello" / "index.js").write_text(FUNCTION.replace("VERSION", "1"))

        def fn_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
            run = subprocess.run([sys.executable, "-m", "deploy_bridge.cli", *args], cwd=fn_ws, capture_output=True,
                                 text=True, timeout=600, env=environ)
            assert not check or run.returncode == 0, run.stderr + run.stdout
            return run

        def fn_invoke() -> dict:
            return json.loads(fn_cli("fn", "invoke", "prod", "hello", "--data", '{"name": "alone"}', "--json").stdout)

        first = json.loads(fn_cli("env", "build", "prod", "--json").stdout)["release"]
        assert fn_invoke()["result"] == {"hello": "alone", "version": 1, "db": True, "ca": True}
        (fn_ws / "functions" / "hello" / "index.js").write_text(FUNCTION.replace("VERSION", "2"))
        second = json.loads(fn_cli("deploy", "prod", "--json").stdout)
        assert second["previous"] == first and fn_invoke()["result"]["version"] == 2
        fn_status = json.loads(fn_cli("status", "prod", "--json").stdout)
        assert (fn_status["state"], fn_status["release"]) == ("running", second["release"]), fn_status
        assert [r["id"] for r in json.loads(fn_cli("releases", "prod", "--json").stdout)["releases"]] == [
            second["release"], first]
        back = json.loads(fn_cli("rollback", "prod", "--json").stdout)
        assert (back["release"], back["previous"]) == (first, second["release"]) and fn_invoke()["result"]["version"] == 1
        refused = fn_cli("scale", "prod", "2", check=False)
        assert refused.returncode != 0 and "functions alone" in refused.stderr, refused.stderr
        fn_cli("env", "destroy", "prod", "--with-data")
        assert not [v.name for v in lab.manager.volumes.list() if f"{name}f-prod-" in v.name], "every volume went"

        gone = cli("env", "destroy", "prod")
        assert "database volume and credentials kept" in gone.stdout
        left = {svc.name for svc in lab.manager.services.list()}
        assert not {s.container(name, "prod", role) for role in ("app", "db", "sandbox", "data", "datadb", "gateway",
                                                                 "collector", "functions")} & left
        assert not lab.manager.containers.list(all=True, filters={"label": [f"minicloud.app={name}",
                                                                            "minicloud.role=function"]}), "an instance left"
        assert not [c.name for c in [*lab.manager.configs.list(), *lab.manager.secrets.list()] if name in c.name]
        assert f"{s.prefix}-registry" in left, "the registry serves every env of the instance: it stays"
        volume = s.volume(name, "prod", "db")
        assert lab.manager.volumes.get(volume).attrs["Labels"]["minicloud.app"] == name

        again = json.loads(cli("env", "build", "prod", "--json").stdout)
        lab.images.append(s.app_image(name, "prod", again["release"]))
        assert "kept" in cli("db", "prod", "-e", "SELECT note FROM orders WHERE id = 1").stdout
        with httpx.Client(verify=trusting(cloud.ca_path()), timeout=10) as client:  # and the documents too
            assert client.get(url + "/data", **by_name(host_name)).text == "data 3"

        cli("env", "destroy", "prod", "--with-data")
        assert not [v.name for v in lab.manager.volumes.list() if f"{name}-prod-" in v.name], "every volume of prod"
