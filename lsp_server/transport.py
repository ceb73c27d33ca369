"""Stdio for the language server, on the event loop, with answers ahead of log traffic.

pygls' stock stdio transport reads each header line and body in a worker thread and writes with a
blocking `write` + `flush`. Under a log flood both hurt an editor's requests: every request costs
three thread hand-offs on a busy machine, and a large log notification blocks the event loop until
the editor has drained the pipe, while a completion answer waits behind it.

Here stdin is an asyncio stream and stdout a non-blocking pipe with two queues: everything pygls
writes (answers, diagnostics, progress) goes first; log notifications (`write_bulk`) go when
nothing else waits. A message is never interleaved with another: only whole messages are queued
and the one being written is finished first.
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import fcntl
import os
import select
import termios
import time
from typing import BinaryIO

BULK_RETRY_SECONDS = 0.002


class PipeReader:
    """pygls' AsyncReader over a stream reader attached to stdin."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self._stream = stream

    @classmethod
    async def attach(cls, stdin: BinaryIO) -> PipeReader:
        loop = asyncio.get_running_loop()
        stream = asyncio.StreamReader(limit=1 << 24, loop=loop)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream, loop=loop), stdin)
        return cls(stream)

    async def readline(self) -> bytes:
        try:
            return await self._stream.readline()
        except (asyncio.IncompleteReadError, ValueError):
            return b""

    async def readexactly(self, n: int) -> bytes:
        try:
            return await self._stream.readexactly(n)
        except asyncio.IncompleteReadError:
            return b""  # the editor went away mid-message: pygls ends the loop on an empty body


class PriorityPipeWriter:
    """pygls' Writer over a non-blocking fd; `write` (protocol messages) before `write_bulk` (logs)."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self._fd = fd
        self._loop = loop
        os.set_blocking(fd, False)
        self._urgent: collections.deque[bytes] = collections.deque()
        self._bulk: collections.deque[bytes] = collections.deque()
        self._current = memoryview(b"")
        self.bulk_bytes = 0  # queued log bytes not yet written: the log streams hold back above a limit
        self._waiting = False
        self._closed = False
        self._retry: asyncio.TimerHandle | None = None

    def write(self, data: bytes) -> None:
        self._urgent.append(data)
        self._pump()

    def write_bulk(self, data: bytes) -> None:
        self._bulk.append(data)
        self.bulk_bytes += len(data)
        self._pump()

    def _unread(self) -> int:
        """Bytes the editor has not read yet (0 where stdout is not a pipe)."""
        count = array.array("i", [0])
        try:
            fcntl.ioctl(self._fd, termios.FIONREAD, count, True)
        except OSError:
            return 0
        return count[0]

    def _next(self) -> bool:
        if self._urgent:
            self._current = memoryview(self._urgent.popleft())
        elif self._bulk:
            if self._unread() > 0:
                # the editor has not read the last log message: an answer written now would queue
                # behind it, and behind this one too if it went in. Look again shortly.
                if self._retry is None:
                    self._retry = self._loop.call_later(BULK_RETRY_SECONDS, self._on_retry)
                return False
            data = self._bulk.popleft()
            self.bulk_bytes -= len(data)
            self._current = memoryview(data)
        else:
            return False
        return True

    def _pump(self) -> None:
        if self._waiting or self._closed:
            return  # the writable callback will continue
        while self._current or self._next():
            try:
                written = os.write(self._fd, self._current)
            except BlockingIOError:
                written = 0
            except (BrokenPipeError, ConnectionResetError):
                self._closed = True
                self._urgent.clear()
                self._bulk.clear()
                self._current = memoryview(b"")
                return
            self._current = self._current[written:]
            if self._current:  # the pipe is full: continue when the editor has read
                self._waiting = True
                self._loop.add_writer(self._fd, self._on_writable)
                return

    def _on_retry(self) -> None:
        self._retry = None
        self._pump()

    def _on_writable(self) -> None:
        self._loop.remove_writer(self._fd)
        self._waiting = False
        self._pump()

    def close(self) -> None:
        """Write what is queued (the answer to `shutdown` among it), blocking, then stop."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._waiting:
            with contextlib.suppress(Exception):
                self._loop.remove_writer(self._fd)
            self._waiting = False
        deadline = time.monotonic() + 5.0  # an editor that stopped reading must not keep us alive
        while not self._closed and (self._current or self._next()) and time.monotonic() < deadline:
            try:
                written = os.write(self._fd, self._current)
            except BlockingIOError:
                select.select([], [self._fd], [], 0.5)
                continue
            except OSError:
                break
            self._current = self._current[written:]
        self._closed = True
