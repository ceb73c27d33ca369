"""The baseline: a pygls server that answers every completion with one fixed item."""

from lsprotocol import types
from pygls.lsp.server import LanguageServer

server = LanguageServer("empty", "0")


@server.feature(types.TEXT_DOCUMENT_COMPLETION)
def completion(ls: LanguageServer, params: types.CompletionParams) -> types.CompletionList:
    return types.CompletionList(is_incomplete=False, items=[types.CompletionItem(label="item")])


if __name__ == "__main__":
    server.start_io()
