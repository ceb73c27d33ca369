"""Tables and columns of the environment's live database, inside SQL string literals.

Databases of thousands of tables are common, so table completions stay small and cheap: what they
need is prepared once per index snapshot (`Prepared`, kept while the snapshot lives), an answer holds
at most MAX_TABLE_ITEMS tables narrowed by the word already typed (marked incomplete so that the
editor asks again as the user types), and a table's documentation travels only when asked for
(completionItem/resolve, for clients that announce it; inlined within a byte budget otherwise).
"""

from __future__ import annotations

import re
import threading
import weakref
from bisect import bisect_left
from dataclasses import dataclass

from lsprotocol import types

from .base import CODE_LANGUAGES, CompletionItems, CompletionTrigger, Context, Feature

SQL_START = re.compile(r"^\s*(select|insert|update|delete|with|replace)\b", re.I)
AFTER_TABLE_KEYWORD = re.compile(r"\b(?:from|join|into|update|table)\s+[`\"]?(\w*)$", re.I)
QUALIFIED = re.compile(r"\b(\w+)\.(\w*)$")
PARTIAL_WORD = re.compile(r"(\w*)$")
TABLE_REFS = re.compile(r"\b(?:from|join|into|update)\s+[`\"]?(\w+)[`\"]?(?:\s+(?:as\s+)?(?!where|join|on|set|values|left|right|inner|outer|order|group|limit)(\w+))?", re.I)
INSERT_COLUMNS = re.compile(r"\binto\s+[`\"]?(\w+)[`\"]?\s*\([^)]*$", re.I)
MAX_TABLE_ITEMS = 30  # tables in one answer (an editor shows ~12); beyond, narrowed by the typed word, incomplete
INLINE_DOCS_BUDGET = 16_000  # characters of documentation inlined in one answer, for clients without resolve


class Prepared:
    """What table completions and hovers need from one snapshot's tables, computed once: the names
    sorted case-insensitively (a typed prefix is a range found by bisection), each table's detail, and
    its documentation when first asked for."""

    def __init__(self, tables: dict, env: str) -> None:
        self.tables, self.env = tables, env
        self.names = sorted(tables, key=lambda n: (n.lower(), n))
        self.keys = [n.lower() for n in self.names]
        self.details = {n: _table_detail(t) for n, t in tables.items()}
        self._docs: dict[str, str] = {}

    def doc(self, name: str) -> str:
        if (doc := self._docs.get(name)) is None:
            doc = self._docs[name] = _table_doc(self.tables[name], self.env)
        return doc

    def matching(self, word: str, limit: int) -> tuple[list[tuple[str, bool]], bool]:
        """Up to `limit` tables for the typed `word`: (name, starts with it), those starting with it
        first, then those containing it; and whether tables were left out."""
        if len(self.names) <= limit:
            return [(n, True) for n in self.names], False
        key = word.lower()
        lo = bisect_left(self.keys, key)
        hi = bisect_left(self.keys, key + "\U0010ffff", lo)
        found = [(n, True) for n in self.names[lo:min(hi, lo + limit)]]
        if key and len(found) < limit:
            for n, k in zip(self.names, self.keys, strict=True):
                if key in k and not k.startswith(key):
                    found.append((n, False))
                    if len(found) == limit:
                        break
        return found, True


_prepared: dict[int, tuple[weakref.ref, Prepared]] = {}  # id(snapshot) -> (the snapshot, what it prepared)
_prepared_lock = threading.Lock()


def prepared(snapshot) -> Prepared:
    """The snapshot's Prepared, made on first use and dropped with the snapshot. A refresh that found
    the same tables (the index keeps the same dict then) reuses the last one."""
    key = id(snapshot)
    entry = _prepared.get(key)
    if entry is not None and entry[0]() is snapshot:
        return entry[1]
    with _prepared_lock:
        reuse = next((p for ref, p in _prepared.values() if p.tables is snapshot.tables and p.env == snapshot.env
                      and ref() is not None), None)
        made = reuse or Prepared(snapshot.tables, snapshot.env)
        _prepared[key] = (weakref.ref(snapshot, lambda _ref, key=key: _forget(key, _ref)), made)
    return made


def _forget(key: int, ref: weakref.ref) -> None:
    with _prepared_lock:
        if (entry := _prepared.get(key)) is not None and entry[0] is ref:
            del _prepared[key]


@dataclass
class Literal:
    before: str  # literal text before the cursor
    after: str  # literal text after the cursor (to its end)
    start_col: int | None  # where it starts on the cursor's line, if it does


def _open_quote(prefix: str) -> int | None:
    """Index after the opening quote of the literal the cursor is in, on this line."""
    quote, start, i = None, None, 0
    while i < len(prefix):
        ch = prefix[i]
        if ch == "\\":
            i += 2
            continue
        if quote is None and ch in "'\"`":
            quote, start = ch, i + 1
        elif ch == quote:
            quote, start = None, None
        i += 1
    return start


def sql_literal(ctx: Context) -> Literal | None:
    prefix = ctx.line_prefix
    start = _open_quote(prefix)
    if start is not None:
        quote = prefix[start - 1]
        rest = ctx.line_text[ctx.column:]
        end = rest.find(quote)
        lit = Literal(prefix[start:], rest if end < 0 else rest[:end], start)
    else:
        # a literal spanning lines: a JS template or a Python triple-quoted string
        before = ctx.text_before()
        marker = "`" if ctx.language != "python" else '"""'
        if before.count(marker) % 2 == 0:
            return None
        after = ctx.text[ctx.offset: ctx.offset + 4000]
        end = after.find(marker)
        lit = Literal(before[before.rfind(marker) + len(marker):], after if end < 0 else after[:end], None)
    return lit if SQL_START.search(lit.before) else None


class SqlFeature(Feature):
    name = "sql"
    completion_trigger = CompletionTrigger((re.compile(r"['\"`][^'\"`]*$|^[^'\"`]*$"),), CODE_LANGUAGES,
                                           frozenset({" ", ".", "("}))

    def prepare(self, snapshot) -> None:
        made = prepared(snapshot)
        for name in made.names[:50]:  # the first answer's documentation, for clients without resolve
            made.doc(name)

    def accepts(self, uri: str, language: str) -> bool:
        return language in CODE_LANGUAGES

    def completion(self, ctx: Context) -> list[types.CompletionItem]:
        tables = ctx.snapshot.tables
        if not tables:
            return []
        lit = sql_literal(ctx)
        if lit is None:
            return []
        word = PARTIAL_WORD.search(lit.before)
        start = ctx.column - len(word.group(1)) if word else ctx.column
        if AFTER_TABLE_KEYWORD.search(lit.before):
            return self._table_items(ctx, word.group(1) if word else "", start)
        aliases = self._aliases(lit.before + lit.after)
        if m := QUALIFIED.search(lit.before):
            table = tables.get(aliases.get(m.group(1).lower(), m.group(1)))
            return [self._column_item(ctx, table, c, start) for c in table.columns] if table else []
        if m := INSERT_COLUMNS.search(lit.before):
            table = tables.get(m.group(1))
            return [self._column_item(ctx, table, c, start) for c in table.columns] if table else []
        referenced = [tables[t] for t in dict.fromkeys(aliases.values()) if t in tables]
        return [self._column_item(ctx, t, c, start) for t in referenced for c in t.columns]

    def _table_items(self, ctx: Context, word: str, start: int) -> CompletionItems:
        """The tables for the typed `word`, light: documentation through resolve, or inlined within
        INLINE_DOCS_BUDGET; incomplete when tables were left out (the editor asks again as the user
        types)."""
        prep = prepared(ctx.snapshot)
        found, incomplete = prep.matching(word, MAX_TABLE_ITEMS)
        edit_range = ctx.word_range(start)
        lazy = self.lazy_documentation()
        data_uri = ctx.uri
        items, budget = [], INLINE_DOCS_BUDGET
        for name, starts in found:
            item = types.CompletionItem(label=name, kind=types.CompletionItemKind.Class, detail=prep.details[name],
                                        text_edit=types.TextEdit(edit_range, name),
                                        data={"feature": self.name, "table": name, "uri": data_uri})
            if incomplete:  # those starting with the word first
                item.sort_text = ("0" if starts else "1") + name.lower()
            if not lazy:
                doc = prep.doc(name)
                budget -= len(doc)
                if budget < 0 and items:
                    incomplete = True
                    break
                item.documentation = types.MarkupContent(types.MarkupKind.Markdown, doc)
            items.append(item)
        return CompletionItems(items, is_incomplete=incomplete)

    @staticmethod
    def _aliases(sql: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for m in TABLE_REFS.finditer(sql):
            out[m.group(1).lower()] = m.group(1)
            if m.group(2):
                out[m.group(2).lower()] = m.group(1)
        return out

    @staticmethod
    def _column_item(ctx: Context, table, column: tuple[str, str], start: int) -> types.CompletionItem:
        name, sql_type = column
        return types.CompletionItem(label=name, kind=types.CompletionItemKind.Field,
                                    detail=f"{table.name}.{name} {sql_type}", sort_text=f"{table.name}.{name}",
                                    text_edit=types.TextEdit(ctx.word_range(start), name))

    def resolve_completion(self, item: types.CompletionItem, data: dict, snapshot) -> types.CompletionItem:
        name = data.get("table")
        if item.documentation is None and isinstance(name, str) and name in snapshot.tables:
            item.documentation = types.MarkupContent(types.MarkupKind.Markdown, prepared(snapshot).doc(name))
        return item

    def hover(self, ctx: Context) -> types.Hover | None:
        lit = sql_literal(ctx)
        if lit is None:
            return None
        left = re.search(r"(\w*)$", ctx.line_prefix).group(1)
        right = re.match(r"(\w*)", ctx.line_text[ctx.column:]).group(1)
        if left + right not in ctx.snapshot.tables:
            return None
        return types.Hover(types.MarkupContent(types.MarkupKind.Markdown, prepared(ctx.snapshot).doc(left + right)),
                           range=ctx.word_range(ctx.column - len(left), ctx.column + len(right)))


def _table_detail(table) -> str:
    rows = f", {table.rows} rows" if table.rows is not None else ""
    return f"table ({len(table.columns)} columns{rows})"


def _table_doc(table, env: str) -> str:
    rows = f"{table.rows} rows" if table.rows is not None else "rows unknown"
    cols = "\n".join(f"| `{n}` | {t} |" for n, t in table.columns)
    return f"**{table.name}** — table in `{env}` ({rows})\n\n| column | type |\n|---|---|\n{cols}"
