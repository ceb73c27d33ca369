"""What the server does before answering `initialize` must not load the Docker SDK (~100 ms here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .lsp_helpers import make_workspace

PROBE = """
import sys
from pathlib import Path
from lsp_server.index import Index
index = Index(Path(sys.argv[1]), "test")
snap = index.refresh_local()
print(sorted(snap.variables), len(snap.signed_packages))
print("docker loaded" if "docker" in sys.modules else "docker not loaded")
"""


def test_the_local_index_needs_no_docker_sdk(tmp_path: Path):
    ws = make_workspace(tmp_path)
    out = subprocess.run([sys.executable, "-c", PROBE, str(ws)], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    assert "MYSQL_HOST" in out and "docker not loaded" in out, out
