"""The variables the cloud injects: after `process.env.`, in `os.environ[...]`, `os.getenv(...)`, …"""

from __future__ import annotations

import re

from lsprotocol import types

from .base import JS_LANGUAGES, CompletionTrigger, Context, Feature

# each pattern ends with the partial variable name in group "name"
PATTERNS = {
    "js": re.compile(r"process\.env\.(?P<name>\w*)$|process\.env\[\s*['\"`](?P<quoted>\w*)$"),
    "python": re.compile(r"os\.environ\[\s*['\"](?P<quoted>\w*)$|os\.(?:getenv|environ\.get)\(\s*['\"](?P<quoted2>\w*)$"),
    "java": re.compile(r"System\.getenv\(\s*\"(?P<quoted>\w*)$"),
}
LANG_KEY = {**{lang: "js" for lang in JS_LANGUAGES}, "python": "python", "java": "java"}
# a name in any of those places, for hover
USE = re.compile(r"process\.env\.(\w+)|process\.env\[\s*['\"`](\w+)|os\.environ\[\s*['\"](\w+)|"
                 r"os\.(?:getenv|environ\.get)\(\s*['\"](\w+)|System\.getenv\(\s*\"(\w+)")


class EnvVarFeature(Feature):
    name = "env-vars"
    completion_trigger = CompletionTrigger(tuple(PATTERNS.values()), frozenset(LANG_KEY), frozenset({".", "[", "'", '"'}),
                                           by_language={lang: (PATTERNS[key],) for lang, key in LANG_KEY.items()})

    def accepts(self, uri: str, language: str) -> bool:
        return language in LANG_KEY

    def completion(self, ctx: Context) -> list[types.CompletionItem]:
        m = ctx.match  # the pattern of the document's language (the trigger's `by_language`)
        if m is None:
            return []
        group = next(g for g in ("name", "quoted", "quoted2") if g in m.groupdict() and m.group(g) is not None)
        start = m.start(group)
        return [types.CompletionItem(
            label=v.name, kind=types.CompletionItemKind.Variable, detail=v.value,
            documentation=types.MarkupContent(types.MarkupKind.Markdown, _doc(v, ctx.snapshot.env)),
            text_edit=types.TextEdit(ctx.word_range(start), v.name))
            for v in ctx.snapshot.variables.values()]

    def hover(self, ctx: Context) -> types.Hover | None:
        for m in USE.finditer(ctx.line_text):
            group = next(i for i in range(1, 6) if m.group(i))
            if m.start(group) <= ctx.column <= m.end(group):
                var = ctx.snapshot.variables.get(m.group(group))
                if var is None:
                    return None
                return types.Hover(types.MarkupContent(types.MarkupKind.Markdown,
                                                       f"**{var.name}**\n\n{_doc(var, ctx.snapshot.env)}"),
                                   range=ctx.word_range(m.start(group), m.end(group)))
        return None


def _doc(var, env: str) -> str:
    secret = " (secret, masked)" if var.secret else ""
    return f"Injected by minicloud into `{env}`.\n\nValue: `{var.value}`{secret}\n\nFrom: {var.source}"
