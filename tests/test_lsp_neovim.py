"""One real editor: Debian's Neovim, headless, attached to minicloud-lsp, gets completions back."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .lsp_helpers import make_workspace

# Neovim 0.7 has no vim.lsp.start: start a client and attach the buffer by hand.
INIT_LUA = r"""
local out = vim.env.MINICLOUD_NVIM_OUT
local function finish(result)
  local f = io.open(out, 'w'); f:write(vim.json and vim.json.encode(result) or vim.fn.json_encode(result)); f:close()
  vim.cmd('qall!')
end
local client_id = vim.lsp.start_client({
  name = 'minicloud',
  cmd = { vim.env.MINICLOUD_PYTHON, '-m', 'lsp_server' },
  root_dir = vim.env.MINICLOUD_ROOT,
  init_options = { env = 'test' },
})
vim.cmd('edit ' .. vim.env.MINICLOUD_FILE)
vim.lsp.buf_attach_client(0, client_id)
local line = vim.api.nvim_buf_line_count(0) - 1
local text = vim.api.nvim_buf_get_lines(0, line, line + 1, false)[1]
local labels = {}
for _ = 1, 100 do
  local responses = vim.lsp.buf_request_sync(0, 'textDocument/completion', {
    textDocument = vim.lsp.util.make_text_document_params(),
    position = { line = line, character = #text },
  }, 2000)
  for _, response in pairs(responses or {}) do
    local items = response.result and (response.result.items or response.result) or {}
    for _, item in ipairs(items) do table.insert(labels, item.label) end
  end
  if #labels > 0 then break end
  vim.wait(100)
end
finish({ labels = labels })
"""


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("minicloud.toml", '[app]\nruntime = "', {"nodejs", "python", "java"}),
    ("server.js", "const url = process.env.MINICLOUD_", {"MINICLOUD_ENV", "MINICLOUD_URL"}),
])
def test_neovim_gets_completions(tmp_path: Path, name: str, text: str, expected: set[str]):
    nvim = shutil.which("nvim")
    if nvim is None:
        pytest.skip("Neovim is not installed (scripts/test installs Debian's neovim)")
    ws = make_workspace(tmp_path, granted=())
    target = ws / "editor" / name
    target.parent.mkdir(exist_ok=True)
    target.write_text(text)
    init = tmp_path / "init.lua"
    init.write_text(INIT_LUA)
    out = tmp_path / "result.json"
    env = {"MINICLOUD_NVIM_OUT": str(out), "MINICLOUD_PYTHON": sys.executable, "MINICLOUD_ROOT": str(ws),
           "MINICLOUD_FILE": str(target), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = subprocess.run([nvim, "--headless", "--clean", "-u", str(init)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert out.is_file(), f"Neovim wrote no result: {proc.stderr[-2000:]}"
    labels = set(json.loads(out.read_text())["labels"])
    assert expected <= labels
