"""The data API as an env's role on the real engine, reached through the HTTPS gateway as users reach it:
a member's auth code from `minicloud sandbox login`, sessions for two users and the collection's rule,
the SDKs from a Node script acting as the front end and from a Python cloud function, the CLI's
`data` and `files` verbs, the upload scan, and documents that survive a restart, a redeploy and an
`env destroy` without --with-data."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient

from bench.load import trusting

from .lsp_helpers import SERVER, open_doc, position_of, start

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parent.parent
SERVER_JS = """\
const http = require('http');
http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('ok'); })
  .listen(Number(process.env.PORT || 3000));
"""
FUNCTION_PY = """\
from minicloud_cloud import Cloud


def main(event, context):
    # the server credential is injected: it sees every member's orders (the rule is for front ends)
    orders = Cloud().database().collection("orders")
    return {"total": orders.count(), "caller": (event.get("auth") or {}).get("uid"),
            "asked": (event.get("data") or {}).get("note")}
"""
TALLY_JS = """\
// a Node function reaching the data API through its context (the SDK is mounted, the credential injected)
exports.main = async (event, context) => {
  const { total } = await context.cloud.database().collection('orders').count();
  return { total };
};
"""
MANIFEST = """\
[app]
name = "dataapp"
runtime = "nodejs"
start = "node server.js"
port = 3000

[env.test]

[functions.report]
runtime = "python"

[functions.tally]
runtime = "nodejs"

[data]
max_file_mb = 1

[data.collections.orders]
read = "doc._owner == auth.uid"
write = "doc._owner == auth.uid"
"""
FRONT_END_JS = """\
// a mini-program front end: an auth code in, the SDK's session, its own orders out
const cloud = require(process.argv[2]);
(async () => {
  cloud.init({ url: process.argv[3], code: process.argv[4] });
  const db = cloud.database();
  const added = await db.collection('orders').add({ data: { item: 'tea', total: 12, note: process.argv[5] } });
  const mine = await db.collection('orders').where({ note: process.argv[5] }).get();
  const count = await db.collection('orders').count();
  const fn = await cloud.callFunction({ name: 'report', data: { note: 'from the front end' } });
  console.log(JSON.stringify({ id: added._id, mine: mine.data, count: count.total, fn: fn.result }));
})().catch((err) => { console.error(err.code, err.message); process.exit(1); });
"""
ALICE, BOB = "2088000000000001", "2088000000000002"


def minicloud(workspace: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "deploy_bridge.cli", "-w", str(workspace), *args],
                         capture_output=True, text=True, timeout=300)
    if check:
        assert run.returncode == 0, run.stderr + run.stdout
    return run


@pytest.fixture(scope="module")
def data_app(docker_engine, tmp_path_factory):
    from codegen.abilities import grant
    from deploy_bridge.cloud import Cloud

    ws = tmp_path_factory.mktemp("data") / "dataapp"
    (ws / "functions" / "report").mkdir(parents=True)
    (ws / "server.js").write_text(SERVER_JS)
    (ws / "minicloud.toml").write_text(MANIFEST)
    (ws / "functions" / "report" / "main.py").write_text(FUNCTION_PY)
    (ws / "functions" / "tally").mkdir()
    (ws / "functions" / "tally" / "index.js").write_text(TALLY_JS)
    shutil.copy(ROOT / "codegen" / "cloud_sdk" / "minicloud_cloud.py", ws / "functions" / "report")
    grant(ws, "test", ["小程序授权", "内容安全"])  # login and the upload's text check are signed capabilities
    cloud = Cloud(ws)
    cloud.build_env("test")
    yield cloud
    cloud.destroy_env("test", with_data=True)


def login(cloud, user: str):
    """A member's session through the Python SDK, from a code `minicloud sandbox login` printed."""
    from codegen.cloud_sdk.minicloud_cloud import Cloud as Sdk

    code = minicloud(cloud.workspace, "sandbox", "login", "test", "--user", user).stdout.strip()
    member = Sdk(cloud.url("test") + "/cloud/v1", ca=cloud.ca_path())
    member.session_from_code(code)
    assert member.uid == user
    return member


def test_two_members_see_only_their_own_documents_and_counts_agree(data_app):
    alice, bob = login(data_app, ALICE), login(data_app, BOB)
    tag = uuid.uuid4().hex[:8]
    alice_orders, bob_orders = alice.database().collection("orders"), bob.database().collection("orders")
    for i in range(3):
        alice_orders.add({"tag": tag, "n": i})
    bob_orders.add({"tag": tag, "n": 99})
    mine = alice_orders.where({"tag": tag}).get()
    assert sorted(d["n"] for d in mine) == [0, 1, 2] and {d["_owner"] for d in mine} == {ALICE}
    assert alice_orders.where({"tag": tag}).count() == 3
    assert [d["n"] for d in bob_orders.where({"tag": tag}).get()] == [99]
    # Bob can neither add a document as Alice's (the owner is whoever adds it) nor touch hers
    forged = bob_orders.add({"tag": tag, "n": 100, "_owner": ALICE})
    assert bob_orders.doc(forged).get()["_owner"] == BOB
    assert bob_orders.where({"tag": tag, "n": 0}).update({"n": 1000}) == 0
    assert bob_orders.where({"tag": tag, "n": 1}).remove() == 0
    assert alice_orders.where({"tag": tag}).count() == 3
    # the server credential (the CLI) sees both members' documents
    found = json.loads(minicloud(data_app.workspace, "data", "test", "find", "orders",
                                 json.dumps({"tag": tag}), "--json").stdout)["data"]
    assert sorted(d["n"] for d in found) == [0, 1, 2, 99, 100]


def test_a_request_without_a_session_or_with_a_bad_code_is_refused(data_app):
    url = data_app.url("test") + "/cloud/v1"
    with httpx.Client(verify=trusting(data_app.ca_path()), timeout=10) as http:
        anonymous = http.post(url + "/db/orders/find", json={"filter": {}})
        assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "no_session"
        bad = http.post(url + "/auth/session", json={"code": "not-a-code"})
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_auth_code"


def gateway_connections_to(cloud, container: str, port: int, docker_engine) -> dict[str, int]:
    """The gateway's TCP connections to `container:port`, by state, from its /proc/net/tcp."""
    address = next(n["IPAddress"] for n in docker_engine.containers.get(container).attrs["NetworkSettings"]
                   ["Networks"].values() if n.get("IPAddress"))
    packed = int.from_bytes(bytes(map(int, address.split("."))), "little")  # /proc/net/tcp's byte order
    wanted = f"{packed:08X}:{port:04X}"
    table = docker_engine.containers.get(cloud.settings.edge_container).exec_run(["cat", "/proc/net/tcp"]).output
    states = {"01": "established", "06": "time_wait"}
    counts = {"established": 0, "time_wait": 0}
    for line in table.decode().splitlines()[1:]:
        fields = line.split()
        if fields[2] == wanted and fields[3] in states:
            counts[states[fields[3]]] += 1
    return counts


def test_the_gateway_keeps_its_connections_to_the_data_api_alive(data_app, docker_engine):
    from deploy_bridge.data import API_PORT

    data = data_app.settings.container(data_app.app, "test", "data")
    before = gateway_connections_to(data_app, data, API_PORT, docker_engine)
    with httpx.Client(verify=trusting(data_app.ca_path()), timeout=10) as http:
        for _ in range(40):  # one after another, as a page's requests come
            assert http.post(data_app.url("test") + "/cloud/v1/db/orders/find", json={}).status_code == 401
    after = gateway_connections_to(data_app, data, API_PORT, docker_engine)
    # a connection per request would leave ~40 in TIME_WAIT; kept ones are reused and stay open
    assert after["time_wait"] - before["time_wait"] < 5, (before, after)
    assert after["established"] >= 1, (before, after)


def test_a_data_api_replaced_under_its_name_is_reached_at_once(data_app, docker_engine):
    """The gateway keeps its answers for the data API's name past their second while it asks again off the
    request path; new routes (the container made anew) must forget them at once. A stand-in that answers
    nothing holds the old address, so a stale answer shows as the gateway's 502."""
    data = data_app.settings.container(data_app.app, "test", "data")
    find = data_app.url("test") + "/cloud/v1/db/orders/find"

    def address(name: str) -> str:
        networks = docker_engine.containers.get(name).attrs["NetworkSettings"]["Networks"].values()
        return next(n["IPAddress"] for n in networks if n.get("IPAddress"))

    def statuses() -> list[int]:  # new connections, so that both of the gateway's workers answer
        found = []
        for _ in range(12):
            with httpx.Client(verify=trusting(data_app.ca_path()), timeout=10) as http:
                found.append(http.post(find, json={}).status_code)
        return found

    old = docker_engine.containers.get(data)
    old_address, image = address(data), old.image.id
    assert set(statuses()) == {401}  # every worker now holds the old address
    old.remove(force=True)
    stand_in = docker_engine.containers.run(
        image, ["sleep", "120"], detach=True, network=data_app.settings.network(data_app.app, "test"),
        labels=data_app.settings.labels(app=data_app.app, env="test", role="stand-in"))
    try:
        data_app.build_env("test")
        assert address(stand_in.name) == old_address, "the stand-in did not get the old address: nothing was tried"
        assert address(data) != old_address
        assert set(statuses()) == {401}  # not the gateway's 502 of a connection to the old address
    finally:
        stand_in.remove(force=True)


def test_front_end_script_and_python_function_use_the_sdks(data_app, tmp_path):
    """The JS SDK in Node as a front end (an auth code, its session), calling a Python function that
    reads the collection with the injected server credential."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed for the front-end SDK test")
    code = minicloud(data_app.workspace, "sandbox", "login", "test", "--user", ALICE).stdout.strip()
    script = tmp_path / "front.js"
    script.write_text(FRONT_END_JS)
    note = uuid.uuid4().hex
    run = subprocess.run([node, str(script), str(ROOT / "codegen" / "cloud_sdk" / "minicloud-cloud.js"),
                          data_app.url("test"), code, note],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "NODE_EXTRA_CA_CERTS": data_app.ca_path()})
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert [d["_id"] for d in out["mine"]] == [out["id"]] and out["mine"][0]["_owner"] == ALICE
    total = json.loads(minicloud(data_app.workspace, "data", "test", "collections", "--json").stdout)
    orders = next(c for c in total["collections"] if c["name"] == "orders")
    assert out["fn"] == {"total": orders["count"], "caller": ALICE, "asked": "from the front end"}
    assert out["count"] <= orders["count"]  # the member counts only their own
    tally = json.loads(minicloud(data_app.workspace, "fn", "invoke", "test", "tally", "--json").stdout)
    assert tally["result"] == {"total": orders["count"]}  # context.cloud, in a Node function


def test_cli_import_export_and_a_bad_line_named(data_app, tmp_path):
    coll = f"items_{uuid.uuid4().hex[:6]}"
    good = tmp_path / "items.jsonl"
    good.write_text("".join(json.dumps({"sku": f"s{i}", "qty": i}) + "\n" for i in range(1200)))
    added = json.loads(minicloud(data_app.workspace, "data", "test", "import", coll, str(good), "--json").stdout)
    assert added["added"] == 1200
    exported = minicloud(data_app.workspace, "data", "test", "export", coll).stdout.splitlines()
    assert sorted(json.loads(line)["qty"] for line in exported) == list(range(1200))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sku": "x"}\n\n{"sku": oops}\n')
    failed = minicloud(data_app.workspace, "data", "test", "import", coll + "_bad", str(bad), check=False)
    assert failed.returncode != 0 and f"{bad}:3" in failed.stderr
    wrong = minicloud(data_app.workspace, "data", "test", "find", coll, '{"qty": {"$where": "1"}}', check=False)
    assert wrong.returncode != 0 and "$where" in wrong.stderr


def test_files_put_get_rm_and_the_scan(data_app, tmp_path):
    png = tmp_path / "logo.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(2048))
    path = f"img/{uuid.uuid4().hex[:6]}.png"
    stored = json.loads(minicloud(data_app.workspace, "files", "test", "put", str(png), path, "--json").stdout)
    assert stored["contentType"] == "image/png" and stored["size"] == png.stat().st_size
    back = tmp_path / "back.png"
    minicloud(data_app.workspace, "files", "test", "get", path, "--out", str(back))
    assert back.read_bytes() == png.read_bytes()
    listed = json.loads(minicloud(data_app.workspace, "files", "test", "ls", "img/", "--json").stdout)["files"]
    assert stored["fileID"] in [f["fileID"] for f in listed]
    # text goes through the sandbox's content check: a rejected upload is not stored
    risky = tmp_path / "note.txt"
    risky.write_text("this note has prohibited words")
    refused = minicloud(data_app.workspace, "files", "test", "put", str(risky), "notes/risky.txt", check=False)
    assert refused.returncode != 0 and "rejected" in refused.stderr
    names = [f["fileID"] for f in json.loads(minicloud(data_app.workspace, "files", "test", "ls", "--json").stdout)["files"]]
    assert not any(n.endswith("notes/risky.txt") for n in names)
    too_big = tmp_path / "big.bin"
    for size in (1024 * 1024 + 10, 12 * 1024 * 1024, 12 * 1024 * 1024):  # the refusal, never the gateway's 502
        too_big.write_bytes(os.urandom(size))
        big = minicloud(data_app.workspace, "files", "test", "put", str(too_big), check=False)
        assert big.returncode != 0 and "too_large" in big.stderr, big.stderr
    minicloud(data_app.workspace, "files", "test", "rm", path)
    gone = minicloud(data_app.workspace, "files", "test", "get", path, check=False)
    assert gone.returncode != 0


def test_documents_survive_restart_redeploy_and_destroy_without_data(data_app):
    from deploy_bridge.data import DataClient

    coll = f"kept_{uuid.uuid4().hex[:6]}"
    client = DataClient(data_app, "test")
    client.call("POST", f"db/{coll}/add", {"data": [{"k": i} for i in range(5)]})
    data_app.restart("test")
    assert DataClient(data_app, "test").count(coll, {}) == 5
    data_app.deploy("test")
    assert DataClient(data_app, "test").count(coll, {}) == 5
    data_app.destroy_env("test")  # without --with-data
    data_app.build_env("test")
    assert DataClient(data_app, "test").count(coll, {}) == 5
    assert login(data_app, ALICE).uid == ALICE  # the same server credential and keys after the rebuild


@pytest_lsp.fixture(config=SERVER)
async def editor(lsp_client: LanguageClient, request):
    await start(lsp_client, request.getfixturevalue("data_app").workspace)
    yield
    await lsp_client.shutdown_session()


async def test_the_editor_completes_live_collections_and_their_fields(editor: LanguageClient, data_app):
    """Fields sampled from the live documents (with their types) at a where's key; a new collection
    appears after a refresh; the hover counts the documents."""
    from deploy_bridge.data import DataClient

    coll = f"shipments_{uuid.uuid4().hex[:6]}"
    DataClient(data_app, "test").call("POST", f"db/{coll}/add",
                                      {"data": [{"carrier": "sf", "weight": 2.5, "dest": {"city": "hz"}}]})
    await editor.workspace_execute_command_async(types.ExecuteCommandParams("minicloud.status", [{"env": "test"}]))
    text = f"const db = cloud.database();\ndb.collection('{coll}').where({{ ca|"
    clean, pos = position_of(text)
    uri = open_doc(editor, data_app.workspace / "client.js", clean, "javascript")
    deadline = asyncio.get_running_loop().time() + 40
    while True:
        items = await editor.text_document_completion_async(types.CompletionParams(
            types.TextDocumentIdentifier(uri), pos))
        found = {i.label: i.detail for i in (items.items if hasattr(items, "items") else items or [])}
        if "carrier" in found:
            break
        assert asyncio.get_running_loop().time() < deadline, f"the index never sampled {coll}: {found}"
        editor.workspace_execute_command(types.ExecuteCommandParams("minicloud.status", [{"env": "test"}]))
        await asyncio.sleep(1)
    assert found["carrier"].startswith("string") and found["weight"].startswith("number")
    assert found["dest.city"].startswith("string")
    hover = await editor.text_document_hover_async(types.HoverParams(
        types.TextDocumentIdentifier(uri), types.Position(1, len("db.collection('") + 2)))
    assert "\n1 document\n" in hover.contents.value and "`carrier` | string" in hover.contents.value
