"""A real-sized live database (2,000 tables of 25 columns) through the real server (pytest-lsp):
table completions stay light and narrowed by what is typed (isIncomplete), resolve gives the
documentation, hover and columns stay right, and a table created later appears.

The tables carry a unique prefix in the session env's database and are dropped at the end of the
module (and the persisted index refreshed), so other tests never see them."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient

from bench.lsp import create_large_schema, drop_tables

from .lsp_helpers import SERVER, capabilities, open_doc, position_of

pytestmark = pytest.mark.docker
PREFIX = f"zz{uuid.uuid4().hex[:4]}_"  # sorts after the shop's own tables


@pytest.fixture(scope="module")
def large_schema(cloud_env):
    from lsp_server.index import Index

    names: list[str] = []
    try:
        names = create_large_schema(cloud_env.cloud, "test", PREFIX)
        yield names
    finally:
        names = names or [n for n in _all_tables(cloud_env) if n.startswith(PREFIX)]
        drop_tables(cloud_env.cloud, "test", names + [f"{PREFIX}late_arrival"])
        Index(cloud_env.workspace, "test").refresh()  # the persisted index no longer holds them


def _all_tables(cloud_env) -> list[str]:
    [result] = cloud_env.cloud.db_query("test", "SHOW TABLES")
    return [row[0] for row in result.rows]


def resolving_capabilities() -> types.ClientCapabilities:
    caps = capabilities()
    caps.text_document.completion.completion_item.resolve_support = \
        types.ClientCompletionItemResolveOptions(properties=["documentation", "detail"])
    return caps


async def _start(client: LanguageClient, request, caps: types.ClientCapabilities) -> None:
    """On the env with the large schema, with these capabilities."""
    request.getfixturevalue("large_schema")
    workspace = request.getfixturevalue("cloud_env").workspace
    await client.initialize_session(types.InitializeParams(
        capabilities=caps, root_uri=workspace.as_uri(),
        workspace_folders=[types.WorkspaceFolder(uri=workspace.as_uri(), name=workspace.name)],
        initialization_options={"env": "test"}))


@pytest_lsp.fixture(config=SERVER)
async def client(lsp_client: LanguageClient, request):
    await _start(lsp_client, request, resolving_capabilities())
    yield
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(config=SERVER)
async def inline_client(lsp_client: LanguageClient, request):
    """A client that does not announce resolveSupport (Neovim 0.7's own capabilities)."""
    await _start(lsp_client, request, capabilities())
    yield
    await lsp_client.shutdown_session()


async def completion(client: LanguageClient, workspace, text: str, name: str = "big.js") -> types.CompletionList:
    text, pos = position_of(text)
    uri = open_doc(client, workspace / name, text, "javascript")
    result = await client.text_document_completion_async(types.CompletionParams(types.TextDocumentIdentifier(uri), pos))
    assert isinstance(result, types.CompletionList)
    return result


async def refresh_until(client: LanguageClient, workspace, text: str, wanted: str, seconds: float = 90):
    """Complete `text` until `wanted` is offered; save the manifest meanwhile (the index refreshes then)."""
    manifest = types.TextDocumentIdentifier((workspace / "minicloud.toml").as_uri())
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        result = await completion(client, workspace, text)
        if wanted in {i.label for i in result.items}:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{wanted} never offered: {[i.label for i in result.items][:10]}")
        client.text_document_did_save(types.DidSaveTextDocumentParams(manifest))
        await asyncio.sleep(1.0)


async def test_table_completions_are_light_narrowed_and_resolved(client, cloud_env, large_schema):
    ws = cloud_env.workspace
    await refresh_until(client, ws, f"db.query('SELECT * FROM {PREFIX}ticket_00|')", f"{PREFIX}ticket_0001")
    everything = await completion(client, ws, "db.query('SELECT * FROM |')")
    from lsp_server.features.sql import MAX_TABLE_ITEMS

    assert everything.is_incomplete and 0 < len(everything.items) <= MAX_TABLE_ITEMS  # asked again as the user types
    assert all(i.documentation is None for i in everything.items)  # light: fetched on resolve
    assert "products" in {i.label for i in everything.items}  # the shop's own tables sort first
    narrowed = await completion(client, ws, f"db.query('SELECT * FROM {PREFIX.upper()}TICKET_001|')")
    assert sorted(i.label for i in narrowed.items) == [f"{PREFIX}ticket_{n:04d}" for n in range(10, 20)]
    item = narrowed.items[0]
    assert item.text_edit.new_text == item.label and item.detail == "table (25 columns, 0 rows)"
    resolved = await client.completion_item_resolve_async(item)
    assert resolved.label == item.label
    assert f"**{item.label}**" in resolved.documentation.value
    assert "`customer_field_01`" in resolved.documentation.value and "| decimal(12,2) |" in resolved.documentation.value
    contains = await completion(client, ws, "db.query('SELECT * FROM invoice_002|')")  # inside the names
    assert {f"{PREFIX}invoice_{n:04d}" for n in range(20, 30)} <= {i.label for i in contains.items}


async def test_columns_hover_and_a_table_created_later(client, cloud_env, large_schema):
    ws = cloud_env.workspace
    table = f"{PREFIX}order_0042"
    await refresh_until(client, ws, f"db.query('SELECT * FROM {table}|')", table)
    columns = await completion(client, ws, f"db.query('SELECT o.| FROM {table} o')")
    assert len(columns.items) == 25 and not columns.is_incomplete
    assert columns.items[0].label == "id" and "payment_field_16" in {i.label for i in columns.items}
    text, pos = position_of(f"db.query('SELECT * FROM {table[:-2]}|42')")
    uri = open_doc(client, ws / "hover.js", text, "javascript")
    hover = await client.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(uri), pos))
    assert f"**{table}**" in hover.contents.value and "`ledger_field_10`" in hover.contents.value
    late = f"{PREFIX}late_arrival"
    await asyncio.to_thread(cloud_env.cloud.db_query, "test", f"CREATE TABLE `{late}` (id INT PRIMARY KEY, note TEXT)")
    result = await refresh_until(client, ws, f"db.query('SELECT * FROM {PREFIX}late|')", late)
    [item] = [i for i in result.items if i.label == late]
    resolved = await client.completion_item_resolve_async(item)
    assert "`note`" in resolved.documentation.value


async def test_a_client_without_resolve_gets_documentation_inline_within_a_budget(inline_client, cloud_env,
                                                                                    large_schema):
    from lsp_server.features.sql import INLINE_DOCS_BUDGET

    ws = cloud_env.workspace
    await refresh_until(inline_client, ws, f"db.query('SELECT * FROM {PREFIX}refund_00|')", f"{PREFIX}refund_0001")
    result = await completion(inline_client, ws, f"db.query('SELECT * FROM {PREFIX}|')")
    assert result.is_incomplete and result.items
    assert all("| column | type |" in i.documentation.value for i in result.items)
    assert sum(len(i.documentation.value) for i in result.items) <= INLINE_DOCS_BUDGET
