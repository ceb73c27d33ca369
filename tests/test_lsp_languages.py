"""Language ids as editors send them (eglot's `js`, `typescript-ts`, `conf-toml`, …) map to the
server's canonical ids; unknown or empty ids fall back to the file extension."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import pytest_lsp
from pytest_lsp import LanguageClient

from lsp_server import languages
from lsp_server.languages import canonical_id, language_of

from .lsp_helpers import SERVER, complete, make_workspace, start

CLIENT_IDS = {
    # VS Code and most LSP clients
    "javascript": "javascript", "typescript": "typescript", "javascriptreact": "javascriptreact",
    "typescriptreact": "typescriptreact", "python": "python", "java": "java", "toml": "toml", "json": "json",
    # eglot: the major mode's name without `-mode`
    "js": "javascript", "js2": "javascript", "rjsx": "javascriptreact", "js-jsx": "javascriptreact",
    "typescript-ts": "typescript", "tsx-ts": "typescriptreact", "javascript-ts": "javascript",
    "python-ts": "python", "java-ts": "java", "conf-toml": "toml", "toml-ts": "toml", "json-ts": "json",
    # file-extension style ids
    "jsx": "javascriptreact", "ts": "typescript", "tsx": "typescriptreact", "py": "python",
    # the modes themselves, and any case
    "js-mode": "javascript", "js2-mode": "javascript", "typescript-ts-mode": "typescript",
    "tsx-ts-mode": "typescriptreact", "python-ts-mode": "python", "java-ts-mode": "java",
    "conf-toml-mode": "toml", "toml-ts-mode": "toml", "rjsx-mode": "javascriptreact", "JS": "javascript",
    "TypeScript": "typescript",
}


@pytest.mark.parametrize("client_id,canonical", sorted(CLIENT_IDS.items()))
def test_client_ids_map_to_canonical_ids(client_id, canonical):
    assert canonical_id(client_id) == canonical
    assert language_of(client_id, "file:///w/whatever.txt") == canonical  # the id wins over the extension


@pytest.mark.parametrize("uri,canonical", [
    ("file:///w/a.js", "javascript"), ("file:///w/a.mjs", "javascript"), ("file:///w/a.jsx", "javascriptreact"),
    ("file:///w/a.ts", "typescript"), ("file:///w/a.tsx", "typescriptreact"), ("file:///w/a.py", "python"),
    ("file:///w/A.java", "java"), ("file:///w/minicloud.toml", "toml"), ("file:///w/abilities/X.json", "json"),
])
def test_unknown_or_empty_ids_fall_back_to_the_extension(uri, canonical):
    assert language_of("", uri) == canonical
    assert language_of(None, uri) == canonical
    assert language_of("fundamental", uri) == canonical


def test_an_unknown_id_is_logged_once(caplog):
    languages._unknown_seen.discard("web")
    with caplog.at_level(logging.WARNING, logger="lsp_server.languages"):
        for _ in range(3):
            assert language_of("web", "file:///w/page.js") == "javascript"
        assert language_of("web-mode", "file:///w/page.xyz") == "web-mode"  # nothing known: as sent
    unknown = [r for r in caplog.records if "unknown languageId" in r.getMessage()]
    assert [r.getMessage().split("'")[1] for r in unknown] == ["web", "web-mode"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("lang"))


@pytest_lsp.fixture(config=SERVER)
async def client(lsp_client: LanguageClient, request):
    await start(lsp_client, request.getfixturevalue("workspace"))
    yield
    await lsp_client.shutdown_session()


@pytest.mark.parametrize("language_id", ["js", "js-mode", "javascript-ts", ""])
async def test_eglot_language_ids_get_completions(client, workspace, language_id):
    items = await complete(client, workspace, f"eglot-{language_id or 'empty'}.js", "const h = process.env.MY|",
                           language_id)
    assert {"MYSQL_HOST", "MYSQL_PASSWORD"} <= {i.label for i in items}
    items = await complete(client, workspace, "eglot.py", 'import os\nos.getenv("|', "python-ts")
    assert "PORT" in {i.label for i in items}
    text = "db.query('SELECT * FROM |')"
    items = await complete(client, workspace, "eglot.tsx", text, "tsx-ts")
    assert {"products", "orders"} <= {i.label for i in items}


def test_the_server_decides_languages_with_the_table():
    """server.py has no language table of its own left."""
    import lsp_server.server as server

    assert not hasattr(server, "_language_of")
    assert server.language_of is language_of
