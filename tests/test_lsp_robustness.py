"""Any document and any edit, out-of-range positions and split UTF-16 pairs included, never crash
the server: it keeps answering completions and hovers (property-based, against the real process)."""

from __future__ import annotations

import json
import time
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


def _wait_for_publish(server, uri: str, version: int, timeout: float = 15.0) -> list[dict]:
    """Every publishDiagnostics of `uri` until the one for `version` (fails at the deadline)."""
    deadline = time.monotonic() + timeout
    seen = [n for n in server.notifications if n["method"] == "textDocument/publishDiagnostics"
            and n["params"]["uri"] == uri]
    server.notifications.clear()
    while not any(n["params"].get("version") == version for n in seen):
        left = deadline - time.monotonic()
        assert left > 0, f"no diagnostics for version {version} of {uri}; got {[n['params'].get('version') for n in seen]}"
        msg = server._read(timeout=left)
        if msg.get("method") == "textDocument/publishDiagnostics" and msg["params"]["uri"] == uri:
            seen.append(msg)
    return seen


def test_rapid_edits_publish_diagnostics_once_they_pause(server):
    uri = (Path(server.workspace) / "typing.js").as_uri()
    server.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "javascript", "version": 1,
                                                            "text": ""}})
    assert len(_wait_for_publish(server, uri, 1)) == 1  # didOpen publishes at once
    final = "await sdk.exec('alipay.trade.create', {});\n"
    for version in range(2, 1002):
        text = final if version == 1001 else f"const x{version} = 1;\n"
        server.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version},
                                                 "contentChanges": [{"text": text}]})
    published = _wait_for_publish(server, uri, 1001)
    assert len(published) <= 5, f"{len(published)} publishes for 1,000 edits"
    last = published[-1]["params"]
    assert last["version"] == 1001
    assert {d["code"] for d in last["diagnostics"]} == {"unsigned"}  # computed from the final text


def test_requests_about_a_document_that_is_not_open_fail_clearly(server):
    for name in ("never-opened.js", "minicloud.toml"):  # the second one exists on disk, yet is not open
        uri = (Path(server.workspace) / name).as_uri()
        for method in ("textDocument/completion", "textDocument/hover"):
            answer = server.request(method, {"textDocument": {"uri": uri}, "position": {"line": 0, "character": 0}})
            error = answer["error"]
            assert error["message"] == f"document not open: {uri}"
            assert "traceback" not in json.dumps(error).lower()
            assert not error.get("data")
