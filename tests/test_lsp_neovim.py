"""One real editor: Debian's Neovim, headless, configured with docs/editors.md's recipe verbatim.

The recipe runs in a copy of examples/node-shop (a user's app folder, not this checkout) and starts
`minicloud-lsp` from PATH (conftest puts the virtualenv's bin folder first), as a user would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import ROOT, copy_example

DOCS = ROOT / "docs" / "editors.md"
MARKER = "<!-- neovim-0.7: tested by tests/test_lsp_neovim.py -->"


def documented_block(marker: str, lang: str) -> str:
    """The fenced block right after `marker` in docs/editors.md, verbatim."""
    text = DOCS.read_text(encoding="utf-8")
    assert marker in text, f"docs/editors.md lost its marker {marker!r}"
    m = re.compile(r"\A\s*```" + re.escape(lang) + r"\n(.*?)^```", re.S | re.M).match(text.split(marker, 1)[1])
    assert m, f"no ```{lang} block right after {marker!r} in docs/editors.md"
    return m.group(1)


# Run after init.lua (with -c, once filetype detection is on): open the app's files, ask for
# completions until they come (deadline), report which clients each buffer has.
HARNESS = r"""
vim.lsp.set_log_level('debug') -- $XDG_CACHE_HOME/nvim/lsp.log, shown when the test fails
local out = vim.env.MINICLOUD_NVIM_OUT
local result = { errors = {} }
local function finish()
  local f = io.open(out, 'w'); f:write(vim.fn.json_encode(result)); f:close()
  vim.cmd('qall!')
end
local function complete(buf, line, character, deadline)
  local labels = {}
  while #labels == 0 and vim.loop.now() < deadline do
    local responses = vim.lsp.buf_request_sync(buf, 'textDocument/completion', {
      textDocument = { uri = vim.uri_from_bufnr(buf) },
      position = { line = line, character = character },
    }, 2000)
    for _, response in pairs(responses or {}) do
      if response.err then table.insert(result.errors, vim.inspect(response.err)) end
      local items = response.result and (response.result.items or response.result) or {}
      for _, item in ipairs(items) do table.insert(labels, item.label) end
    end
    if #labels == 0 then vim.wait(100) end
  end
  return labels
end
local ok, err = pcall(function()
  local deadline = vim.loop.now() + 60000
  local bufs = {}
  for _, file in ipairs(vim.split(vim.env.MINICLOUD_FILES, '\n')) do
    vim.cmd('edit ' .. vim.fn.fnameescape(file))
    table.insert(bufs, vim.api.nvim_get_current_buf())
  end
  -- 1: the JS buffer's last line ends in `process.env.MINICLOUD_`
  local js = bufs[1]
  local last = vim.api.nvim_buf_line_count(js) - 1
  result.js = complete(js, last, #vim.api.nvim_buf_get_lines(js, last, last + 1, false)[1], deadline)
  -- 2: minicloud.toml, right after `runtime = "`
  local toml = bufs[2]
  for i, text in ipairs(vim.api.nvim_buf_get_lines(toml, 0, -1, false)) do
    local col = text:find('runtime = "', 1, true)
    if col then result.toml = complete(toml, i - 1, col + #'runtime = "' - 1, deadline) end
  end
  result.buffers = {}
  for _, buf in ipairs(bufs) do
    local ids = {}
    for id, client in pairs(vim.lsp.buf_get_clients(buf)) do
      table.insert(ids, { id = id, name = client.name, root = client.config.root_dir })
    end
    table.insert(result.buffers, { file = vim.api.nvim_buf_get_name(buf), clients = ids })
  end
  result.servers = 0
  for _, client in pairs(vim.lsp.get_active_clients()) do
    if client.name == 'minicloud' then result.servers = result.servers + 1 end
  end
end)
if not ok then table.insert(result.errors, tostring(err)) end
finish()
"""


def test_neovim_documented_recipe(tmp_path: Path):
    nvim = shutil.which("nvim")
    if nvim is None:
        pytest.skip("Neovim is not installed (scripts/test installs Debian's neovim)")
    assert shutil.which("minicloud-lsp"), "minicloud-lsp is not on PATH (conftest puts the venv's bin first)"
    app = copy_example("node-shop", tmp_path)
    check = app / "src" / "check.js"
    check.parent.mkdir()
    check.write_text("const url = process.env.MINICLOUD_")
    init = tmp_path / "init.lua"
    init.write_text(documented_block(MARKER, "lua"))
    harness = tmp_path / "harness.lua"
    harness.write_text(HARNESS)
    out = tmp_path / "result.json"
    # Three buffers of the same app: a JS file in a subfolder, the manifest, and server.js.
    files = [check, app / "minicloud.toml", app / "server.js"]
    env = {**os.environ, "MINICLOUD_NVIM_OUT": str(out), "MINICLOUD_FILES": "\n".join(map(str, files)),
           "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_STATE_HOME": str(tmp_path / "state"),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.run([nvim, "--headless", "--clean", "-u", str(init), "-c", f"luafile {harness}"],
                          cwd=app, env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert out.is_file(), f"Neovim wrote no result: {proc.stderr[-2000:]}"
    result = json.loads(out.read_text())
    log = tmp_path / "cache" / "nvim" / "lsp.log"
    result["log"] = log.read_text(errors="replace")[-3000:] if log.is_file() else "(no lsp.log)"
    assert not result["errors"], result
    assert {"MINICLOUD_ENV", "MINICLOUD_URL"} <= set(result["js"]), result
    assert {"nodejs", "python", "java"} <= set(result["toml"]), result
    # one server for the app: every buffer has exactly one client, the same one, rooted at the app
    clients = [b["clients"] for b in result["buffers"]]
    assert all(len(c) == 1 for c in clients), clients
    assert len({c[0]["id"] for c in clients}) == 1, clients
    assert clients[0][0]["root"] in {str(app), str(app.resolve())}, clients
    assert result["servers"] == 1, result
