"""Which language a document is in: the client's `languageId`, mapped to the server's canonical ids.

Editors do not agree on language ids. VS Code sends `javascript`, `typescriptreact`; Emacs' eglot
derives the id from the major mode (`js-mode` -> `js`, `typescript-ts-mode` -> `typescript-ts`,
`conf-toml-mode` -> `conf-toml`); other clients send file extensions (`jsx`, `ts`). One table maps
them all; an id it does not know (or an empty one) falls back to the file's extension.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)

CANONICAL = frozenset({"javascript", "typescript", "javascriptreact", "typescriptreact", "python", "java", "toml",
                       "json"})

# client id (without a `-mode` / `-ts-mode` suffix, lower case) -> canonical id
ALIASES: dict[str, str] = {
    **{lang: lang for lang in CANONICAL},
    # JavaScript
    "js": "javascript", "js2": "javascript", "js3": "javascript", "mjs": "javascript", "cjs": "javascript",
    "node": "javascript", "ecmascript": "javascript", "javascript-ts": "javascript",
    # JSX
    "jsx": "javascriptreact", "rjsx": "javascriptreact", "js-jsx": "javascriptreact", "js2-jsx": "javascriptreact",
    "react": "javascriptreact",
    # TypeScript
    "ts": "typescript", "mts": "typescript", "cts": "typescript", "typescript-ts": "typescript",
    # TSX
    "tsx": "typescriptreact", "typescript-tsx": "typescriptreact",
    # the rest
    "py": "python", "python3": "python", "python-ts": "python",
    "java-ts": "java",
    "conf-toml": "toml", "toml-ts": "toml",
    "jsonc": "json", "json5": "json", "js-json": "json", "json-ts": "json",
}

# file extension -> canonical id, when the client's id says nothing useful
EXTENSIONS: dict[str, str] = {
    "js": "javascript", "mjs": "javascript", "cjs": "javascript", "ts": "typescript", "mts": "typescript",
    "cts": "typescript", "jsx": "javascriptreact", "tsx": "typescriptreact", "py": "python", "pyi": "python",
    "java": "java", "toml": "toml", "json": "json", "jsonc": "json",
}

_unknown_seen: set[str] = set()
_unknown_lock = threading.Lock()


def canonical_id(language_id: str | None) -> str | None:
    """The canonical id for a client's language id, or None when the table does not know it."""
    key = (language_id or "").strip().lower()
    if not key:
        return None
    for suffix in ("", "-mode", "-ts-mode", "-ts"):
        if suffix and not key.endswith(suffix):
            continue
        stem = key[: len(key) - len(suffix)] if suffix else key
        if stem in ALIASES:
            return ALIASES[stem]
    return None


def from_extension(uri: str) -> str | None:
    name = uri.rsplit("/", 1)[-1]
    if "." not in name:
        return None
    return EXTENSIONS.get(name.rsplit(".", 1)[-1].lower())


def language_of(language_id: str | None, uri: str) -> str:
    """The canonical language of a document: from its id, else from its extension.

    An id the table does not know is logged once (so the table can learn it); the document's
    extension decides then. When neither is known, the client's id (or the extension) is returned
    as it is: no feature accepts it, and nothing breaks."""
    if (lang := canonical_id(language_id)) is not None:
        return lang
    key = (language_id or "").strip().lower()
    if key:
        with _unknown_lock:
            first = key not in _unknown_seen
            _unknown_seen.add(key)
        if first:
            log.warning("unknown languageId %r (for %s): using the file extension", language_id, uri)
    if (lang := from_extension(uri)) is not None:
        return lang
    return key or uri.rsplit("/", 1)[-1].rsplit(".", 1)[-1].lower()
