"""The language server's "Generate call to …" twice in one document: the second reuses the set-up."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from lsprotocol import types

from codegen.compose import SETUP_MARKER, Edit, apply_edits

from .lsp_helpers import make_workspace, open_doc


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("lsp-compose"))


async def test_two_generate_actions_compose_in_one_file(client, workspace, tmp_path):
    text = "const fs = require('fs');\n\nfunction own() {\n  return fs.existsSync('/');\n}\n\nmodule.exports = { own };\n"
    uri = open_doc(client, workspace / "two.js", text, "javascript")
    version = 1
    for method, line in (("alipay.trade.precreate", 2), ("alipay.trade.query", 6)):
        result = await client.workspace_execute_command_async(types.ExecuteCommandParams(
            "minicloud.codegen", [{"method": method, "lang": "node", "uri": uri,
                                   "position": {"line": line, "character": 0}}]))
        assert result["applied"] is True
        changes = client.edits[-1].edit.changes[uri]
        text = apply_edits(text, [Edit(c.range.start.line, c.range.start.character, c.range.end.line,
                                       c.range.end.character, c.new_text) for c in changes])
        version += 1
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(version=version, uri=uri),
            [types.TextDocumentContentChangeWholeDocument(text=text)]))
    assert text.count(SETUP_MARKER) == 1 and text.count("require('alipay-sdk')") == 1
    assert text.count("function tradePrecreate(") == 1 and text.count("function tradeQuery(") == 1
    assert text.count("const fs") == 1 and "module.exports = { own };" in text
    (tmp_path / "two.js").write_text(text)
    checked = subprocess.run(["node", "--check", str(tmp_path / "two.js")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    # a call the file already holds is not offered again
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        types.TextDocumentIdentifier(uri), types.Range(types.Position(0, 0), types.Position(0, 0)),
        types.CodeActionContext(diagnostics=[])))
    titles = [a.title for a in actions or []]
    assert "Generate call to alipay.trade.close" in titles
    assert "Generate call to alipay.trade.precreate" not in titles
