"""Progress and cancellation for long verbs, shared by the CLI (terminal) and the server ($/progress)."""

from __future__ import annotations

import sys
import threading
import time
from typing import Protocol

from .errors import Cancelled


class Progress(Protocol):
    def report(self, message: str, percentage: int | None = None) -> None: ...

    def check_cancelled(self) -> None:
        """Raise `Cancelled` if the user asked to stop."""


class NullProgress:
    def __init__(self, cancel: threading.Event | None = None) -> None:
        self.cancel = cancel or threading.Event()

    def report(self, message: str, percentage: int | None = None) -> None:
        pass

    def check_cancelled(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("cancelled")


class TerminalProgress(NullProgress):
    """Prints one line per step on stderr, with the elapsed time (keeps stdout for results)."""

    def __init__(self, stream=None, cancel: threading.Event | None = None) -> None:
        super().__init__(cancel)
        self.stream = stream or sys.stderr
        self.started = time.monotonic()

    def report(self, message: str, percentage: int | None = None) -> None:
        pct = f"{percentage:3d}% " if percentage is not None else "     "
        self.stream.write(f"[{time.monotonic() - self.started:5.1f}s] {pct}{message}\n")
        self.stream.flush()


class BarProgress(NullProgress):
    """A progress bar on a terminal (rich): the bar follows the percentages, the text the latest step.

    Steps without a percentage (build output) change the text only. `close()` ends the bar and leaves
    the last step printed.
    """

    def __init__(self, stream=None, cancel: threading.Event | None = None) -> None:
        super().__init__(cancel)
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

        self.console = Console(file=stream or sys.stderr)
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                            TimeElapsedColumn(), console=self.console, transient=False)
        self.task = self.bar.add_task("starting", total=100)
        self.started = False

    def report(self, message: str, percentage: int | None = None) -> None:
        if not self.started:
            self.bar.start()
            self.started = True
        text = message if len(message) <= 70 else message[:67] + "..."
        if percentage is not None:
            self.bar.update(self.task, completed=percentage, description=text)
        else:
            self.bar.update(self.task, description=text)

    def close(self) -> None:
        if self.started:
            self.bar.stop()
            self.started = False


def for_terminal(stream=None, quiet: bool = False, machine_output: bool = False) -> NullProgress:
    """The CLI's progress: nothing when quiet, a bar on a terminal, plain lines when piped or --json."""
    stream = stream or sys.stderr
    if quiet:
        return NullProgress()
    if not machine_output and getattr(stream, "isatty", lambda: False)():
        return BarProgress(stream)
    return TerminalProgress(stream)
