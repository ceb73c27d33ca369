"""Open-platform capabilities: method names in calls to the official SDKs (signed ones first), the
parameters inside their biz content, hovers, diagnostics, and "Generate call to …" actions."""

from __future__ import annotations

import re
from dataclasses import dataclass

from lsprotocol import types

from ..index import Snapshot
from .base import CODE_LANGUAGES, JS_LANGUAGES, CompletionTrigger, Context, Feature, span_range

METHOD_PATTERNS = (
    re.compile(r"\.(?:exec|sdkExecute|sdkExec|pageExecute|pageExec)\(\s*['\"](?P<method>[\w.]*)$"),
    re.compile(r"\.curl\(\s*['\"](?:GET|POST|PUT|DELETE|PATCH)['\"]\s*,\s*['\"](?P<path>/[\w/]*)$"),
    re.compile(r"['\"](?P<method>(?:alipay|zhima)\.[\w.]*)$"),
    re.compile(r"(?<![\w.])(?P<cls>(?:Alipay|Zhima)\w*)$"),
)
# where a method is named in code, anywhere in a document (for hovers and diagnostics)
USES = re.compile(
    r"\.(?:exec|sdkExecute|sdkExec|pageExecute|pageExec)\(\s*['\"](?P<method>[\w.]+)['\"]"
    r"|\.curl\(\s*['\"](?:GET|POST|PUT|DELETE|PATCH)['\"]\s*,\s*['\"](?P<path>/v3/[\w/]+)['\"]"
    r"|\b(?P<cls>(?:Alipay|Zhima)\w+Request)\b"
    r"|['\"](?P<literal>(?:alipay|zhima)\.[a-z]+(?:\.[a-z]+)+)['\"]")
OBJECT_OPENER = re.compile(r"(?:bizContent|biz_content|['\"]biz_content['\"]|body)\s*[:=]\s*$")
KEY_POSITION = re.compile(r"^\s*(?P<quote>['\"]?)(?P<key>\w*)$")
OBJECT_KEYS = re.compile(r"['\"]?(\w+)['\"]?\s*:")


def catalog():
    from codegen.catalog import load_catalog

    return load_catalog()


def request_class(method: str) -> str:
    return "".join(part.capitalize() for part in method.split(".")) + "Request"


def api_for(method: str | None = None, path: str | None = None, cls: str | None = None):
    cat = catalog()
    if method:
        return cat.api(method)
    if path:
        return cat.api_by_v3_path(path)
    if cls:
        return next((a for a in cat.apis if request_class(a.method) == cls), None)
    return None


@dataclass
class Use:
    api: object
    start: int  # offsets of the name in the text
    end: int


def find_uses(text: str) -> list[Use]:
    out = []
    for m in USES.finditer(text):
        group = next(g for g in ("method", "path", "cls", "literal") if m.group(g))
        api = api_for(**{"method" if group == "literal" else group: m.group(group)})
        if api is not None:
            out.append(Use(api, m.start(group), m.end(group)))
    return out


def _granted_doc(api, snapshot: Snapshot) -> str:
    if api.method in snapshot.granted:
        return "signed ✓"
    labels = [p.label for p in catalog().packages_granting(api.method)]
    return f"not signed — `minicloud abilities grant {snapshot.env} {labels[0]}`" if labels else "not signed"


def api_doc(api, snapshot: Snapshot) -> str:
    packages = ", ".join(f"{p.name} ({p.label})" if p.product_code else p.name
                         for p in catalog().packages_granting(api.method))
    required = ", ".join(f"`{p.name}`" for p in api.required) or "none"
    one_of = "".join(f"\n\nOne of: {' / '.join(f'`{n}`' for n in g)}" for g in api.one_of)
    v3 = f"\n\nv3: `{api.http_method} {api.v3_path}`" if api.v3_path else ""
    return (f"**{api.method}** — {api.title}\n\n{api.description}\n\nPackage: {packages} — "
            f"{_granted_doc(api, snapshot)}\n\nRequired: {required}{one_of}{v3}")


def _enclosing_object(before: str) -> int | None:
    """Index of the `{` that opens the object the cursor is in (None when not in one)."""
    depth = 0
    for i in range(len(before) - 1, -1, -1):
        ch = before[i]
        if ch == "}":
            depth += 1
        elif ch == "{":
            if depth == 0:
                return i
            depth -= 1
    return None


def _balanced(text: str, open_at: int) -> str | None:
    depth = 0
    for i in range(open_at, min(len(text), open_at + 5000)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_at: i + 1]
    return None


class CapabilityFeature(Feature):
    name = "capabilities"
    completion_trigger = CompletionTrigger(METHOD_PATTERNS + (re.compile(r"(?:^|[{,])\s*['\"]?\w*$"),),
                                           CODE_LANGUAGES, frozenset({"'", '"', ".", "/", "{", ","}))

    def prepare(self, snapshot: Snapshot) -> None:
        catalog()  # read once before the first request (the catalog's JSON is ~6 ms to load)

    def accepts(self, uri: str, language: str) -> bool:
        return language in CODE_LANGUAGES

    # ---- completion
    def completion(self, ctx: Context) -> list[types.CompletionItem]:
        m = ctx.match  # the first of the trigger's patterns that matched: a method name, or a key
        if m is None or m.re not in METHOD_PATTERNS:
            return self._params(ctx)
        groups = m.groupdict()
        if groups.get("cls") is not None:
            return self._methods(ctx, m.start("cls"), as_class=True) if ctx.language == "python" else self._params(ctx)
        if groups.get("path") is not None:
            return self._methods(ctx, m.start("path"), as_path=True)
        return self._methods(ctx, m.start("method"))

    def _methods(self, ctx: Context, start: int, as_class: bool = False, as_path: bool = False):
        items = []
        for api in catalog().apis:
            if as_path and not api.v3_path:
                continue
            signed = api.method in ctx.snapshot.granted
            label = request_class(api.method) if as_class else (api.v3_path if as_path else api.method)
            items.append(types.CompletionItem(
                label=label, kind=types.CompletionItemKind.Function if not as_class else types.CompletionItemKind.Class,
                detail=f"{'✓ signed' if signed else '✗ not signed'} · {api.title}",
                label_details=types.CompletionItemLabelDetails(description="signed" if signed else "not signed"),
                documentation=types.MarkupContent(types.MarkupKind.Markdown, api_doc(api, ctx.snapshot)),
                sort_text=("0" if signed else "1") + label,
                text_edit=types.TextEdit(ctx.word_range(start), label)))
        return items

    def _params(self, ctx: Context) -> list[types.CompletionItem]:
        before = ctx.text_before(3000)
        open_at = _enclosing_object(before)
        if open_at is None or not OBJECT_OPENER.search(before[:open_at]):
            return []
        segment = re.split(r"[,{]", before[open_at:])[-1]
        key = KEY_POSITION.match(segment)
        if key is None:
            return []
        uses = find_uses(before[:open_at])
        if not uses:
            return []
        api = uses[-1].api
        obj = _balanced(ctx.text, ctx.offset - len(before) + open_at) or before[open_at:]
        present = set(OBJECT_KEYS.findall(obj))
        quoted = bool(key.group("quote"))
        python = ctx.language == "python"
        start = ctx.column - len(key.group("key"))
        items = []
        for p in api.params:
            if p.name in present and p.name != key.group("key"):
                continue
            in_group = any(p.name in g for g in api.one_of)
            need = "required" if p.required else ("one of " + " / ".join(next(g for g in api.one_of if p.name in g))
                                                  if in_group else "optional")
            doc = [p.description, f"Type: {p.type}"]
            if p.max_length:
                doc.append(f"Max length: {p.max_length}")
            if p.example:
                doc.append(f"Example: `{p.example}`")
            if p.enum:
                doc.append("One of: " + ", ".join(f"`{v}`" for v in p.enum))
            if quoted:
                text = p.name
            elif python:
                text = f'"{p.name}": '
            else:
                text = f"{p.name}: "
            items.append(types.CompletionItem(
                label=p.name, kind=types.CompletionItemKind.Property, detail=f"{p.type} · {need}",
                label_details=types.CompletionItemLabelDetails(description=need),
                documentation=types.MarkupContent(types.MarkupKind.Markdown, "\n\n".join(doc)),
                sort_text=("0" if p.required else "1" if in_group else "2") + p.name,
                text_edit=types.TextEdit(ctx.word_range(start), text)))
        return items

    # ---- hover
    def hover(self, ctx: Context) -> types.Hover | None:
        line_start = ctx.offset - len(ctx.line_prefix)
        for use in find_uses(ctx.line_text):
            if use.start <= ctx.column <= use.end:
                return types.Hover(types.MarkupContent(types.MarkupKind.Markdown, api_doc(use.api, ctx.snapshot)),
                                   range=span_range(ctx.text, line_start + use.start, line_start + use.end))
        return None

    # ---- diagnostics
    def diagnostics(self, uri: str, language: str, text: str, snapshot: Snapshot) -> list[types.Diagnostic]:
        out = []
        for use in find_uses(text):
            api = use.api
            rng = span_range(text, use.start, use.end)
            if snapshot.app is not None and api.method not in snapshot.granted:
                labels = [p.label for p in catalog().packages_granting(api.method)]
                out.append(types.Diagnostic(
                    range=rng, severity=types.DiagnosticSeverity.Warning, source="minicloud", code="unsigned",
                    message=f"{api.method} is not granted by a signed package of this app; sign "
                            f"{' or '.join(labels)}: minicloud abilities grant {snapshot.env} {labels[0]}"))
            obj = self._call_object(text, use.end, language)
            if obj is None or "..." in obj or "**" in obj:
                continue
            missing = catalog().missing_params(api.method, set(OBJECT_KEYS.findall(obj)))
            if missing:
                out.append(types.Diagnostic(
                    range=rng, severity=types.DiagnosticSeverity.Error, source="minicloud", code="missing-parameter",
                    message=f"{api.method}: missing required parameter(s): {', '.join(missing)}"))
        return out

    @staticmethod
    def _call_object(text: str, after: int, language: str) -> str | None:
        """The literal biz content object of the call named at `after`, if written out."""
        window = text[after: after + 600]
        pattern = r"biz_content\s*=\s*\{" if language == "python" else r"(?:bizContent|body)\s*:\s*\{"
        if language in JS_LANGUAGES:
            window = window.split(");", 1)[0]
        m = re.search(pattern, window)
        if m is None:
            return None
        return _balanced(text, after + m.end() - 1)

    # ---- code actions
    def code_actions(self, ctx: Context, params: types.CodeActionParams) -> list[types.CodeAction]:
        """"Generate call to …": the command adds one function for the call at the cursor, and the
        imports and the client set-up only when the file lacks them (codegen.compose); a call whose
        function the file already holds is not offered again."""
        line_start = ctx.offset - len(ctx.line_prefix)
        here = [u for u in find_uses(ctx.line_text) if u.start <= ctx.column <= u.end]
        methods = [u.api.method for u in here] or sorted(ctx.snapshot.granted)[:8]
        lang = _codegen_lang(ctx.language)
        defined = _defined_names(ctx.text)
        actions = []
        for method in dict.fromkeys(methods):
            if _function_name(method) in defined:
                continue
            signed = method in ctx.snapshot.granted
            actions.append(types.CodeAction(
                title=f"Generate call to {method}" + ("" if signed else " (not signed)"),
                kind=types.CodeActionKind.RefactorRewrite if here else types.CodeActionKind.Refactor,
                command=types.Command(title=f"Generate call to {method}", command="minicloud.codegen",
                                      arguments=[{"method": method, "lang": lang, "uri": params.text_document.uri,
                                                  "position": {"line": params.range.start.line,
                                                               "character": params.range.start.character}}]),
                diagnostics=[d for d in params.context.diagnostics if d.code == "unsigned" and
                             span_range(ctx.text, line_start, line_start).start.line == d.range.start.line] or None))
        return actions


def _codegen_lang(language: str) -> str:
    """codegen's language for a document's: Python, Java, else JavaScript (Node)."""
    return {"python": "python", "java": "java"}.get(language, "node")


def _function_name(method: str) -> str:
    from codegen.generate import function_name

    return function_name(method)


DECLARED = re.compile(r"\b(?:function\s*\*?|def|async)\s+([A-Za-z_$][\w$]*)\s*\("
                      r"|^[ \t]*(?:public\s+|static\s+|async\s+)*(?:String\s+)?([A-Za-z_$][\w$]*)\s*\([^)\n]*\)\s*"
                      r"(?:throws\s+[\w.,\s]+)?\{", re.MULTILINE)


def _defined_names(text: str) -> set[str]:
    """Names of the functions and methods declared in `text` (what a generated call would add)."""
    return {m.group(1) or m.group(2) for m in DECLARED.finditer(text)}
