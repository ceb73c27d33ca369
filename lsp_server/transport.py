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
import json
import logging
import os
import re
import select
import termios
import time
from typing import BinaryIO

from .pygls_compat import frame_header

log = logging.getLogger(__name__)

BULK_RETRY_SECONDS = 0.002


class PipeReader:
    """pygls' AsyncReader over a stream reader attached to stdin, that frames messages itself.

    pygls' loop trusts the client's framing: after one message with a wrong `Content-Length` (too
    small, too large, not a number, missing) every following header line is glued to leftover body
    bytes, and the server never answers again. Here the framing is checked before pygls sees it:
    a header block without a valid length, or a body that is not valid JSON, is logged and dropped,
    and reading resumes at the next `Content-Length:` header line, searched in the bytes already
    consumed (a too-large length must not swallow the messages after it). pygls is then fed one
    canonical message at a time (see `pygls_compat.frame_header`)."""

    CHUNK = 1 << 16
    MAX_GARBAGE = 1 << 20  # bytes kept while looking for a header; beyond, the older ones are dropped

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self._stream = stream
        self._buf = bytearray()
        self._eof = False
        self._state = "header"  # what pygls asks for next: header, blank line, body
        self._body = b""

    @classmethod
    async def attach(cls, stdin: BinaryIO) -> PipeReader:
        loop = asyncio.get_running_loop()
        stream = asyncio.StreamReader(limit=1 << 24, loop=loop)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream, loop=loop), stdin)
        return cls(stream)

    # ---- what pygls' run_async calls
    async def readline(self) -> bytes:
        if self._state == "blank":
            self._state = "body"
            return b"\r\n"
        body = await self.read_message()
        if body is None:
            return b""  # end of input: pygls ends its loop
        self._body = body
        self._state = "blank"
        return frame_header(len(body))

    async def readexactly(self, n: int) -> bytes:
        body, self._body, self._state = self._body, b"", "header"
        if len(body) != n:  # pygls asked for something else than we framed: never guess
            log.error("transport out of step with pygls: framed %d bytes, asked for %d", len(body), n)
            return b""
        return body

    # ---- framing
    async def _fill(self) -> bool:
        """Read more input into the buffer; False at end of input."""
        if self._eof:
            return False
        try:
            chunk = await self._stream.read(self.CHUNK)
        except (ConnectionError, OSError):
            chunk = b""
        if not chunk:
            self._eof = True
            return False
        self._buf += chunk
        return True

    def _drop(self, n: int, reason: str) -> None:
        dropped = bytes(self._buf[:n])
        del self._buf[:n]
        if dropped.strip():
            preview = dropped[:200] + (b"..." if len(dropped) > 200 else b"")
            log.warning("dropped %d bytes from the client (%s): %r", len(dropped), reason, preview)

    async def read_message(self) -> bytes | None:
        """The next body that is valid JSON, or None at end of input."""
        while True:
            # 1. a Content-Length header line: anything before it (but other headers) is not a message
            m = CONTENT_LENGTH.search(self._buf)
            if m is None:
                if len(self._buf) > self.MAX_GARBAGE:
                    self._drop(len(self._buf) - 64, "no Content-Length header")
                if not await self._fill():
                    self._drop(len(self._buf), "end of input inside a message")
                    return None
                continue
            start = _header_block_start(self._buf, m.start())
            if start > 0:
                self._drop(start, "no valid Content-Length header")
                continue
            # 2. the rest of the header block, up to the blank line
            pos = m.end()
            while True:
                if (blank := BLANK_LINE.match(self._buf, pos)) is not None:
                    body_at = blank.end()
                    break
                if (line := HEADER_LINE.match(self._buf, pos)) is not None:
                    pos = line.end()
                    continue
                if b"\n" in self._buf[pos:]:  # a complete line that is no header: a broken block
                    body_at = None
                    break
                if not await self._fill():
                    self._drop(len(self._buf), "end of input inside a header")
                    return None
            if body_at is None:
                self._drop(m.end(), "malformed header block")
                continue
            # 3. the body; a header line inside it means the declared length was wrong
            length = int(m.group(1))
            end = body_at + length
            scanned = body_at  # header lines are searched in the new bytes only (and a line's worth before)
            broken = None
            while True:
                inner = CONTENT_LENGTH.search(self._buf, max(body_at, scanned - 64), min(end, len(self._buf)))
                if inner is not None:
                    broken = _header_block_start(self._buf, inner.start(), lowest=body_at)
                    break
                scanned = len(self._buf)
                if scanned >= end:
                    break
                if not await self._fill():
                    self._drop(len(self._buf), "end of input inside a body")
                    return None
            if broken is not None:
                # JSON cannot hold a raw line break in a string, nor a bare word outside one: this
                # header line is the next message, and the one declared before it is lost
                self._drop(broken, f"Content-Length {length} runs into the next message")
                continue
            body = bytes(self._buf[body_at:end])
            try:
                json.loads(body)
            except (ValueError, RecursionError):
                # search the consumed bytes for the next header: drop only this header line
                self._drop(m.end(), f"body of Content-Length {length} is not valid JSON")
                continue
            del self._buf[:end]
            return body


CONTENT_LENGTH = re.compile(rb"Content-Length:[ \t]*(\d+)[ \t]*\r?\n", re.I)
HEADER_LINE = re.compile(rb"[A-Za-z][A-Za-z0-9-]*:[^\r\n]*\r?\n")
BLANK_LINE = re.compile(rb"\r?\n")


def _header_block_start(buf: bytes | bytearray, at: int, lowest: int = 0) -> int:
    """Where the header block holding the header line at `at` starts: other header lines (such as
    Content-Type) directly before it belong to the same message."""
    start = at
    while start > lowest:
        prev = max(lowest, buf.rfind(b"\n", 0, start - 1) + 1)
        if prev == start or HEADER_LINE.fullmatch(buf, prev, start) is None \
                or CONTENT_LENGTH.match(buf, prev, start) is not None:
            break
        start = prev
    return start


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
