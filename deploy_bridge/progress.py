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
