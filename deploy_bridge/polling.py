"""One way to wait for a condition: poll it until it holds or a deadline passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(check: Callable[[], T], timeout: float, interval: float = 0.1,
               on_wait: Callable[[], None] | None = None) -> T | None:
    """Call `check` until it returns something truthy (returned), or None once `timeout` seconds pass.

    `on_wait` runs between tries: a place to raise (cancellation, a container that exited).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            return None
        if on_wait is not None:
            on_wait()
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
