"""The language server end to end (pytest-lsp, the real server process): completions, hover,
diagnostics and code actions, answered from the persisted snapshot of the environment."""

from __future__ import annotations

import ast
import asyncio
import json
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from .lsp_helpers import SERVER, complete, make_workspace, open_doc, position_of, start


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("lsp"))


# `client`: the server on this module's `workspace`, with edits applied (tests/conftest.py)


def labels(items) -> list[str]:
    return [i.label for i in items]


async def test_manifest_keys_values_and_tables(client, workspace):
    items = await complete(client, workspace, "minicloud.toml", '[app]\nname = "shop"\n|', "toml")
    assert {"runtime", "start", "port", "health"} <= set(labels(items)) and "name" not in labels(items)
    required = {i.label for i in items if "required" in (i.detail or "")}
    assert {"runtime", "start", "port"} <= required
    items = await complete(client, workspace, "minicloud.toml", '[app]\nruntime = "|', "toml")
    assert labels(items) == ["nodejs", "python", "java"]
    items = await complete(client, workspace, "minicloud.toml", "[app]\n[env.staging]\n[|", "toml")
    assert {"app", "build", "images", "env.test", "env.staging", "env.staging.vars"} <= set(labels(items))


async def test_manifest_errors_have_exact_ranges(client, workspace):
    text = '[app]\nname = "shop"\nruntime = "ruby"\nstart = "x"\nport = 3000\n'
    uri = open_doc(client, workspace / "minicloud.toml", text, "toml")
    await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    [diag] = client.diagnostics[uri]
    assert "runtime" in diag.message and diag.range.start.line == 2
    assert text.split("\n")[2][diag.range.start.character:diag.range.end.character] == "runtime"


async def test_injected_variables_and_their_hover(client, workspace):
    items = await complete(client, workspace, "server.js", "const h = process.env.MY|", "javascript")
    names = labels(items)
    assert {"MYSQL_HOST", "MYSQL_PASSWORD", "DATABASE_URL", "MINICLOUD_ENV"} <= set(names)
    password = next(i for i in items if i.label == "MYSQL_PASSWORD")
    assert password.detail == "••••••"  # secrets masked
    items = await complete(client, workspace, "app.py", 'import os\nos.environ["MINI|', "python")
    assert "MINICLOUD_URL" in labels(items)
    items = await complete(client, workspace, "app.py", 'import os\nos.getenv("|', "python")
    assert "PORT" in labels(items)
    text, pos = position_of("const u = process.env.DATA|BASE_URL;")
    uri = open_doc(client, workspace / "h.js", text, "javascript")
    hover = await client.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(uri), pos))
    assert "db.json" in hover.contents.value and "masked" in hover.contents.value


async def test_sql_tables_and_columns_from_the_snapshot(client, workspace):
    items = await complete(client, workspace, "q.js", "db.query('SELECT * FROM |')", "javascript")
    assert set(labels(items)) == {"products", "orders"}
    items = await complete(client, workspace, "q.js", "db.query(`SELECT p.| FROM products p`)", "javascript")
    assert labels(items) == ["id", "name", "price_cents"]
    items = await complete(client, workspace, "q.py", 'cur.execute("SELECT | FROM orders WHERE qty > 1")', "python")
    assert set(labels(items)) == {"id", "product_id", "qty"}
    items = await complete(client, workspace, "q.js", "db.query('INSERT INTO products (na|", "javascript")
    assert "name" in labels(items)
    items = await complete(client, workspace, "q.js", "const s = 'hello FROM |'", "javascript")
    assert list(items) == []  # not SQL
    text, pos = position_of("db.query('SELECT * FROM prod|ucts')")
    uri = open_doc(client, workspace / "q2.js", text, "javascript")
    hover = await client.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(uri), pos))
    assert "42 rows" in hover.contents.value and "price_cents" in hover.contents.value


async def test_capability_methods_signed_first_and_their_parameters(client, workspace):
    items = await complete(client, workspace, "pay.js", "const r = await sdk.exec('alipay.trade.|", "javascript")
    ordered = sorted(items, key=lambda i: i.sort_text)
    signed = [i.label for i in ordered if "✓" in i.detail]
    assert signed[:1] and set(signed) >= {"alipay.trade.precreate", "alipay.trade.query"}
    assert "alipay.trade.create" not in signed
    assert ordered.index(next(i for i in ordered if i.label == "alipay.trade.create")) >= len(signed)
    items = await complete(client, workspace, "pay.js",
                           "await sdk.exec('alipay.trade.precreate', {\n  bizContent: {\n    subject: 'x',\n    |\n  },\n});",
                           "javascript")
    by_name = {i.label: i for i in items}
    assert "subject" not in by_name
    assert by_name["out_trade_no"].detail.endswith("required") and by_name["total_amount"].detail.endswith("required")
    assert "optional" in by_name["store_id"].detail
    assert by_name["out_trade_no"].text_edit.new_text == "out_trade_no: "
    items = await complete(client, workspace, "pay.js", "await sdk.curl('POST', '/v3/alipay/trade/q|", "javascript")
    assert "/v3/alipay/trade/query" in labels(items)
    items = await complete(client, workspace, "pay.py", "req = AlipayTradePre|", "python")
    assert "AlipayTradePrecreateRequest" in labels(items)
    items = await complete(client, workspace, "pay.py",
                           'req = AlipayTradeQueryRequest()\nreq.biz_content = {\n    "|', "python")
    assert {"out_trade_no", "trade_no"} <= set(labels(items))


async def test_capability_diagnostics_and_hover(client, workspace):
    text = ("await sdk.exec('alipay.trade.create', { bizContent: { out_trade_no: '1', total_amount: '1.00',"
            " subject: 's', buyer_id: '2' } });\n"
            "await sdk.exec('alipay.trade.precreate', { bizContent: { out_trade_no: '1' } });\n")
    uri = open_doc(client, workspace / "diag.js", text, "javascript")
    await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    diags = client.diagnostics[uri]
    unsigned = [d for d in diags if d.code == "unsigned"]
    missing = [d for d in diags if d.code == "missing-parameter"]
    assert len(unsigned) == 1 and unsigned[0].range.start.line == 0 and "JSAPI_PAY" in unsigned[0].message
    assert text.split("\n")[0][unsigned[0].range.start.character:unsigned[0].range.end.character] == "alipay.trade.create"
    assert len(missing) == 1 and missing[0].range.start.line == 1
    assert "total_amount" in missing[0].message and "subject" in missing[0].message
    hover = await client.text_document_hover_async(types.HoverParams(
        types.TextDocumentIdentifier(uri), types.Position(1, 22)))
    assert "当面付" in hover.contents.value and "signed ✓" in hover.contents.value
    assert "`out_trade_no`" in hover.contents.value


async def test_tampered_ability_package_is_flagged(client, workspace):
    path = workspace / "abilities" / "FACE_TO_FACE_PAYMENT.json"
    text = path.read_text().replace("alipay.trade.close", "alipay.trade.create")
    uri = open_doc(client, path, text, "json")
    await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    [diag] = client.diagnostics[uri]
    assert diag.code == "tampered" and "signature" in diag.message
    assert '"signature"' in text.split("\n")[diag.range.start.line]


async def test_generate_call_code_action_inserts_code(client, workspace):
    text = "const x = 1;\n// calls alipay.trade.precreate\nsdk.exec('alipay.trade.precreate');\n"
    uri = open_doc(client, workspace / "gen.js", text, "javascript")
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        types.TextDocumentIdentifier(uri), types.Range(types.Position(2, 12), types.Position(2, 12)),
        types.CodeActionContext(diagnostics=[])))
    [action] = [a for a in actions if a.title == "Generate call to alipay.trade.precreate"]
    # the test client's converter reads a CodeAction as a Command whose `command` holds the nested
    # command as text; the server sends a proper CodeAction (checked here through that text)
    nested = action.command if isinstance(action.command, types.Command) else ast.literal_eval(action.command)
    command, arguments = (nested.command, nested.arguments) if isinstance(nested, types.Command) else (
        nested["command"], nested["arguments"])
    assert command == "minicloud.codegen"
    result = await client.workspace_execute_command_async(types.ExecuteCommandParams(command, arguments))
    assert result["applied"] is True
    [edit] = client.edits
    inserted = "".join(c.new_text for c in edit.edit.changes[uri])  # the client set-up, then the function
    assert "require('alipay-sdk')" in inserted and "tradePrecreate" in inserted
    with pytest.raises(JsonRpcException) as err:
        await client.workspace_execute_command_async(types.ExecuteCommandParams(
            "minicloud.codegen", [{"method": "alipay.trade.create", "lang": "python"}]))
    assert "JSAPI_PAY" in str(err.value)
    caps = await client.workspace_execute_command_async(types.ExecuteCommandParams("minicloud.capabilities", [{}]))
    signed = {a["method"] for a in caps["apis"] if a["signed"]}
    assert "alipay.trade.precreate" in signed and "alipay.trade.create" not in signed


async def test_commands_fail_clearly_without_a_manifest(lsp_client_no_manifest, tmp_path):
    client = lsp_client_no_manifest
    with pytest.raises(JsonRpcException) as err:
        await client.workspace_execute_command_async(types.ExecuteCommandParams("minicloud.status", [{"env": "test"}]))
    assert "minicloud.toml" in str(err.value)
    for _ in range(50):
        if client.messages:
            break
        await asyncio.sleep(0.05)
    assert any("minicloud.toml" in m.message and m.type == types.MessageType.Error for m in client.messages)
    # and the server still answers
    items = await complete(client, tmp_path, "minicloud.toml", "[|", "toml")
    assert "app" in labels(items)


@pytest_lsp.fixture(config=SERVER)
async def lsp_client_no_manifest(lsp_client: LanguageClient, tmp_path):
    await start(lsp_client, tmp_path)
    yield
    await lsp_client.shutdown_session()


def test_index_snapshot_round_trips(workspace):
    from lsp_server.index import Snapshot

    data = json.loads((workspace / ".minicloud" / "index-test.json").read_text())
    snap = Snapshot.from_json(data)
    assert set(snap.tables) == {"products", "orders"} and snap.tables["products"].rows == 42
    assert Snapshot.from_json(snap.to_json()) == snap


async def test_environment_follows_the_client_setting(client, workspace):
    items = await complete(client, workspace, "env.js", "process.env.FEAT|", "javascript")
    assert "FEATURE_X" not in labels(items)  # only [env.prod.vars] has it
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"minicloud": {"env": "prod"}}))
    for _ in range(50):
        items = await complete(client, workspace, "env.js", "process.env.FEAT|", "javascript")
        if "FEATURE_X" in labels(items):
            break
        await asyncio.sleep(0.1)
    feature = next(i for i in items if i.label == "FEATURE_X")
    assert feature.detail == "on" and "env.prod.vars" in feature.documentation.value


@pytest_lsp.fixture(config=SERVER)
async def bare_client(lsp_client: LanguageClient):
    yield
    await lsp_client.shutdown_session()


async def test_completion_trigger_characters_are_the_features_own(bare_client, workspace):
    from lsp_server.features.base import trigger_characters
    from lsp_server.server import server

    result = await bare_client.initialize_session(types.InitializeParams(
        capabilities=types.ClientCapabilities(), root_uri=workspace.as_uri()))
    advertised = result.capabilities.completion_provider.trigger_characters
    assert list(advertised) == trigger_characters(server.features)
    assert set(advertised) == {ch for f in server.features if f.completion_trigger
                               for ch in f.completion_trigger.characters}
    assert {".", "[", "'", '"', "/", " ", "=", "{", ",", "("} <= set(advertised)


def test_one_dispatcher_hands_the_trigger_match_to_features_and_survives_a_failing_one(caplog):
    import re

    from lsp_server.features.base import CompletionTrigger, Context, Feature, trigger_characters
    from lsp_server.index import Snapshot
    from lsp_server.server import MinicloudServer, _complete

    seen = []

    class Mention(Feature):
        name = "mention"
        completion_trigger = CompletionTrigger((re.compile(r"@(?P<who>\w*)$"),), characters=frozenset("@"))

        def completion(self, ctx):
            seen.append(ctx.match)
            return [types.CompletionItem(label=ctx.match.group("who") + "!")]

        def hover(self, ctx):
            return types.Hover("from mention")

    class Broken(Feature):
        name = "broken"
        completion_trigger = CompletionTrigger((re.compile(r"@"),), characters=frozenset("#"))

        def completion(self, ctx):
            raise RuntimeError("bug")

        def hover(self, ctx):
            raise RuntimeError("bug")

    class Silent(Feature):
        name = "silent"  # no trigger: never asked to complete

        def completion(self, ctx):
            raise AssertionError("completion without a trigger")

        def hover(self, ctx):
            raise AssertionError("asked after an answer")

    ls = MinicloudServer()
    ls.features = [Broken(), Mention(), Silent()]
    assert trigger_characters(ls.features) == ["#", "@"]
    ctx = Context("file:///w/a.txt", "plaintext", "hi @bo", 0, 6, Snapshot("test"))
    with caplog.at_level("ERROR"):
        items = [i for found in ls.dispatch("completion", ctx.uri, ctx.language, lambda f: _complete(f, ctx))
                 for i in found]
        hover = next(ls.dispatch("hover", ctx.uri, ctx.language, lambda f: f.hover(ctx)), None)
    assert [i.label for i in items] == ["bo!"]
    assert seen[0].group("who") == "bo"
    assert hover.contents == "from mention"
    failed = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert failed == ["completion of broken failed on file:///w/a.txt", "hover of broken failed on file:///w/a.txt"]


def test_ability_trust_is_part_of_the_snapshot(workspace):
    import dataclasses

    from lsp_server.features.ability_files import AbilityFileFeature
    from lsp_server.index import Index, Snapshot

    assert {f.name for f in dataclasses.fields(Snapshot)} == {"env", "app", "tables", "variables", "granted",
                                                          "signed_packages", "trust", "functions",
                                                          "function_folders", "pulse", "collections",
                                                          "collection_rules"}
    snap = Index(workspace, "test").refresh_local()
    trusted, app_id = snap.trust
    assert trusted and app_id
    json.dumps(snap.to_json())  # the keys are not persisted
    assert "trust" not in snap.to_json()
    assert "pulse" not in snap.to_json()  # live metrics are never persisted: stale ones would mislead
    path = workspace / "abilities" / "FACE_TO_FACE_PAYMENT.json"
    feature = AbilityFileFeature()
    assert not hasattr(feature, "trust")
    assert feature.diagnostics(path.as_uri(), "json", path.read_text(), snap) == []
    [diag] = feature.diagnostics(path.as_uri(), "json", path.read_text(), Snapshot("test"))  # no keys: untrusted
    assert diag.severity == types.DiagnosticSeverity.Error


async def test_env_tables_offer_their_keys_and_the_vars_table(client, workspace):
    from .lsp_helpers import complete

    items = await complete(client, workspace, "minicloud.toml",
                           '[app]\nname = "shop"\nruntime = "nodejs"\nstart = "x"\nport = 1\n\n[env.test]\n|', "toml")
    labels = {i.label for i in items}
    assert {"sandbox", "vars"} <= labels
    vars_item = next(i for i in items if i.label == "vars")
    assert vars_item.insert_text.startswith("vars = {")


def test_positions_of_offsets_match_counting_lines_in_utf16():
    """offset_to_position indexes a text's lines once; what it says must equal counting them each time."""
    from lsp_server.features.base import offset_to_position

    text = "a\n😀 é\n\n" + "x = '订单'\n" * 50 + "end"
    for offset in range(len(text) + 1):
        line, start = text.count("\n", 0, offset), text.rfind("\n", 0, offset) + 1
        found = offset_to_position(text, offset)
        assert (found.line, found.character) == (line, len(text[start:offset].encode("utf-16-le")) // 2)
