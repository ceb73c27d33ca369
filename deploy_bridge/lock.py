"""One changing verb per app and env at a time (`fcntl` lock files under the instance's home)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import DeployBusy


class EnvLock:
    """`with EnvLock(folder, app, env).hold("deploy"):` — a second holder is refused with who holds it.

    The lock is the kernel's (it ends with the process, however it ends); the file's text only says who
    holds it, and only the holder writes or clears it.
    """

    def __init__(self, folder: Path, app: str, env: str) -> None:
        self.path = folder / f"{app}-{env}.lock"
        self.app, self.env = app, env

    def holder(self) -> str | None:
        """Who holds the lock now, or None when nobody does."""
        with contextlib.suppress(OSError):
            fd = os.open(self.path, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return None
            except BlockingIOError:
                return self.path.read_text().strip() or "another process"
            finally:
                os.close(fd)
        return None

    @contextlib.contextmanager
    def hold(self, verb: str) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self.path.read_text().strip() or "another process"
                raise DeployBusy(f"{self.app}/{self.env} is busy: {holder}",
                                 hint="wait for it to finish, then run the command again") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{verb} by pid {os.getpid()} since {time.strftime('%H:%M:%S')}".encode(), 0)
            try:
                yield
            finally:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)  # ours to clear: we hold it
        finally:
            os.close(fd)
