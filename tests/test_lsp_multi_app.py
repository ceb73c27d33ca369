"""One server, many apps (pytest-lsp, the real server process): each document is answered from the
app whose minicloud.toml is nearest above it — its variables, tables and granted packages, never
another app's — in multi-root workspaces, in a monorepo with nested apps, and as folders are added
and removed at run time. Commands act on the app they are given (or the document's)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from .lsp_helpers import ROOT, SERVER, capabilities, complete, open_doc, position_of

# each app: its own variable, its own tables, its own granted package
APPS = {
    "alpha": {"var": "ALPHA_ONLY", "tables": {"alpha_orders": ["a_id", "a_total"], "alpha_users": ["a_name"]},
              "granted": "FACE_TO_FACE_PAYMENT"},
    "beta": {"var": "BETA_ONLY", "tables": {"beta_items": ["b_id", "b_sku"]}, "granted": "JSAPI_PAY"},
    "gamma": {"var": "GAMMA_ONLY", "tables": {"gamma_logs": ["g_id"]}, "granted": None},
}


def make_app(folder: Path, name: str) -> Path:
    """A copy of the node example named `name`, with its own variable, granted package and saved tables."""
    from codegen.abilities import grant

    spec = APPS[name]
    folder.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "examples" / "node-shop", folder,
                    ignore=shutil.ignore_patterns(".minicloud", "node_modules", "abilities"))
    manifest = folder / "minicloud.toml"
    manifest.write_text(manifest.read_text().replace('name = "shop"', f'name = "{name}"')
                        .replace("[env.test]\n", f'[env.test]\n\n[env.test.vars]\n{spec["var"]} = "{name}"\n'))
    if spec["granted"]:
        grant(folder, "test", [spec["granted"]])
    tables = {t: {"name": t, "columns": [[c, "int"] for c in cols], "rows": 1} for t, cols in spec["tables"].items()}
    index = folder / ".minicloud" / "index-test.json"
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text(json.dumps({"env": "test", "app": name, "tables": tables, "variables": {}, "granted": []}))
    return folder


def others(name: str) -> set[str]:
    """The variables and tables of every app but `name`: never offered in `name`'s documents."""
    return {n for other, spec in APPS.items() if other != name for n in (spec["var"], *spec["tables"])}


@pytest.fixture(scope="module")
def multi_root(tmp_path_factory) -> dict[str, Path]:
    """Two workspace folders, each an app; and a third app outside both folders."""
    base = tmp_path_factory.mktemp("multi")
    return {name: make_app(base / name, name) for name in ("alpha", "beta", "gamma")}


@pytest.fixture(scope="module")
def monorepo(tmp_path_factory) -> dict[str, Path]:
    """One folder: a repository whose root is app alpha, with app beta nested in services/beta, and a
    tools/ folder below alpha; plus a folder outside any app."""
    base = tmp_path_factory.mktemp("mono")
    repo = make_app(base / "repo", "alpha")
    make_app(repo / "services" / "beta", "beta")
    (base / "loose").mkdir()
    return {"repo": repo, "alpha": repo, "beta": repo / "services" / "beta", "loose": base / "loose"}


async def start_folders(client: LanguageClient, *folders: Path, root: Path | None = None) -> None:
    root = root or folders[0]
    await client.initialize_session(types.InitializeParams(
        capabilities=capabilities(), root_uri=root.as_uri(),
        workspace_folders=[types.WorkspaceFolder(uri=f.as_uri(), name=f.name) for f in folders],
        initialization_options={"env": "test"}))


@pytest_lsp.fixture(config=SERVER)
async def client(lsp_client: LanguageClient):
    @lsp_client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply_edit(params: types.ApplyWorkspaceEditParams):
        return types.ApplyWorkspaceEditResult(applied=True)

    yield
    await lsp_client.shutdown_session()


def labels(items) -> set[str]:
    return {i.label for i in items}


async def variables(client: LanguageClient, folder: Path, name: str = "v.js") -> set[str]:
    return labels(await complete(client, folder, name, "process.env.|", "javascript"))


async def tables(client: LanguageClient, folder: Path, name: str = "q.js") -> set[str]:
    return labels(await complete(client, folder, name, "db.query('SELECT * FROM |')", "javascript"))


async def assert_answers_from(client: LanguageClient, folder: Path, app: str, sub: str = "") -> None:
    """Completions of `folder`'s documents name `app`'s variable and tables, and nothing of the others."""
    where = folder / sub if sub else folder
    found = await variables(client, where) | await tables(client, where)
    assert APPS[app]["var"] in found and set(APPS[app]["tables"]) <= found, (app, found)
    assert not found & others(app), (app, found & others(app))


async def execute(client: LanguageClient, command: str, arg: dict):
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(command, [arg]))


async def test_two_folders_each_document_gets_its_own_apps_answers(client, multi_root):
    alpha, beta = multi_root["alpha"], multi_root["beta"]
    await start_folders(client, alpha, beta)
    await assert_answers_from(client, alpha, "alpha")
    await assert_answers_from(client, beta, "beta")  # the second folder: its own, not the first's
    await assert_answers_from(client, beta / "src" / "deep", "beta")
    # columns and hover: the table of the document's app
    items = await complete(client, beta, "c.js", "db.query('SELECT | FROM beta_items')", "javascript")
    assert {"b_id", "b_sku"} <= labels(items) and not labels(items) & {"a_id", "a_total"}
    text, pos = position_of("const x = process.env.BETA_ON|LY;")
    uri = open_doc(client, beta / "h.js", text, "javascript")
    hover = await client.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(uri), pos))
    assert hover is not None and "beta" in hover.contents.value
    uri = open_doc(client, alpha / "h.js", text, "javascript")
    assert await client.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(uri), pos)) is None


async def test_diagnostics_and_code_actions_follow_the_documents_app(client, multi_root):
    alpha, beta = multi_root["alpha"], multi_root["beta"]
    await start_folders(client, alpha, beta)
    text = "await sdk.exec('alipay.trade.create', { bizContent: {} });\n"
    diagnostics = {}
    for name, folder in (("alpha", alpha), ("beta", beta)):
        uri = open_doc(client, folder / "pay.js", text, "javascript")
        for _ in range(100):
            if uri in client.diagnostics:
                break
            await asyncio.sleep(0.05)
        diagnostics[name] = {d.code for d in client.diagnostics[uri]}
    assert "unsigned" in diagnostics["alpha"]  # alpha granted FACE_TO_FACE_PAYMENT only
    assert "unsigned" not in diagnostics["beta"]  # beta granted JSAPI_PAY, which signs trade.create

    async def titles(folder: Path) -> set[str]:
        uri = open_doc(client, folder / "act.js", "const x = 1;\n", "javascript")
        actions = await client.text_document_code_action_async(types.CodeActionParams(
            types.TextDocumentIdentifier(uri), types.Range(types.Position(0, 0), types.Position(0, 0)),
            types.CodeActionContext(diagnostics=[])))
        return {a.title for a in actions}

    alpha_titles, beta_titles = await titles(alpha), await titles(beta)
    assert "Generate call to alipay.trade.precreate" in alpha_titles  # its granted methods
    assert "Generate call to alipay.trade.create" in beta_titles
    assert "Generate call to alipay.trade.precreate" not in beta_titles
    assert "Generate call to alipay.trade.create" not in alpha_titles
    # the command the action runs reads the app of its document
    beta_uri = (beta / "act.js").as_uri()
    generated = await execute(client, "minicloud.codegen", {"method": "alipay.trade.create", "lang": "python",
                                                            "uri": beta_uri, "position": {"line": 1}})
    assert generated["method"] == "alipay.trade.create"
    with pytest.raises(JsonRpcException) as err:
        await execute(client, "minicloud.codegen", {"method": "alipay.trade.create", "lang": "python",
                                                    "uri": (alpha / "act.js").as_uri()})
    assert "JSAPI_PAY" in str(err.value)


async def test_commands_name_their_app_and_refuse_to_guess(client, multi_root):
    alpha, beta = multi_root["alpha"], multi_root["beta"]
    await start_folders(client, alpha, beta)
    caps = await execute(client, "minicloud.capabilities", {"app": str(beta)})
    assert caps["app"] == "beta" and "alipay.trade.create" in {a["method"] for a in caps["apis"] if a["signed"]}
    caps = await execute(client, "minicloud.capabilities", {"app": "alpha"})
    assert caps["app"] == "alpha" and "alipay.trade.create" not in {a["method"] for a in caps["apis"] if a["signed"]}
    caps = await execute(client, "minicloud.capabilities", {"uri": (beta / "src" / "x.js").as_uri()})
    assert caps["app"] == "beta"
    with pytest.raises(JsonRpcException) as err:
        await execute(client, "minicloud.capabilities", {})
    assert "alpha" in str(err.value) and "beta" in str(err.value) and "several apps" in str(err.value)
    with pytest.raises(JsonRpcException) as err:
        await execute(client, "minicloud.status", {"env": "test"})  # before any engine work: which app?
    assert "several apps" in str(err.value)
    with pytest.raises(JsonRpcException) as err:
        await execute(client, "minicloud.status", {"env": "test", "app": "nosuchapp"})
    assert "no app named nosuchapp" in str(err.value)


async def test_a_document_of_an_app_outside_the_folders_gets_that_apps_answers(client, multi_root):
    await start_folders(client, multi_root["alpha"])
    await assert_answers_from(client, multi_root["gamma"], "gamma")  # no folder: found from its document
    await assert_answers_from(client, multi_root["alpha"], "alpha")


async def test_nested_apps_of_a_monorepo(client, monorepo):
    await start_folders(client, monorepo["repo"])
    await assert_answers_from(client, monorepo["repo"], "alpha", "tools")
    await assert_answers_from(client, monorepo["beta"], "beta")  # the nearest manifest, not the folder's
    await assert_answers_from(client, monorepo["beta"], "beta", "src/routes")
    await assert_answers_from(client, monorepo["repo"], "alpha", "services")  # beside beta, not in it
    # outside any app: no app's variables or tables, and the manifest schema still completes
    loose = monorepo["loose"]
    assert not (await variables(client, loose) | await tables(client, loose)) & (others("alpha") | others("beta"))
    assert "app" in labels(await complete(client, loose, "minicloud.toml", "[|", "toml"))
    caps = await execute(client, "minicloud.capabilities", {"uri": (monorepo["beta"] / "a.js").as_uri()})
    assert caps["app"] == "beta"


async def test_a_folder_added_and_removed_at_run_time(client, multi_root):
    alpha, beta = multi_root["alpha"], multi_root["beta"]
    await start_folders(client, alpha)
    assert (await execute(client, "minicloud.capabilities", {}))["app"] == "alpha"  # the only app
    client.workspace_did_change_workspace_folders(types.DidChangeWorkspaceFoldersParams(
        types.WorkspaceFoldersChangeEvent(added=[types.WorkspaceFolder(beta.as_uri(), "beta")], removed=[])))
    await assert_answers_from(client, beta, "beta")
    with pytest.raises(JsonRpcException):  # now two: the command must be told which
        await execute(client, "minicloud.capabilities", {})
    client.workspace_did_change_workspace_folders(types.DidChangeWorkspaceFoldersParams(
        types.WorkspaceFoldersChangeEvent(added=[], removed=[types.WorkspaceFolder(alpha.as_uri(), "alpha")])))
    for uri in [u for u in client.diagnostics if u.startswith(alpha.as_uri() + "/")]:
        client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri)))
    assert (await execute(client, "minicloud.capabilities", {}))["app"] == "beta"  # alpha went with its folder
    await assert_answers_from(client, beta, "beta")
    await assert_answers_from(client, alpha, "alpha")  # a document of alpha opened again: still alpha's own


def test_an_apps_index_lives_while_its_folder_or_a_document_is_open(monorepo, multi_root):
    """The lifetime rules of apps.py, in process (no threads touch the engine: the indexes are fakes)."""
    from lsp_server.apps import Apps, NoApp

    started, stopped = [], []

    class FakeIndex:
        def __init__(self, root):
            from lsp_server.index import Snapshot

            self.root, self.snapshot = root, Snapshot("test", app=root.name)

        def refresh_local(self):
            return self.snapshot

        def start(self):
            started.append(self.root.name)

        def stop(self):
            stopped.append(self.root.name)

        def local_view(self):
            return None

    apps = Apps(FakeIndex)
    repo, beta = monorepo["repo"].resolve(), monorepo["beta"].resolve()
    assert apps.add_folder(monorepo["repo"].as_uri()).root == repo and started == ["repo"]
    assert list(apps) and not stopped
    assert apps.open_document((beta / "a.js").as_uri()).root == beta and started == ["repo", "beta"]
    apps.open_document((beta / "b.js").as_uri())
    apps.close_document((beta / "a.js").as_uri())
    assert stopped == []  # b.js is still open
    apps.close_document((beta / "b.js").as_uri())
    assert stopped == ["beta"]  # its last document closed, and it is no folder's app
    apps.open_document((repo / "x.js").as_uri())
    apps.close_document((repo / "x.js").as_uri())
    assert stopped == ["beta"]  # the folder's app stays
    assert apps.open_document((monorepo["loose"] / "z.js").as_uri()) is None
    apps.remove_folder(monorepo["repo"].as_uri())
    assert stopped == ["beta", "repo"] and not list(apps)
    with pytest.raises(NoApp):
        apps.resolve()
    assert apps.resolve(app=str(beta / "src")).root == beta  # a path inside an app names it
    assert stopped == ["beta", "repo"]  # a command on an app not in use starts no index
    # between `initialize` and `initialized`: the engine-free part at once, the threads after
    started.clear()
    apps.defer_threads = True
    assert apps.add_folder(monorepo["repo"].as_uri()).running and started == []
    apps.start_deferred()
    assert started == ["repo"]


@pytest.mark.docker
async def test_live_tables_commands_and_logs_of_each_app(client, cloud_env, tmp_path):
    """The session's built env (app `shop`, live tables) beside an app with only saved tables: each
    document gets its own app's tables; commands and log streams say which app they are about."""
    shop, beta = cloud_env.workspace, make_app(tmp_path / "beta", "beta")
    await start_folders(client, shop, beta)
    client.log_batches = []

    @client.feature("minicloud/logs")
    def on_logs(params):
        client.log_batches.append(params)

    for _ in range(300):
        if "products" in await tables(client, shop):
            break
        await asyncio.sleep(0.1)
    assert "products" in await tables(client, shop) and not await tables(client, shop) & set(APPS["beta"]["tables"])
    assert (await tables(client, beta)) == set(APPS["beta"]["tables"])  # never shop's live tables
    status = await execute(client, "minicloud.status", {"env": "test", "uri": (shop / "server.js").as_uri()})
    assert status["app"] == "shop" and status["state"] == "running"
    releases = await execute(client, "minicloud.releases", {"env": "test", "app": str(shop)})
    assert releases["app"] == "shop" and releases["releases"]
    stream = await execute(client, "minicloud.logs.tail", {"env": "test", "app": "shop", "tail": 5})
    assert stream["app"] == "shop" and stream["root"] == str(shop.resolve())
    for _ in range(300):
        if client.log_batches:
            break
        await asyncio.sleep(0.1)
    batch = client.log_batches[0]
    assert (batch["app"] if isinstance(batch, dict) else batch.app) == "shop"
    await execute(client, "minicloud.logs.stop", {"stream": stream["stream"]})
