"""completionItem/resolve with a real client: Debian's Neovim 0.7, headless, configured with
docs/editors.md's recipe verbatim, plus the capability completion plugins add (nvim-cmp announces
`resolveSupport` for documentation). Items then come light, and resolve gives their documentation;
Neovim's own capabilities (no resolveSupport) get it inline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .lsp_helpers import make_workspace
from .test_lsp_neovim import MARKER, documented_block

# Run after init.lua: every client the recipe starts announces resolveSupport when MINICLOUD_RESOLVE is
# set (as a completion plugin's capabilities do), then complete a table and resolve the first item.
HARNESS = r"""
vim.lsp.set_log_level('debug')
local out = vim.env.MINICLOUD_NVIM_OUT
local result = { errors = {} }
local start_client = vim.lsp.start_client
vim.lsp.start_client = function(config)
  local caps = vim.lsp.protocol.make_client_capabilities()
  if vim.env.MINICLOUD_RESOLVE == '1' then
    caps.textDocument.completion.completionItem.resolveSupport = { properties = { 'documentation', 'detail' } }
  end
  config.capabilities = caps
  return start_client(config)
end
local ok, err = pcall(function()
  local deadline = vim.loop.now() + 60000
  vim.cmd('edit ' .. vim.fn.fnameescape(vim.env.MINICLOUD_FILE))
  local buf = vim.api.nvim_get_current_buf()
  local line = vim.api.nvim_buf_get_lines(buf, 0, 1, false)[1]
  local items = {}
  while #items == 0 and vim.loop.now() < deadline do
    local responses = vim.lsp.buf_request_sync(buf, 'textDocument/completion', {
      textDocument = { uri = vim.uri_from_bufnr(buf) }, position = { line = 0, character = #line - 3 }, -- after `pr`
    }, 2000)
    for _, response in pairs(responses or {}) do
      if response.err then table.insert(result.errors, vim.inspect(response.err)) end
      items = response.result and (response.result.items or response.result) or {}
    end
    if #items == 0 then vim.wait(100) end
  end
  result.items = items
  for _, client in pairs(vim.lsp.get_active_clients()) do
    local caps = client.server_capabilities or {}
    result.resolve_provider = caps.completionProvider and caps.completionProvider.resolveProvider
  end
  local products
  for _, item in ipairs(items) do
    if item.label == 'products' then products = item end
  end
  if products then
    local responses = vim.lsp.buf_request_sync(buf, 'completionItem/resolve', products, 5000)
    for _, response in pairs(responses or {}) do
      if response.err then table.insert(result.errors, vim.inspect(response.err)) end
      result.resolved = response.result
    end
  end
end)
if not ok then table.insert(result.errors, tostring(err)) end
local f = io.open(out, 'w'); f:write(vim.fn.json_encode(result)); f:close()
vim.cmd('qall!')
"""


def run_neovim(tmp_path: Path, resolve: bool) -> dict:
    nvim = shutil.which("nvim")
    if nvim is None:
        pytest.skip("Neovim is not installed (scripts/test installs Debian's neovim)")
    assert shutil.which("minicloud-lsp"), "minicloud-lsp is not on PATH (conftest puts the venv's bin first)"
    home = tmp_path / ("resolve" if resolve else "inline")
    app = make_workspace(home, granted=())  # a snapshot with the tables products and orders
    query = app / "query.js"
    query.write_text("const rows = db.query('SELECT * FROM pr');\n")
    (home / "init.lua").write_text(documented_block(MARKER, "lua"))
    (home / "harness.lua").write_text(HARNESS)
    out = home / "result.json"
    env = {**os.environ, "MINICLOUD_NVIM_OUT": str(out), "MINICLOUD_FILE": str(query),
           "MINICLOUD_RESOLVE": "1" if resolve else "0", "HOME": str(home),
           "XDG_CONFIG_HOME": str(home / "config"), "XDG_DATA_HOME": str(home / "data"),
           "XDG_STATE_HOME": str(home / "state"), "XDG_CACHE_HOME": str(home / "cache")}
    proc = subprocess.run([nvim, "--headless", "--clean", "-u", str(home / "init.lua"), "-c",
                           f"luafile {home / 'harness.lua'}"], cwd=app, env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert out.is_file(), f"Neovim wrote no result: {proc.stderr[-2000:]}"
    result = json.loads(out.read_text())
    log = home / "cache" / "nvim" / "lsp.log"
    result["log"] = log.read_text(errors="replace")[-3000:] if log.is_file() else "(no lsp.log)"
    assert not result["errors"], result
    return result


def documentation(item: dict) -> str:
    doc = item.get("documentation")
    return doc.get("value", "") if isinstance(doc, dict) else (doc or "")


def test_neovim_resolves_table_documentation(tmp_path: Path):
    result = run_neovim(tmp_path, resolve=True)
    assert result["resolve_provider"] is True, result
    by_label = {item["label"]: item for item in result["items"]}
    assert {"products", "orders"} <= set(by_label), result
    assert not documentation(by_label["products"]), result  # light: the documentation comes on resolve
    assert by_label["products"]["data"]["feature"] == "sql", result
    resolved = result["resolved"]
    assert resolved["label"] == "products", result
    assert "price_cents" in documentation(resolved) and "42 rows" in documentation(resolved), result


def test_neovim_without_resolve_support_gets_documentation_inline(tmp_path: Path):
    result = run_neovim(tmp_path, resolve=False)
    by_label = {item["label"]: item for item in result["items"]}
    assert "price_cents" in documentation(by_label["products"]), result
    assert "price_cents" in documentation(result["resolved"]), result  # resolve still answers
