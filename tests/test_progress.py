"""The CLI's progress: a bar on a terminal, plain lines when piped or with --json, nothing with -q."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

from deploy_bridge.progress import BarProgress, NullProgress, TerminalProgress, for_terminal


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_kind_of_progress_follows_the_output():
    assert isinstance(for_terminal(FakeTerminal()), BarProgress)
    assert isinstance(for_terminal(io.StringIO()), TerminalProgress)
    assert isinstance(for_terminal(FakeTerminal(), machine_output=True), TerminalProgress)
    assert type(for_terminal(FakeTerminal(), quiet=True)) is NullProgress


def test_the_bar_shows_the_percentage_and_the_step():
    out = FakeTerminal()
    bar = BarProgress(out)
    bar.console.width = 100
    bar.report("building release 1", 40)
    bar.report("release 1: Step 4/13 : COPY app/ ./")
    bar.close()
    text = out.getvalue()
    assert "40%" in text and "Step 4/13" in text


def test_piped_progress_is_plain_lines(tmp_path: Path):
    out = io.StringIO()
    progress = TerminalProgress(out)
    progress.report("starting release 1", 70)
    progress.report("switching the gateway", 90)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "70% starting release 1" in lines[0] and "\x1b[" not in out.getvalue()


def test_an_error_on_a_real_terminal_is_one_clear_line(tmp_path: Path):
    """On a pseudo-terminal (where the bar would be drawn), a failing verb still ends in its message."""
    main, child = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "deploy_bridge.cli", "abilities", "grant", "test", "nosuch"],
                            stdin=child, stdout=child, stderr=child, env=env, cwd=tmp_path)
    os.close(child)
    proc.wait(timeout=60)
    output = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.close(main)
    # no workspace there: one clear line, no traceback, whatever the terminal
    assert b"minicloud.toml" in output and b"Traceback" not in output
