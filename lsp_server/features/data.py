"""The data API in code: `db.collection('orders').where({…}).orderBy('…')…` (the JS SDK, WeChat/Alipay
cloud style) and `cloud.database().collection("orders").where({…}).order_by("…")` (the Python SDK).

Completions: collection names in `collection('…')`; field names and dotted paths sampled from the live
documents (with their types) at a key of the objects given to `where`, `update`, `add`, `field`, and in
`orderBy('…')`; MongoDB operators after `$`. Hover on a collection: its count, sampled fields and rules.
Diagnostics: an operator the data API does not support (error), a `where` field that no sampled document
has (hint), and a front end's query that the collection's read rule always refuses (warning).

What it knows comes from the index (`Snapshot.collections`, sampled by the engine reader through the data
API; `Snapshot.collection_rules`, from the manifest): nothing is asked of the engine on a request.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import unquote, urlparse

from lsprotocol import types

from deploy_bridge.services.data_rules import parse as parse_rule
from deploy_bridge.services.mongo_ops import FILTER_OPERATORS, UPDATE_OPERATORS

from ..index import Snapshot
from .base import CODE_LANGUAGES, CompletionTrigger, Context, Feature, span_range

COLLECTION_NAME = re.compile(r"\.collection\(\s*['\"`](?P<name>\w*)$")
SORT_FIELD = re.compile(r"\.(?:orderBy|order_by)\(\s*['\"`](?P<name>[\w.]*)$")
# a key being typed in an object literal: after `{` or `,` or at the start of a line, maybe quoted, maybe an
# operator (whether it is inside a query's object is `query_at`'s to say)
KEY = re.compile(r"(?:^|[{,])\s*(?P<q>['\"]?)(?P<name>\$?[\w.]*)$")
CALL = re.compile(r"\.collection\(\s*['\"`](?P<name>\w+)['\"`]\s*\)")
OPERATOR_KEY = re.compile(r"['\"]?(?P<op>\$[A-Za-z]+)['\"]?\s*:")
WHERE_OPEN = re.compile(r"\.where\(\s*\{")
KINDS = {"where": "filter", "update": "update", "set": "update", "add": "data", "field": "projection",
         "remove": "filter", "count": "filter"}
CLIENT_FOLDERS = frozenset({"miniprogram", "mini-program", "client", "pages", "frontend", "front-end"})
RESERVED = ("_id", "_owner")
CONTEXT_CHARS = 3000


def open_call(tail: str) -> str | None:
    """The innermost call still open at the end of `tail` (the text after `.collection('…')`), if any."""
    stack: list[str | None] = []
    for m in re.finditer(r"(?:\.(\w+)\s*)?\(|\)", tail):
        if m.group(0) == ")":
            if stack:
                stack.pop()
        else:
            stack.append(m.group(1))
    return next((name for name in reversed(stack) if name), None)


def query_at(text_before: str) -> tuple[str, str] | None:
    """(collection, what is being written: filter|update|data|projection) at the end of `text_before`."""
    calls = list(CALL.finditer(text_before))
    if not calls:
        return None
    last = calls[-1]
    tail = text_before[last.end():]
    if "\n\n" in tail or ";" in tail:
        return None  # the statement ended
    method = open_call(tail)
    kind = KINDS.get(method or "")
    return (last.group("name"), kind) if kind else None


def statement_after(text: str, start: int) -> str:
    """From `start` to the end of its statement (a `;` or a blank line at depth 0, or 2,000 characters)."""
    depth, end = 0, min(len(text), start + 2000)
    for i in range(start, end):
        ch = text[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth <= 0 and (ch == ";" or text.startswith("\n\n", i)):
            return text[start:i]
    return text[start:end]


def top_level_keys(text: str, start: int) -> list[tuple[str, int]]:
    """The keys of the object literal opening at `start` (`{`), at its first level: (key, offset)."""
    keys, depth, i = [], 0, start
    expect_key = False
    while i < len(text):
        ch = text[i]
        if ch in "([{":
            depth += 1
            expect_key = depth == 1 and ch == "{"
        elif ch in ")]}":
            depth -= 1
            if depth <= 0:
                break
        elif ch == "," and depth == 1:
            expect_key = True
        elif expect_key and not ch.isspace():
            m = re.match(r"(['\"])([^'\"]+)\1\s*:|([A-Za-z_$][\w$]*)\s*:", text[i:])
            if m:
                keys.append((m.group(2) or m.group(3), i))
                i += m.end() - 1
            expect_key = False
        elif ch in "'\"`":  # skip a string value
            close = text.find(ch, i + 1)
            i = close if close > 0 else len(text)
        i += 1
    return keys


def is_client_side(uri: str) -> bool:
    """A mini-program's front end (its code sits in one of CLIENT_FOLDERS): it reads with a user's session."""
    parts = PurePosixPath(unquote(urlparse(uri).path)).parts
    return any(part in CLIENT_FOLDERS for part in parts[:-1])


def _describe(name: str, snapshot: Snapshot) -> str:
    live = snapshot.collections.get(name)
    rules = (snapshot.collection_rules or {}).get(name)
    lines = [f"**collection `{name}`** in {snapshot.app or 'the app'}/{snapshot.env}"]
    if live is None:
        lines.append("\nno document yet (or the env's data API has not been read)")
    else:
        count = live.get("count", 0)
        lines.append(f"\n{count:,} document{'' if count == 1 else 's'}")
        fields = live.get("fields") or {}
        if fields:
            lines += ["", "| field | type |", "|---|---|"] + [f"| `{p}` | {t} |" for p, t in list(fields.items())[:30]]
            if len(fields) > 30:
                lines.append(f"\n… and {len(fields) - 30} more")
    if rules:
        lines += ["", f"read: `{rules.get('read', '(none: the server only)')}`",
                  f"write: `{rules.get('write', '(none: the server only)')}`"]
    elif snapshot.collection_rules is not None:
        lines.append("\nno rules: only functions and the app (the server credential) reach it")
    return "\n".join(lines)


class DataFeature(Feature):
    name = "data"
    completion_trigger = CompletionTrigger((COLLECTION_NAME, SORT_FIELD, KEY), frozenset(CODE_LANGUAGES),
                                           frozenset({"'", '"', "`", "$", "{", ",", "."}))

    def accepts(self, uri: str, language: str) -> bool:
        return language in CODE_LANGUAGES

    # ---- completion
    def completion(self, ctx: Context) -> list[types.CompletionItem]:
        m = ctx.match
        if m is None or (not ctx.snapshot.collections and ctx.snapshot.collection_rules is None):
            return []
        if m.re is COLLECTION_NAME:
            return self._collections(ctx, m)
        before = ctx.text_before(CONTEXT_CHARS)
        if m.re is SORT_FIELD:
            found = [c.group("name") for c in CALL.finditer(before)]
            return self._fields(ctx, found[-1], m) if found else []
        at = query_at(before)
        if at is None:
            return []
        collection, kind = at
        if m.group("name").startswith("$"):
            return self._operators(ctx, m, UPDATE_OPERATORS if kind == "update" else FILTER_OPERATORS)
        return self._fields(ctx, collection, m, quote_dotted=not m.group("q"))

    def _collections(self, ctx: Context, m: re.Match[str]) -> list[types.CompletionItem]:
        names = set(ctx.snapshot.collections) | set(ctx.snapshot.collection_rules or {})
        return [types.CompletionItem(
            label=name, kind=types.CompletionItemKind.Struct,
            detail=f"{ctx.snapshot.collections.get(name, {}).get('count', 0):,} documents",
            documentation=types.MarkupContent(types.MarkupKind.Markdown, _describe(name, ctx.snapshot)),
            text_edit=types.TextEdit(ctx.word_range(m.start("name")), name)) for name in sorted(names)]

    def _fields(self, ctx: Context, collection: str, m: re.Match[str],
                quote_dotted: bool = False) -> list[types.CompletionItem]:
        fields = dict((ctx.snapshot.collections.get(collection) or {}).get("fields") or {})
        fields.setdefault("_id", "string")
        fields.setdefault("_owner", "string")
        items = []
        for path, kind in fields.items():
            text = f"'{path}'" if quote_dotted and "." in path else path
            items.append(types.CompletionItem(
                label=path, kind=types.CompletionItemKind.Field, detail=f"{kind} · {collection}",
                sort_text=("1" if path in RESERVED else "0") + path,
                text_edit=types.TextEdit(ctx.word_range(m.start("name")), text)))
        return items

    def _operators(self, ctx: Context, m: re.Match[str], operators: dict[str, str]) -> list[types.CompletionItem]:
        return [types.CompletionItem(label=op, kind=types.CompletionItemKind.Operator, detail=doc,
                                     text_edit=types.TextEdit(ctx.word_range(m.start("name")), op))
                for op, doc in operators.items()]

    # ---- hover
    def hover(self, ctx: Context) -> types.Hover | None:
        for m in CALL.finditer(ctx.line_text):
            if m.start("name") <= ctx.column <= m.end("name"):
                return types.Hover(types.MarkupContent(types.MarkupKind.Markdown,
                                                       _describe(m.group("name"), ctx.snapshot)))
        return None

    # ---- diagnostics
    def diagnostics(self, uri: str, language: str, text: str, snapshot: Snapshot) -> list[types.Diagnostic]:
        if ".collection(" not in text:
            return []
        out: list[types.Diagnostic] = []
        supported = FILTER_OPERATORS.keys() | UPDATE_OPERATORS.keys()
        client = is_client_side(uri)
        for call in CALL.finditer(text):
            name = call.group("name")
            chain = statement_after(text, call.end())
            base = call.end()
            for op in OPERATOR_KEY.finditer(chain):
                if op.group("op") not in supported:
                    out.append(types.Diagnostic(
                        range=span_range(text, base + op.start("op"), base + op.end("op")),
                        message=f"{op.group('op')}: the data API does not support this operator (filters: "
                                f"{' '.join(FILTER_OPERATORS)}; updates: {' '.join(UPDATE_OPERATORS)})",
                        severity=types.DiagnosticSeverity.Error, source="minicloud", code="unsupported-operator"))
            out += self._unknown_fields(text, base, chain, name, snapshot)
            if client and snapshot.collection_rules is not None:
                out += self._denied(text, call, name, snapshot)
        return out

    @staticmethod
    def _unknown_fields(text: str, base: int, chain: str, name: str, snapshot: Snapshot) -> list[types.Diagnostic]:
        live = snapshot.collections.get(name)
        fields = (live or {}).get("fields") or {}
        if not fields:
            return []  # nothing sampled: nothing to say
        out = []
        for where in WHERE_OPEN.finditer(chain):
            brace = where.end() - 1
            for key, offset in top_level_keys(chain, brace):
                if key.startswith("$") or key in RESERVED or key in fields \
                        or any(path.startswith(key + ".") for path in fields):
                    continue
                out.append(types.Diagnostic(
                    range=span_range(text, base + offset, base + offset + len(key) + (2 if chain[offset] in "'\"" else 0)),
                    message=f"no sampled document of {name} has a field {key} ({live.get('count', 0):,} documents; "
                            f"fields: {', '.join(list(fields)[:8])}{' …' if len(fields) > 8 else ''})",
                    severity=types.DiagnosticSeverity.Hint, source="minicloud", code="unknown-field"))
        return out

    @staticmethod
    def _denied(text: str, call: re.Match[str], name: str, snapshot: Snapshot) -> list[types.Diagnostic]:
        rule_text = (snapshot.collection_rules or {}).get(name, {}).get("read")
        if rule_text is None:
            problem = f"a front end cannot read {name}: it has no read rule ([data.collections.{name}] read = …)"
        else:
            try:
                rule = parse_rule(rule_text, f"data.collections.{name}.read")
            except ValueError:
                return []  # the manifest's own diagnostic says what is wrong with it
            if not rule.always_false(True):
                return []
            problem = f"the read rule of {name} (`{rule_text}`) never lets a signed-in user read: this query " \
                      "always answers nothing"
        return [types.Diagnostic(range=span_range(text, call.start("name"), call.end("name")), message=problem,
                                 severity=types.DiagnosticSeverity.Warning, source="minicloud", code="rule-denies")]
