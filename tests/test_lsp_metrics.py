"""The editor's side of metrics on the real engine: the status numbers (`minicloud/metrics`), a hover on
a route handler counting the requests the test sent, an alert as a message with "Show logs" and
"Roll back" (answered, and acted on) and as a warning on its rule's line while it fires."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient

from bench.load import trusting

from .lsp_helpers import SERVER, capabilities, open_doc, wait_for

pytestmark = pytest.mark.docker

SERVER_JS = """\
const http = require('http');
let failing = false;
http.createServer((req, res) => {
  const path = new URL(req.url, 'http://x').pathname;
  const send = (status, body) => { res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body)); };
  if (path === '/healthz') return send(200, { ok: true });
  if (path === '/fail/on') { failing = true; return send(200, { failing }); }
  if (path === '/fail/off') { failing = false; return send(200, { failing }); }
  if (path === '/slow') return setTimeout(() => send(200, { slow: true }), 400);
  if (path === '/burn') {  // a CPU loop for 8 s, in slices so that requests are still answered
    send(200, { burning: true }); const until = Date.now() + 8000;
    const step = () => { const end = Date.now() + 50; while (Date.now() < end) Math.sqrt(Math.random());
      if (Date.now() < until) setImmediate(step); };
    return setImmediate(step);
  }
  if (path === '/crash') { send(200, { crashing: true }); return setTimeout(() => process.exit(1), 100); }
  if (failing) return send(500, { error: 'made to fail' });
  if (path.startsWith('/orders/')) return send(200, { id: path.slice(8) });
  if (path === '/orders') return send(req.method === 'POST' ? 201 : 200, { orders: [] });
  send(404, { error: 'not found' });
}).listen(3000);
"""

MANIFEST = """\
[app]
name = "lspmetrics"
runtime = "nodejs"
start = "node server.js"
port = 3000

[env.test]
sandbox = false

[alerts]
error_rate = "5xx > 20% for 2s"
latency = "p95 > 300ms for 2s"
cpu = "cpu > 50% for 3s"
restarts = "restarts > 0"
"""

ROUTES_JS = """\
const router = require('express').Router();
router.get('/orders/:id', (req, res) => res.json({}));
router.post('/orders', (req, res) => res.json({}));
router.get('/never', (req, res) => res.json({}));
"""


@pytest.fixture(scope="module")
def metrics_app(docker_engine, tmp_path_factory):
    from deploy_bridge.cloud import Cloud

    workspace = tmp_path_factory.mktemp("lspmetrics") / "lspmetrics"
    workspace.mkdir()
    (workspace / "server.js").write_text(SERVER_JS)
    (workspace / "minicloud.toml").write_text(MANIFEST)
    (workspace / "routes.js").write_text(ROUTES_JS)
    cloud = Cloud(workspace)
    cloud.build_env("test")
    cloud.deploy("test")
    yield cloud
    cloud.destroy_env("test", with_data=True)


def send(cloud, method: str, path: str, n: int = 1) -> list[int]:
    with httpx.Client(verify=trusting(cloud.ca_path()), timeout=30) as http:
        return [http.request(method, cloud.url("test") + path).status_code for _ in range(n)]


@pytest_lsp.fixture(config=SERVER)
async def client(lsp_client: LanguageClient, request):
    workspace: Path = request.getfixturevalue("metrics_app").workspace
    lsp_client.metrics, lsp_client.asked, lsp_client.log_batches = [], [], []
    lsp_client.answer = "Show logs"

    @lsp_client.feature("minicloud/metrics")
    def on_metrics(params):
        lsp_client.metrics.append(params)

    @lsp_client.feature("minicloud/logs")
    def on_logs(params):
        lsp_client.log_batches.append(params)

    @lsp_client.feature(types.WINDOW_SHOW_MESSAGE_REQUEST)
    def on_ask(params: types.ShowMessageRequestParams):
        lsp_client.asked.append(params)
        return types.MessageActionItem(lsp_client.answer)

    caps = capabilities()
    caps.experimental = {**caps.experimental, "minicloudMetrics": True}
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=caps, root_uri=workspace.as_uri(),
        workspace_folders=[types.WorkspaceFolder(uri=workspace.as_uri(), name=workspace.name)],
        initialization_options={"env": "test"}))
    yield
    await lsp_client.shutdown_session()


def field(params, name):
    return params[name] if isinstance(params, dict) else getattr(params, name)


async def test_route_hover_counts_the_requests_sent(client: LanguageClient, metrics_app):
    """Requests to /orders/17 and /orders/18 count for `router.get('/orders/:id')`, the POSTs for
    `router.post('/orders')`; a route that served nothing says so."""
    stamp = f"/orders/{time.time_ns()}"
    gets = send(metrics_app, "GET", stamp, 7) + send(metrics_app, "GET", stamp + "1", 5)
    posts = send(metrics_app, "POST", "/orders", 4)
    assert gets == [200] * 12 and posts == [201] * 4
    uri = open_doc(client, metrics_app.workspace / "routes.js", ROUTES_JS, "javascript")

    async def hover(line: int) -> str:
        found = await client.text_document_hover_async(types.HoverParams(
            types.TextDocumentIdentifier(uri), types.Position(line, 15)))
        return found.contents.value if found else ""

    async def counted(line: int, at_least: int) -> str:
        deadline = time.monotonic() + 40
        while True:
            text = await hover(line)
            row = next((r for r in text.split("\n") if r.startswith("| ") and "(" in r), "")
            if row and int(row.split()[1].replace(",", "")) >= at_least:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"the hover never counted {at_least} requests: {text!r}")
            await asyncio.sleep(0.5)

    get_text = await counted(1, 12)
    assert "**GET /orders/:id**" in get_text and stamp in get_text
    post_text = await counted(2, 4)
    assert "**POST /orders**" in post_text
    assert "no request yet" in await hover(3)


async def test_alert_asks_with_actions_marks_its_line_and_resolves(client: LanguageClient, metrics_app):
    manifest_text = (metrics_app.workspace / "minicloud.toml").read_text()
    manifest_uri = open_doc(client, metrics_app.workspace / "minicloud.toml", manifest_text, "toml")
    rule_line = manifest_text.split("\n").index('error_rate = "5xx > 20% for 2s"')
    assert send(metrics_app, "GET", "/fail/on") == [200]
    try:
        asked = slow = None
        deadline = time.monotonic() + 60
        while asked is None or slow is None:  # failing and slow requests until both alerts reach the editor
            assert time.monotonic() < deadline, "the alerts never reached the editor"
            await asyncio.gather(asyncio.to_thread(send, metrics_app, "GET", "/orders", 5),
                                 asyncio.to_thread(send, metrics_app, "GET", "/slow", 1))
            asked = next((a for a in client.asked if "error_rate" in a.message), None)
            slow = next((a for a in client.asked if "latency" in a.message), None)
        assert "p95" in slow.message
        assert asked.type == types.MessageType.Warning and "lspmetrics/test" in asked.message
        assert [a.title for a in asked.actions] == ["Show logs", "Roll back"]
        # "Show logs" (the client's answer) streams the env's logs to the log panel
        await wait_for(lambda: client.log_batches, 30, "the logs the alert's action opened")

        def firing_warning():
            found = client.diagnostics.get(manifest_uri, [])
            return [d for d in found if d.code == "alert-firing"]

        warnings = await wait_for(lambda: [d for d in firing_warning() if d.range.start.line == rule_line], 20,
                                  "a warning on the rule's line")
        assert warnings[0].severity == types.DiagnosticSeverity.Warning and "error_rate" in warnings[0].message
        metrics = await wait_for(lambda: [m for m in client.metrics if field(m, "firing")], 20,
                                 "the firing alert in minicloud/metrics")
        assert field(metrics[-1], "app") == "lspmetrics" and field(metrics[-1], "env") == "test"
    finally:
        assert send(metrics_app, "GET", "/fail/off") == [200]
    # healthy traffic: the 5xx share falls under the rule and the alert resolves
    deadline = time.monotonic() + 60
    while not all(any("resolved" in s.message and name in s.message for s in client.messages)
                  for name in ("error_rate", "latency")):  # window/showMessage
        assert time.monotonic() < deadline, "the alerts never resolved in the editor"
        await asyncio.to_thread(send, metrics_app, "GET", "/orders", 5)
    await wait_for(lambda: not firing_warning(), 20, "the rule's warning to go")


async def test_status_numbers_reach_a_client_that_asked(client: LanguageClient, metrics_app):
    before = len(client.metrics)
    deadline = time.monotonic() + 40

    def app_rps():
        for m in client.metrics[before:]:
            for r in field(m, "releases"):
                if field(r, "role") == "app" and field(r, "rps") > 0:
                    return m
        return None

    while app_rps() is None:
        assert time.monotonic() < deadline, "no minicloud/metrics with the app's requests"
        await asyncio.to_thread(send, metrics_app, "GET", "/orders", 10)
        await asyncio.sleep(0.5)
    m = app_rps()
    assert field(m, "available") is True and field(m, "root") == str(metrics_app.workspace)
    assert any(field(c, "role") == "app" for c in field(m, "containers"))


async def test_answering_roll_back_rolls_the_env_back(client: LanguageClient, metrics_app):
    """A release that fails every request; the alert's "Roll back" brings the one before it back."""
    before = metrics_app.status("test", stats=False).release
    server = metrics_app.workspace / "server.js"
    good = server.read_text()
    server.write_text(good.replace("let failing = false;", "let failing = true;"))
    try:
        broken = (await asyncio.to_thread(metrics_app.deploy, "test")).release
    finally:
        server.write_text(good)
    client.answer = "Roll back"
    asked_before = len(client.asked)
    deadline = time.monotonic() + 60
    while not any("error_rate" in a.message for a in client.asked[asked_before:]):
        assert time.monotonic() < deadline, "the alert never reached the editor"
        await asyncio.to_thread(send, metrics_app, "GET", "/orders", 5)

    def serving():
        release = metrics_app.status("test", stats=False).release
        return release if release != broken else None

    assert await wait_for(serving, 60, "the rollback the answer asked for") == before
    # the route file names the release a moment before the gateway has applied it: the answers follow
    await wait_for(lambda: send(metrics_app, "GET", "/orders/1") == [200], 10, "the rolled-back release to answer")
    assert metrics_app.status("test", stats=False).release == before


async def test_a_cpu_loop_and_a_crash_reach_the_editor_and_resolve(client: LanguageClient, metrics_app):
    """The per-container rules too: a CPU loop (cpu > 50% for 3s) and a crash the restart policy answers
    (restarts > 0) each come as a message, and each resolves (the crash a minute later)."""
    client.answer = "Show logs"
    asked_before, said_before = len(client.asked), len(client.messages)

    def asked(name: str):
        return next((a for a in client.asked[asked_before:] if f"alert firing: {name}" in a.message), None)

    def resolved(name: str) -> bool:
        return any("resolved" in m.message and f": {name}" in m.message for m in client.messages[said_before:])

    assert send(metrics_app, "GET", "/burn") == [200]
    cpu = await wait_for(lambda: asked("cpu"), 40, "the cpu alert in the editor")
    assert "lspmetrics/test" in cpu.message and " on " in cpu.message  # it names the container
    await wait_for(lambda: resolved("cpu"), 60, "the cpu alert to resolve")
    assert send(metrics_app, "GET", "/crash") == [200]
    await wait_for(lambda: asked("restarts"), 40, "the restarts alert in the editor")
    await wait_for(lambda: send(metrics_app, "GET", "/orders") == [200], 30, "the restarted app to answer")
    await wait_for(lambda: resolved("restarts"), 120, "the restarts alert to resolve")
