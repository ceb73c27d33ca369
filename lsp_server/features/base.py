"""What a feature is: a completion trigger, and answers computed from the document and the index.

After esbonio's design: each feature declares when it applies (languages, regular expressions
matched against the text before the cursor, trigger characters); the server asks only the features
whose trigger fires. Features never do I/O: they read the document and the in-memory snapshot.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from lsprotocol import types

from ..index import Snapshot

JS_LANGUAGES = frozenset({"javascript", "typescript", "javascriptreact", "typescriptreact"})
CODE_LANGUAGES = JS_LANGUAGES | {"python", "java"}


@dataclass(frozen=True)
class CompletionTrigger:
    """When a feature completes: the first of `patterns` (or of `by_language[ctx.language]` where the
    document's language has its own) that matches the text before the cursor. The server hands that
    match to the feature as `ctx.match`, and advertises `characters` as completion trigger
    characters."""

    patterns: tuple[re.Pattern[str], ...]
    languages: frozenset[str] = frozenset()  # empty: any language
    characters: frozenset[str] = frozenset()
    by_language: Mapping[str, tuple[re.Pattern[str], ...]] = field(default_factory=dict, hash=False)

    def match(self, ctx: Context) -> re.Match[str] | None:
        if self.languages and ctx.language not in self.languages:
            return None
        for pattern in self.by_language.get(ctx.language, self.patterns):
            if m := pattern.search(ctx.line_prefix):
                return m
        return None


class CompletionItems(list):
    """A feature's completion items that are not all it could offer (e.g. narrowed by the word typed):
    the server's answer is then marked `isIncomplete`, so that the editor asks again as the user types."""

    def __init__(self, items: Iterable[types.CompletionItem] = (), is_incomplete: bool = False) -> None:
        super().__init__(items)
        self.is_incomplete = is_incomplete


def trigger_characters(features: Iterable[Feature]) -> list[str]:
    """The completion trigger characters of the server: those of its features' triggers."""
    return sorted({ch for f in features if f.completion_trigger is not None for ch in f.completion_trigger.characters})


@dataclass
class Context:
    """One request: the document text, the cursor, and the snapshot of the environment."""

    uri: str
    language: str
    text: str
    line: int  # 0-based
    column: int  # Python index into the line (already converted from UTF-16 and clamped)
    snapshot: Snapshot
    match: re.Match[str] | None = None  # the completion trigger's match, set by the server for `completion`
    extra: dict = field(default_factory=dict)

    @cached_property
    def lines(self) -> list[str]:
        return self.text.split("\n")

    @cached_property
    def line_text(self) -> str:
        return self.lines[self.line] if 0 <= self.line < len(self.lines) else ""

    @cached_property
    def line_prefix(self) -> str:
        return self.line_text[: self.column]

    @cached_property
    def offset(self) -> int:
        """Index of the cursor in `text`."""
        return sum(len(ln) + 1 for ln in self.lines[: self.line]) + len(self.line_prefix)

    def text_before(self, limit: int = 4000) -> str:
        return self.text[max(0, self.offset - limit): self.offset]

    def word_range(self, start_col: int, end_col: int | None = None) -> types.Range:
        """A range on the cursor's line in UTF-16 units (what the client counts)."""
        end_col = self.column if end_col is None else end_col
        return types.Range(types.Position(self.line, utf16_len(self.line_text[:start_col])),
                           types.Position(self.line, utf16_len(self.line_text[:end_col])))


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def column_from_utf16(line: str, character: int) -> int:
    """The Python index for a UTF-16 column, clamped to the line (clients may send anything)."""
    if character <= 0:
        return 0
    units = 0
    for i, ch in enumerate(line):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > character:
            return i
        if units == character:
            return i + 1
    return len(line)


class Feature:
    """A language feature; override what applies."""

    name = "feature"
    completion_trigger: CompletionTrigger | None = None

    def accepts(self, uri: str, language: str) -> bool:
        """Whether this feature looks at a document at all."""
        return True

    def completion(self, ctx: Context) -> list[types.CompletionItem]:
        """Called only when `completion_trigger` matches; `ctx.match` is that match."""
        return []

    def hover(self, ctx: Context) -> types.Hover | None:
        return None

    def diagnostics(self, uri: str, language: str, text: str, snapshot: Snapshot) -> list[types.Diagnostic]:
        return []

    def code_actions(self, ctx: Context, params: types.CodeActionParams) -> list[types.CodeAction]:
        return []

    def code_lenses(self, uri: str, text: str, snapshot: Snapshot) -> list[types.CodeLens]:
        return []

    def prepare(self, snapshot: Snapshot) -> None:
        """Derive from a new snapshot what requests will read (called off the request path)."""

    # ---- lazy completion items (lsp_server/resolve.py)
    @staticmethod
    def lazy_documentation() -> bool:
        """Whether the client fetches an item's documentation through completionItem/resolve (it
        announced resolveSupport for it): then items leave it out. Set by `resolve.register`."""
        return False

    def resolve_completion(self, item: types.CompletionItem, data: dict, snapshot: Snapshot) -> types.CompletionItem:
        """Fill in what `completion` left out of `item` (its `data` holds `{"feature": self.name, ...}`,
        and the document's `uri`); `snapshot` is the current one of that document's app."""
        return item


@functools.lru_cache(maxsize=8)
def _line_starts(text: str) -> list[int]:
    """Where each line of `text` starts: made once per document text (a string caches its own hash), so
    that a feature placing a hundred diagnostics in a long file does not count its lines a hundred times."""
    starts, at = [0], text.find("\n")
    while at >= 0:
        starts.append(at + 1)
        at = text.find("\n", at + 1)
    return starts


def offset_to_position(text: str, offset: int) -> types.Position:
    starts = _line_starts(text)
    line = bisect.bisect_right(starts, offset) - 1
    return types.Position(line, utf16_len(text[starts[line]:offset]))


def span_range(text: str, start: int, end: int) -> types.Range:
    return types.Range(offset_to_position(text, start), offset_to_position(text, end))
