"""The messages of the first seconds (typing: open, change, complete, diagnostics, hover), converted once
before `initialize` is answered.

pygls converts messages with cattrs, which writes (and compiles) a function per message type the first
time it meets one: ~2–5 ms each, in the middle of whichever request first answers with that type. A user
who types as the editor starts met those as the slowest completions of the session. Converting a
sample of each of those here moves that work before the first request (~15 ms of `initialize`); the rarer
ones (code actions, lenses, resolve, progress) still convert on first use, where a user is not typing.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from lsprotocol import types

log = logging.getLogger(__name__)

_RANGE = types.Range(types.Position(0, 0), types.Position(0, 1))
_MARKDOWN = types.MarkupContent(types.MarkupKind.Markdown, "x")

# what clients send: (params as JSON, their type)
INCOMING: list[tuple[dict[str, Any], type]] = [
    ({"textDocument": {"uri": "file:///w/a.js"}, "position": {"line": 0, "character": 1},
      "context": {"triggerKind": 2, "triggerCharacter": "."}}, types.CompletionParams),
    ({"textDocument": {"uri": "file:///w/a.js"}, "position": {"line": 0, "character": 1}}, types.HoverParams),
    ({"textDocument": {"uri": "file:///w/a.js", "languageId": "javascript", "version": 1, "text": "x"}},
     types.DidOpenTextDocumentParams),
    ({"textDocument": {"uri": "file:///w/a.js", "version": 2},
      "contentChanges": [{"range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 1}},
                          "text": "y"}, {"text": "whole"}]}, types.DidChangeTextDocumentParams),
]

# what the server answers and sends
OUTGOING: list[Any] = [
    types.CompletionList(is_incomplete=True, items=[types.CompletionItem(
        label="x", kind=types.CompletionItemKind.Field, detail="d", documentation=_MARKDOWN, sort_text="0x",
        filter_text="x", insert_text="x", insert_text_format=types.InsertTextFormat.PlainText,
        label_details=types.CompletionItemLabelDetails(detail="int", description="t"),
        text_edit=types.TextEdit(_RANGE, "x"), data={"k": 1}, deprecated=False, preselect=False,
        command=types.Command("x", "minicloud.status", arguments=[{"env": "test"}]))]),
    types.Hover(_MARKDOWN, range=_RANGE),
    types.PublishDiagnosticsParams("file:///w/a.js", [types.Diagnostic(
        _RANGE, "m", severity=types.DiagnosticSeverity.Warning, code="c", source="minicloud",
        tags=[types.DiagnosticTag.Unnecessary], data={"k": 1})], version=1),
]


def warm(converter) -> tuple[float, list[str]]:
    """Convert one of each: (the milliseconds it took, the types that failed). A type that fails is
    skipped (it is converted, slowly but correctly, when first used); tests keep the list empty."""
    started = time.perf_counter()
    failed = []
    for data, kind in INCOMING:
        try:
            converter.structure(data, kind)
        except Exception as err:  # noqa: BLE001 - warming is an optimisation, never a failure
            failed.append(f"{kind.__name__}: {err}")
    for value in OUTGOING:
        try:
            converter.unstructure(value)
        except Exception as err:  # noqa: BLE001
            failed.append(f"{type(value).__name__}: {err}")
    return (time.perf_counter() - started) * 1000, failed
