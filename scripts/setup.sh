#!/usr/bin/env bash
# All set-up on a fresh machine: Debian packages + Docker engine, the .venv at the repo root with
# the project and its dev tools, and the VS Code client's npm packages. Idempotent.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

MINICLOUD_EXTRA_DEBS="${MINICLOUD_EXTRA_DEBS:-}" scripts/ensure-docker.sh

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  python3 -m venv .venv
fi
stamp=.venv/.minicloud-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing minicloud into .venv" >&2
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi

if [ "${MINICLOUD_SKIP_NPM:-}" != 1 ] && [ -f vscode-client/package-lock.json ]; then
  if [ ! -d vscode-client/node_modules ] || [ vscode-client/package-lock.json -nt vscode-client/node_modules ]; then
    echo "setup: npm ci in vscode-client/" >&2
    (cd vscode-client && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
