"""Shared pieces of the language server tests: a workspace with a persisted index, a client set-up."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

ROOT = Path(__file__).resolve().parent.parent
SERVER = ClientServerConfig(server_command=[sys.executable, "-m", "lsp_server"])

TABLES = {
    "products": {"name": "products", "columns": [["id", "int"], ["name", "varchar(100)"], ["price_cents", "int"]],
                 "rows": 42},
    "orders": {"name": "orders", "columns": [["id", "int"], ["product_id", "int"], ["qty", "int"]], "rows": 7},
}


def make_workspace(folder: Path, granted: tuple[str, ...] = ("FACE_TO_FACE_PAYMENT",)) -> Path:
    """A copy of the node example, signed packages, and a snapshot of an env as the server saved it."""
    from codegen.abilities import grant

    ws = folder / "shop"
    shutil.copytree(ROOT / "examples" / "node-shop", ws, ignore=shutil.ignore_patterns(".minicloud", "node_modules",
                                                                                         "abilities"))
    if granted:
        grant(ws, "test", list(granted))
    index = ws / ".minicloud" / "index-test.json"
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text(json.dumps({"env": "test", "app": "shop", "state": "stopped", "tables": TABLES,
                                 "variables": {}, "releases": [], "granted": [], "updated": 1.0}))
    return ws


def capabilities(logs: bool = True) -> types.ClientCapabilities:
    return types.ClientCapabilities(
        window=types.WindowClientCapabilities(work_done_progress=True),
        workspace=types.WorkspaceClientCapabilities(apply_edit=True),
        text_document=types.TextDocumentClientCapabilities(
            completion=types.CompletionClientCapabilities(completion_item=types.ClientCompletionItemOptions(
                snippet_support=False, label_details_support=True,
                documentation_format=[types.MarkupKind.Markdown, types.MarkupKind.PlainText])),
            hover=types.HoverClientCapabilities(content_format=[types.MarkupKind.Markdown]),
            code_action=types.CodeActionClientCapabilities(code_action_literal_support=types.ClientCodeActionLiteralOptions(
                code_action_kind=types.ClientCodeActionKindOptions(value_set=[types.CodeActionKind.Refactor,
                                                                            types.CodeActionKind.RefactorRewrite])))),
        experimental={"minicloudLogs": True, "minicloudChanged": True} if logs else None,
    )


async def start(client: LanguageClient, workspace: Path, logs: bool = True, env: str = "test") -> None:
    await client.initialize_session(types.InitializeParams(
        capabilities=capabilities(logs), root_uri=workspace.as_uri(),
        workspace_folders=[types.WorkspaceFolder(uri=workspace.as_uri(), name=workspace.name)],
        initialization_options={"env": env}))


def open_doc(client: LanguageClient, path: Path, text: str, language: str) -> str:
    uri = path.as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri=uri, language_id=language, version=1, text=text)))
    return uri


def position_of(text: str, marker: str = "|") -> tuple[str, types.Position]:
    """The text without the marker, and the marker's position (UTF-16)."""
    offset = text.index(marker)
    before = text[:offset]
    line = before.count("\n")
    column = len(before[before.rfind("\n") + 1:].encode("utf-16-le")) // 2
    return text.replace(marker, "", 1), types.Position(line, column)


async def complete(client: LanguageClient, workspace: Path, name: str, text: str, language: str) -> list[types.CompletionItem]:
    text, pos = position_of(text)
    uri = open_doc(client, workspace / name, text, language)
    result = await client.text_document_completion_async(types.CompletionParams(
        types.TextDocumentIdentifier(uri), pos))
    return result.items if isinstance(result, types.CompletionList) else (result or [])


async def wait_for(predicate, seconds: float = 30, what: str = "condition"):
    """Poll `predicate` on the event loop until it gives something true (returned), or fail at the deadline."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        result = predicate()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
