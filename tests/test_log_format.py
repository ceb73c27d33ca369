"""The one text form of a log line: the CLI and the server's fallback use deploy_bridge.model; the VS Code
panel tests its own implementation against the same cases (tests/data/log-lines.json)."""

from __future__ import annotations

import json
from pathlib import Path

from deploy_bridge.model import LogLine, format_log_line

CASES = json.loads((Path(__file__).parent / "data" / "log-lines.json").read_text())["cases"]


def test_every_case_formats_as_written():
    for case in CASES:
        assert format_log_line(case["time"], case["role"], case["release"], case["line"]) == case["text"]
        assert LogLine(case["time"], case["role"], case["release"], case["line"]).to_text() == case["text"]
