"""minicloud.toml: tables, keys and values from the same schema that validates it; its errors."""

from __future__ import annotations

import re
import time

from lsprotocol import types

from deploy_bridge.manifest import DEFAULT_ENVS, SCHEMA, Field, check_manifest_text, schema_table

from ..index import Snapshot
from .base import CompletionTrigger, Context, Feature, utf16_len

HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-]*)$")
KEY = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_\-]*)?$")
VALUE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_\-]*)\s*=\s*\"?([^\"]*)$")
TABLE_LINE = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]")


def current_table(lines: list[str], line: int) -> tuple[str, ...]:
    for text in reversed(lines[:line]):
        if m := TABLE_LINE.match(text):
            return tuple(part.strip().strip('"') for part in m.group(1).split("."))
    return ()


def _field_doc(f: Field) -> str:
    parts = [f.doc]
    if f.choices:
        parts.append("One of: " + ", ".join(f"`{c}`" for c in f.choices))
    if f.default is not None:
        parts.append(f"Default: `{f.default}`")
    if f.example:
        parts.append(f"Example: `{f.name} = {f.example}`")
    return "\n\n".join(parts)


class ManifestFeature(Feature):
    name = "manifest"
    completion_trigger = CompletionTrigger((HEADER, VALUE, KEY), characters=frozenset({"[", ".", "=", '"'}))

    def accepts(self, uri: str, language: str) -> bool:
        return uri.endswith("minicloud.toml")

    def completion(self, ctx: Context) -> list[types.CompletionItem]:
        m = ctx.match  # the first of the trigger's HEADER, VALUE, KEY that matched
        if m is None:
            return []
        if m.re is HEADER:
            return self._tables(ctx, m)
        if m.re is VALUE:
            return self._values(ctx, m)
        return self._keys(ctx)

    def _tables(self, ctx: Context, m: re.Match[str]) -> list[types.CompletionItem]:
        envs = sorted(set(DEFAULT_ENVS) | set(re.findall(r"^\s*\[\s*env\.([a-z0-9-]+)", ctx.text, re.M)))
        # what a table's `*` stands for: the env names, the function folders, the live collections
        fill = {"env": envs, "functions": sorted(ctx.snapshot.function_folders),
                "data.collections": sorted(set(ctx.snapshot.collections) | set(ctx.snapshot.collection_rules or {}))}
        names: dict[str, str] = {}
        for table in SCHEMA:
            if "*" not in table.path:
                names[table.path] = table.doc
            else:
                for value in fill.get(table.path.split(".*", 1)[0], []):
                    names[table.path.replace("*", value)] = table.doc
        start = m.start(1)
        return [types.CompletionItem(label=name, kind=types.CompletionItemKind.Module,
                                     documentation=types.MarkupContent(types.MarkupKind.Markdown, doc),
                                     text_edit=types.TextEdit(ctx.word_range(start), name))
                for name, doc in names.items()]

    def _keys(self, ctx: Context) -> list[types.CompletionItem]:
        table = schema_table(current_table(ctx.lines, ctx.line))
        if table is None or table.free_form:
            return []
        present = set(re.findall(r"^\s*([A-Za-z_][\w\-]*)\s*=", self._table_text(ctx), re.M))
        items = []
        for f in table.fields:
            if f.name in present:
                continue
            items.append(types.CompletionItem(
                label=f.name, kind=types.CompletionItemKind.Property,
                detail=f"{f.kind}{' (required)' if f.required else ''}",
                documentation=types.MarkupContent(types.MarkupKind.Markdown, _field_doc(f)),
                sort_text=("0" if f.required else "1") + f.name,
                insert_text=f"{f.name} = "))
        # tables nested in this one ([env.test] holds `vars`): offered as an inline table
        path = current_table(ctx.lines, ctx.line)
        for child in SCHEMA:
            parts = child.path.split(".")
            if len(parts) == len(path) + 1 and schema_table((*path, parts[-1])) is child \
                    and parts[-1] != "*" and parts[-1] not in present:
                items.append(types.CompletionItem(
                    label=parts[-1], kind=types.CompletionItemKind.Module, detail="table",
                    documentation=types.MarkupContent(types.MarkupKind.Markdown,
                                                      f"{child.doc}\n\nAlso as a table: `[{'.'.join((*path, parts[-1]))}]`"),
                    sort_text="2" + parts[-1], insert_text=f"{parts[-1]} = {{ }}"))
        return items

    def _values(self, ctx: Context, m: re.Match[str]) -> list[types.CompletionItem]:
        table = schema_table(current_table(ctx.lines, ctx.line))
        f = table.field(m.group(1)) if table is not None else None
        if f is None:
            return []
        quoted = '"' in ctx.line_prefix[m.end(1):]
        if f.choices:
            values = list(f.choices)
        elif f.kind == "boolean":
            values = ["true", "false"]
        elif f.example:
            values = [f.example.strip('"')]
        else:
            return []
        out = []
        for v in values:
            text = v if quoted or f.kind != "string" else f'"{v}"'
            out.append(types.CompletionItem(label=v, kind=types.CompletionItemKind.Value, detail=f.name,
                                            documentation=f.doc,
                                            text_edit=types.TextEdit(ctx.word_range(m.start(2)), text)))
        return out

    @staticmethod
    def _table_text(ctx: Context) -> str:
        start = ctx.line
        while start > 0 and not TABLE_LINE.match(ctx.lines[start]):
            start -= 1
        end = ctx.line + 1
        while end < len(ctx.lines) and not TABLE_LINE.match(ctx.lines[end]):
            end += 1
        return "\n".join(ctx.lines[start:end])

    def hover(self, ctx: Context) -> types.Hover | None:
        m = re.match(r"^\s*([A-Za-z_][\w\-]*)\s*=", ctx.line_text)
        if not m or ctx.column > m.end(1):
            return None
        table = schema_table(current_table(ctx.lines, ctx.line))
        f = table.field(m.group(1)) if table is not None else None
        if f is None:
            return None
        return types.Hover(types.MarkupContent(types.MarkupKind.Markdown, f"**{f.name}** ({f.kind})\n\n{_field_doc(f)}"),
                           range=ctx.word_range(m.start(1), m.end(1)))

    def diagnostics(self, uri: str, language: str, text: str, snapshot: Snapshot) -> list[types.Diagnostic]:
        errors, _ = check_manifest_text(text, uri.rsplit("/", 1)[-1])
        lines = text.split("\n")
        out = []
        for err in errors:
            line = max(0, min(err.line - 1, len(lines) - 1)) if lines else 0
            content = lines[line] if lines else ""
            start = max(0, (err.column or 1) - 1)
            end = (err.end_column - 1) if err.end_column else len(content)
            out.append(types.Diagnostic(
                range=types.Range(types.Position(line, utf16_len(content[:start])),
                                  types.Position(line, utf16_len(content[:max(end, start)]))),
                message=f"{err.key}: {err.problem}" if err.key else err.problem,
                severity=types.DiagnosticSeverity.Error, source="minicloud"))
        return out + self._firing(lines, snapshot)

    @staticmethod
    def _firing(lines: list[str], snapshot: Snapshot) -> list[types.Diagnostic]:
        """A warning on each `[alerts]` rule's line while it fires in the env in view."""
        firing: dict[str, list[dict]] = {}
        for alert in ((snapshot.pulse or {}).get("live") or {}).get("firing", []):
            firing.setdefault(alert["alert"], []).append(alert)
        if not firing:
            return []
        out, table = [], ()
        for number, text in enumerate(lines):
            if m := TABLE_LINE.match(text):
                table = tuple(part.strip().strip('"') for part in m.group(1).split("."))
                continue
            key = re.match(r"^\s*([A-Za-z_][\w\-]*)\s*=", text)
            if table != ("alerts",) or not key or key.group(1) not in firing:
                continue
            for alert in firing[key.group(1)]:
                on = f" on {alert['subject']}" if alert.get("subject") else ""
                since = time.strftime("%H:%M:%S", time.localtime(alert["since"])) if alert.get("since") else "now"
                out.append(types.Diagnostic(
                    range=types.Range(types.Position(number, utf16_len(text[:key.start(1)])),
                                      types.Position(number, utf16_len(text.rstrip()))),
                    message=f"alert {alert['alert']} fires in {snapshot.app}/{snapshot.env}{on} since {since}: "
                            f"{alert.get('value') or alert['rule']}",
                    severity=types.DiagnosticSeverity.Warning, source="minicloud", code="alert-firing"))
        return out
