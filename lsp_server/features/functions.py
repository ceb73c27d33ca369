"""Cloud functions in the editor: their names where code calls them, `context.` in a handler, hovers
with the live instances and p95, diagnostics for code and manifest that do not match, an Invoke lens."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import unquote, urlparse

from lsprotocol import types

from ..index import Snapshot
from .base import CODE_LANGUAGES, JS_LANGUAGES, CompletionTrigger, Context, Feature, span_range

# each ends with the partial function name in group "name"
CALL_NAME = re.compile(r"callFunction\(\s*(?:\{[^}]*?\bname\s*:\s*)?['\"`](?P<name>[\w-]*)$")
URL_NAME = re.compile(r"['\"`][^'\"`]*/fn/(?P<name>[\w-]*)$")
CONTEXT = re.compile(r"\bcontext\.(?P<name>\w*)$")
# a function name where it is used (for hover)
USES = re.compile(r"callFunction\(\s*(?:\{[^}]*?\bname\s*:\s*)?['\"`](?P<a>[\w-]+)|/fn/(?P<b>[\w-]+)")
NODE_MAIN = re.compile(r"^\s*(?:exports|module\.exports)\.main\s*=|^\s*module\.exports\s*=\s*\{[^}]*\bmain\b", re.M)
PYTHON_MAIN = re.compile(r"^(?:async\s+)?def\s+main\s*\(", re.M)
MANIFEST_TABLE = re.compile(r"^\s*\[\s*functions\.\"?([\w-]+)\"?\s*\]", re.M)
ENTRY = {"nodejs": "index.js", "python": "main.py"}

CONTEXT_MEMBERS = {
    "js": [("requestId", "The invocation's id (in every log line of it)."),
           ("functionName", "This function's name."),
           ("env", "The environment it runs in (test, prod…)."),
           ("deadline", "When the invocation times out (ms since the epoch)."),
           ("getRemainingTimeInMillis", "Milliseconds left before the timeout.")],
    "python": [("time_left", "Seconds left before the timeout (a method)."),
               ("get_remaining_time_in_millis", "Milliseconds left before the timeout (a method).")],
}


def function_of(uri: str) -> tuple[str, str] | None:
    """(function name, file) for a document under functions/NAME/, else None."""
    parts = PurePosixPath(unquote(urlparse(uri).path)).parts
    if "functions" in parts:
        i = len(parts) - 1 - parts[::-1].index("functions")
        if i + 2 < len(parts):
            return parts[i + 1], parts[-1]
    return None


class FunctionsFeature(Feature):
    name = "functions"
    completion_trigger = CompletionTrigger((CALL_NAME, URL_NAME, CONTEXT), frozenset(CODE_LANGUAGES),
                                           frozenset({"'", '"', "`", "/", "."}))

    def accepts(self, uri: str, language: str) -> bool:
        return language in CODE_LANGUAGES or uri.endswith("minicloud.toml")

    # ---- completion
    def completion(self, ctx: Context) -> list[types.CompletionItem]:
        m = ctx.match
        if m is None:
            return []
        if m.re is CONTEXT:
            return self._context_members(ctx, m)
        functions = ctx.snapshot.functions
        start = m.start("name")
        return [types.CompletionItem(
            label=name, kind=types.CompletionItemKind.Function, detail=f"{fn.get('runtime', '')} function",
            documentation=types.MarkupContent(types.MarkupKind.Markdown, _doc(name, fn)),
            text_edit=types.TextEdit(ctx.word_range(start), name)) for name, fn in sorted(functions.items())]

    def _context_members(self, ctx: Context, m: re.Match[str]) -> list[types.CompletionItem]:
        if function_of(ctx.uri) is None:
            return []
        members = CONTEXT_MEMBERS["js" if ctx.language in JS_LANGUAGES else "python"]
        return [types.CompletionItem(label=name, kind=types.CompletionItemKind.Property, detail="context",
                                     documentation=doc, text_edit=types.TextEdit(ctx.word_range(m.start("name")), name))
                for name, doc in members]

    # ---- hover
    def hover(self, ctx: Context) -> types.Hover | None:
        for m in USES.finditer(ctx.line_text):
            group = "a" if m.group("a") else "b"
            if m.start(group) <= ctx.column <= m.end(group):
                name = m.group(group)
                fn = ctx.snapshot.functions.get(name)
                text = _doc(name, fn) if fn is not None else f"**{name}**: no such function in minicloud.toml"
                return types.Hover(types.MarkupContent(types.MarkupKind.Markdown, text),
                                   range=ctx.word_range(m.start(group), m.end(group)))
        return None

    # ---- diagnostics
    def diagnostics(self, uri: str, language: str, text: str, snapshot: Snapshot) -> list[types.Diagnostic]:
        if uri.endswith("minicloud.toml"):
            return self._manifest_diagnostics(text, snapshot)
        where = function_of(uri)
        if where is None or snapshot.functions.get(where[0]) is None:
            return []
        name, file = where
        fn = snapshot.functions[name]
        entry = ENTRY.get(fn.get("runtime", "nodejs"))
        if file != entry:
            return []
        pattern = PYTHON_MAIN if entry == "main.py" else NODE_MAIN
        if pattern.search(text):
            return []
        shape = "def main(event, context)" if entry == "main.py" else "exports.main = async (event, context) => …"
        return [types.Diagnostic(range=span_range(text, 0, 0), severity=types.DiagnosticSeverity.Error,
                                 source="minicloud", code="no-main",
                                 message=f"function {name} needs {shape} in {entry}")]

    def _manifest_diagnostics(self, text: str, snapshot: Snapshot) -> list[types.Diagnostic]:
        out = []
        for m in MANIFEST_TABLE.finditer(text):
            fn = snapshot.functions.get(m.group(1))
            if fn is not None and not fn.get("has_code"):
                out.append(types.Diagnostic(
                    range=span_range(text, m.start(1), m.end(1)), severity=types.DiagnosticSeverity.Error,
                    source="minicloud", code="no-code",
                    message=f"no code for function {m.group(1)}: create functions/{m.group(1)}/"
                            f"{ENTRY.get(fn.get('runtime', 'nodejs'))}"))
        for folder in snapshot.function_folders:
            if folder not in snapshot.functions:
                anchor = re.search(r"^\s*\[\s*functions\s*\]", text, re.M)
                start, end = (anchor.start(), anchor.end()) if anchor else (0, 0)
                out.append(types.Diagnostic(
                    range=span_range(text, start, end), severity=types.DiagnosticSeverity.Warning,
                    source="minicloud", code="not-in-manifest",
                    message=f"functions/{folder}/ is not in the manifest: add [functions.{folder}] to deploy it"))
        return out

    # ---- code lens
    def code_lenses(self, uri: str, text: str, snapshot: Snapshot) -> list[types.CodeLens]:
        where = function_of(uri)
        if where is None or where[0] not in snapshot.functions:
            return []
        m = (PYTHON_MAIN if where[1] == "main.py" else NODE_MAIN).search(text)
        if m is None:
            return []
        return [types.CodeLens(range=span_range(text, m.start(), m.start()), command=types.Command(
            title=f"▶ Invoke {where[0]} in {snapshot.env}", command="minicloud.fn.invoke",
            arguments=[{"name": where[0], "env": snapshot.env, "uri": uri}]))]


def _doc(name: str, fn: dict) -> str:
    lines = [f"**{name}** — {fn.get('runtime', '')} function"]
    live = fn.get("live")
    if live:
        p95 = f"{live['p95_ms']} ms" if live.get("p95_ms") is not None else "-"
        lines.append(f"instances: {live.get('reserved', 0)} reserved, {live.get('on_demand', 0)} on demand "
                     f"({live.get('busy', 0)} busy); invocations {live.get('invocations', 0)}, "
                     f"errors {live.get('errors', 0)}, p95 {p95}; version `{live.get('version')}`")
    else:
        lines.append("not deployed yet (`minicloud deploy ENV` or `minicloud fn deploy ENV`)")
    return "\n\n".join(lines)
