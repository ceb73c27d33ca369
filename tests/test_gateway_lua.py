"""What the gateway's Lua shares with the Python side, read from the recipe itself."""

from __future__ import annotations

import re
from pathlib import Path

import deploy_bridge
from deploy_bridge.services.histogram import BOUNDS_MS

LUA = Path(deploy_bridge.__file__).parent / "recipes" / "gateway" / "minicloud.lua"


def test_the_gateways_latency_bins_are_the_collectors():
    """A swarm canary is judged from the gateway's bins with hist_quantile: the same bounds, or a wrong p95."""
    found = re.search(r"local BOUNDS_MS = \{([^}]*)\}", LUA.read_text())
    assert found, f"{LUA} names no BOUNDS_MS"
    assert tuple(int(n) for n in re.findall(r"\d+", found.group(1))) == BOUNDS_MS

