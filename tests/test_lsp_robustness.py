"""Any document and any edit, out-of-range positions and split UTF-16 pairs included, never crash
the server: it keeps answering completions and hovers (property-based, against the real process)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .lsp_helpers import make_workspace
from .lsp_wire import WireClient

LANGUAGES = [("a.js", "javascript"), ("a.py", "python"), ("minicloud.toml", "toml"), ("A.java", "java"),
             ("abilities/x.json", "json"), ("a.ts", "typescript")]
ALPHABET = st.sampled_from(list("SELECT * FROM products p WHERE p.id = 1 process.env.MY os.environ[\"'`{}(),:;=.\n\t "
                                "exec('alipay.trade.precreate', { bizContent: { out_trade_no") +
                           ["😀", "中文", "\u00e9", "\r\n", "[app]", "runtime = \"", "\ud7ff"])
TEXT = st.lists(ALPHABET, max_size=80).map("".join)
POSITION = st.fixed_dictionaries({"line": st.integers(-2, 40), "character": st.integers(-2, 300)})
EDIT = st.fixed_dictionaries({"range": st.fixed_dictionaries({"start": POSITION, "end": POSITION}), "text": TEXT})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("fuzz"))
    client = WireClient(ws)
    client.workspace = ws
    yield client
    client.close()


counter = iter(range(10**9))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.sampled_from(LANGUAGES), text=TEXT, edits=st.lists(EDIT, max_size=5), at=POSITION,
       full=st.booleans())
def test_random_documents_and_edits_never_break_the_server(server, doc, text, edits, at, full):
    name, language = doc
    uri = (Path(server.workspace) / f"f{next(counter)}" / name).as_uri()
    server.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": language, "version": 1,
                                                            "text": text}})
    for version, edit in enumerate(edits, start=2):
        change = {"text": edit["text"]} if full else edit
        server.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version},
                                                 "contentChanges": [change]})
    # a negative position is not LSP (uinteger): the answer is InvalidParams, never silence
    expected_error = at["line"] < 0 or at["character"] < 0
    for method in ("textDocument/completion", "textDocument/hover"):
        answer = server.request(method, {"textDocument": {"uri": uri}, "position": at})
        assert ("error" in answer) == expected_error, answer
        if expected_error:
            assert answer["error"]["code"] == -32602
    actions = server.request("textDocument/codeAction", {"textDocument": {"uri": uri},
                                                         "range": {"start": at, "end": at},
                                                         "context": {"diagnostics": []}})
    assert ("error" in actions) == expected_error, actions
    server.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    assert server.proc.poll() is None


def test_server_still_completes_after_the_storm(server):
    uri = (Path(server.workspace) / "final.js").as_uri()
    server.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "javascript", "version": 1,
                                                            "text": "process.env.MINI"}})
    answer = server.request("textDocument/completion", {"textDocument": {"uri": uri},
                                                        "position": {"line": 0, "character": 16}})
    labels = {item["label"] for item in answer["result"]["items"]}
    assert "MINICLOUD_ENV" in labels
