"""Cloud functions in the editor (the real server over stdio): names where code calls them, `context.`
in a handler, diagnostics for code and manifest that do not match, the Invoke lens."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient

from .lsp_helpers import SERVER, complete, make_workspace, open_doc, start

FUNCTIONS = """
[functions]
pool = 1

[functions.createOrder]
memory = 128

[functions.ghost]

[functions.pyReport]
runtime = "python"
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    ws = make_workspace(tmp_path_factory.mktemp("lspfn"))
    manifest = ws / "minicloud.toml"
    manifest.write_text(manifest.read_text() + FUNCTIONS)
    (ws / "functions" / "createOrder").mkdir(parents=True)
    (ws / "functions" / "createOrder" / "index.js").write_text("exports.main = async (event, context) => ({});\n")
    (ws / "functions" / "pyReport").mkdir()
    (ws / "functions" / "pyReport" / "main.py").write_text("def handler(event, context):\n    return 1\n")
    (ws / "functions" / "stray").mkdir()
    (ws / "functions" / "stray" / "index.js").write_text("exports.main = async () => 1;\n")
    return ws


@pytest_lsp.fixture(config=SERVER)
async def client(lsp_client: LanguageClient, request):
    await start(lsp_client, request.getfixturevalue("workspace"))
    yield
    await lsp_client.shutdown_session()


@pytest.mark.parametrize("text", ["await cloud.callFunction('|')", "cloud.callFunction({ name: 'cr|' })",
                                  "fetch(`${base}/fn/|`)"])
async def test_function_names_complete_where_code_calls_them(client, workspace, text):
    items = await complete(client, workspace, "front.js", text, "javascript")
    assert {"createOrder", "ghost", "pyReport"} <= {i.label for i in items}
    order = next(i for i in items if i.label == "createOrder")
    assert order.kind == types.CompletionItemKind.Function and "nodejs" in order.detail


async def test_context_members_complete_in_a_handler(client, workspace):
    items = await complete(client, workspace, "functions/createOrder/index.js",
                           "exports.main = async (event, context) => context.|", "javascript")
    assert {"requestId", "getRemainingTimeInMillis", "env"} <= {i.label for i in items}
    outside = await complete(client, workspace, "server2.js", "const x = context.|", "javascript")
    assert "requestId" not in {i.label for i in outside}


async def diagnostics_of(client, uri: str) -> list[types.Diagnostic]:
    await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    for _ in range(100):
        if uri in client.diagnostics:
            return client.diagnostics[uri]
        await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    return []


async def test_the_manifest_says_which_function_has_no_code_and_which_folder_is_not_deployed(client, workspace):
    path = workspace / "minicloud.toml"
    uri = open_doc(client, path, path.read_text(), "toml")
    found = {d.code: d for d in await diagnostics_of(client, uri)}
    assert "no-code" in found and "ghost" in found["no-code"].message
    assert found["no-code"].severity == types.DiagnosticSeverity.Error
    assert "not-in-manifest" in found and "stray" in found["not-in-manifest"].message
    assert found["not-in-manifest"].severity == types.DiagnosticSeverity.Warning


async def test_code_without_main_is_an_error_and_main_gets_an_invoke_lens(client, workspace):
    py = workspace / "functions" / "pyReport" / "main.py"
    uri = open_doc(client, py, py.read_text(), "python")
    [diag] = [d for d in await diagnostics_of(client, uri) if d.code == "no-main"]
    assert "def main(event, context)" in diag.message
    js = workspace / "functions" / "createOrder" / "index.js"
    js_uri = open_doc(client, js, js.read_text(), "javascript")
    lenses = await client.text_document_code_lens_async(types.CodeLensParams(types.TextDocumentIdentifier(js_uri)))
    [lens] = lenses
    assert lens.command.command == "minicloud.fn.invoke" and "Invoke createOrder" in lens.command.title
    assert lens.command.arguments[0]["name"] == "createOrder" and lens.range.start.line == 0


async def test_hover_on_a_function_name(client, workspace):
    uri = open_doc(client, workspace / "caller.js", "callFunction('createOrder')\n", "javascript")
    hover = await client.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(uri),
                                                                     types.Position(0, 17)))
    assert hover is not None and "createOrder" in hover.contents.value and "nodejs" in hover.contents.value
