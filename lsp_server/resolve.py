"""completionItem/resolve: what completion items leave out until the editor shows one of them.

Items of long lists (tables of a real-sized database) carry no documentation for clients that announce
`completionItem.resolveSupport` for it; their `data` names the feature that made them
(`{"feature": NAME, "uri": DOCUMENT, ...}`), and that feature fills them in from the current snapshot
of the document's app (`Feature.resolve_completion`). Clients that do not announce it get the
documentation inline (`Feature.lazy_documentation` says which).
"""

from __future__ import annotations

import logging
from typing import Any

from lsprotocol import types

from .index import Snapshot

log = logging.getLogger(__name__)


def resolves_documentation(capabilities: types.ClientCapabilities | None) -> bool:
    """Whether the client announced that it resolves an item's documentation lazily."""
    try:
        support = capabilities.text_document.completion.completion_item.resolve_support  # type: ignore[union-attr]
    except AttributeError:
        return False
    return support is not None and "documentation" in (support.properties or ())


def _snapshot(server, uri: str | None) -> Snapshot:
    """The current snapshot of the document's app (one Index per app where the server has several)."""
    if uri is not None and callable(snapshot_for := getattr(server, "snapshot_for", None)):
        return snapshot_for(uri)
    return server.index.snapshot


def register(server) -> None:
    """Answer completionItem/resolve, and tell the server's features whether the client resolves."""
    seen: list[Any] = [None, False]  # the client's capabilities, and what they said (read once per client)

    def lazy_documentation() -> bool:
        capabilities = server.client_capabilities
        if capabilities is not seen[0]:
            seen[:] = [capabilities, resolves_documentation(capabilities)]
        return seen[1]

    for feature in server.features:
        feature.lazy_documentation = lazy_documentation

    @server.feature(types.COMPLETION_ITEM_RESOLVE)
    def resolve(ls, item: types.CompletionItem) -> types.CompletionItem:
        data = item.data if isinstance(item.data, dict) else {}
        feature = next((f for f in ls.features if f.name == data.get("feature")), None)
        if feature is None:
            return item
        uri = data.get("uri") if isinstance(data.get("uri"), str) else None
        try:
            return feature.resolve_completion(item, data, _snapshot(ls, uri))
        except Exception:  # noqa: BLE001 - the item as it was is still an answer
            log.exception("resolve of %s failed", feature.name)
            return item
