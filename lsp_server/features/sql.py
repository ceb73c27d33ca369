"""Tables and columns of the environment's live database, inside SQL string literals."""

from __future__ import annotations

import re
from dataclasses import dataclass

from lsprotocol import types

from .base import CODE_LANGUAGES, CompletionTrigger, Context, Feature

SQL_START = re.compile(r"^\s*(select|insert|update|delete|with|replace)\b", re.I)
AFTER_TABLE_KEYWORD = re.compile(r"\b(?:from|join|into|update|table)\s+[`\"]?(\w*)$", re.I)
QUALIFIED = re.compile(r"\b(\w+)\.(\w*)$")
PARTIAL_WORD = re.compile(r"(\w*)$")
TABLE_REFS = re.compile(r"\b(?:from|join|into|update)\s+[`\"]?(\w+)[`\"]?(?:\s+(?:as\s+)?(?!where|join|on|set|values|left|right|inner|outer|order|group|limit)(\w+))?", re.I)
INSERT_COLUMNS = re.compile(r"\binto\s+[`\"]?(\w+)[`\"]?\s*\([^)]*$", re.I)


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
            return [self._table_item(ctx, t, start) for t in tables.values()]
        aliases = self._aliases(lit.before + lit.after)
        if m := QUALIFIED.search(lit.before):
            table = tables.get(aliases.get(m.group(1).lower(), m.group(1)))
            return [self._column_item(ctx, table, c, start) for c in table.columns] if table else []
        if m := INSERT_COLUMNS.search(lit.before):
            table = tables.get(m.group(1))
            return [self._column_item(ctx, table, c, start) for c in table.columns] if table else []
        referenced = [tables[t] for t in dict.fromkeys(aliases.values()) if t in tables]
        return [self._column_item(ctx, t, c, start) for t in referenced for c in t.columns]

    @staticmethod
    def _aliases(sql: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for m in TABLE_REFS.finditer(sql):
            out[m.group(1).lower()] = m.group(1)
            if m.group(2):
                out[m.group(2).lower()] = m.group(1)
        return out

    @staticmethod
    def _table_item(ctx: Context, table, start: int) -> types.CompletionItem:
        rows = f", {table.rows} rows" if table.rows is not None else ""
        return types.CompletionItem(
            label=table.name, kind=types.CompletionItemKind.Class,
            detail=f"table ({len(table.columns)} columns{rows})",
            documentation=types.MarkupContent(types.MarkupKind.Markdown, _table_doc(table, ctx.snapshot.env)),
            text_edit=types.TextEdit(ctx.word_range(start), table.name))

    @staticmethod
    def _column_item(ctx: Context, table, column: tuple[str, str], start: int) -> types.CompletionItem:
        name, sql_type = column
        return types.CompletionItem(label=name, kind=types.CompletionItemKind.Field,
                                    detail=f"{table.name}.{name} {sql_type}", sort_text=f"{table.name}.{name}",
                                    text_edit=types.TextEdit(ctx.word_range(start), name))

    def hover(self, ctx: Context) -> types.Hover | None:
        lit = sql_literal(ctx)
        if lit is None:
            return None
        left = re.search(r"(\w*)$", ctx.line_prefix).group(1)
        right = re.match(r"(\w*)", ctx.line_text[ctx.column:]).group(1)
        table = ctx.snapshot.tables.get(left + right)
        if table is None:
            return None
        return types.Hover(types.MarkupContent(types.MarkupKind.Markdown, _table_doc(table, ctx.snapshot.env)),
                           range=ctx.word_range(ctx.column - len(left), ctx.column + len(right)))


def _table_doc(table, env: str) -> str:
    rows = f"{table.rows} rows" if table.rows is not None else "rows unknown"
    cols = "\n".join(f"| `{n}` | {t} |" for n, t in table.columns)
    return f"**{table.name}** — table in `{env}` ({rows})\n\n| column | type |\n|---|---|\n{cols}"
