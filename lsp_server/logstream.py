"""Live logs for the editor's log panel: `minicloud/logs` notifications, batched.

Each stream is the CLI's own `minicloud logs ENV -f --json` in a child process (the same function
the terminal uses), so the heavy work — demultiplexing Docker's log frames, thousands of lines a
second — never competes with completions for this process's GIL. Its JSON lines are not even
parsed here: a task flushes them at most every 50 ms into one notification whose body is built by
joining the raw lines. When the client cannot keep up, the oldest lines are dropped and counted
instead of growing memory.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

FLUSH_SECONDS = 0.05
MAX_BUFFERED = 50_000
MAX_PER_NOTIFICATION = 1_000  # several small notifications keep the loop responsive


def logs_command(workspace: Path, env: str, role: str | None, since: str | None, tail: int | None) -> list[str]:
    cmd = [sys.executable, "-m", "deploy_bridge.cli", "--workspace", str(workspace), "--json", "--quiet",
           "logs", env, "--follow"]
    if tail is not None:
        cmd += ["--tail", str(tail)]
    if since:
        cmd += ["--since", since]
    if role:
        cmd += ["--role", role]
    return cmd


class LogStream:
    """One `minicloud logs -f` child; `send(stream_id, raw_json_lines, dropped)` delivers batches."""

    def __init__(self, stream_id: str, command: list[str], send: Callable[[str, list[bytes], int], None]) -> None:
        self.id = stream_id
        self.command = command
        self._send = send
        self._buffer: collections.deque[bytes] = collections.deque()
        self._dropped = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._tasks: list[asyncio.Task] = []
        self._done = asyncio.Event()

    async def start(self) -> None:
        # niced: under a log flood the CPU goes to the editor's requests first
        self._proc = await asyncio.create_subprocess_exec(*self.command, stdout=asyncio.subprocess.PIPE,
                                                          stderr=asyncio.subprocess.PIPE, limit=1 << 20,
                                                          preexec_fn=lambda: os.nice(10))
        self._tasks = [asyncio.ensure_future(self._read()), asyncio.ensure_future(self._flush_loop())]

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        partial = b""
        while chunk := await self._proc.stdout.read(1 << 16):
            # whole chunks, split in C: reading line by line would cost the loop a step per line
            *lines, partial = (partial + chunk).split(b"\n")
            self._buffer.extend(line for line in lines if line)
            overflow = len(self._buffer) - MAX_BUFFERED
            for _ in range(max(0, overflow)):
                self._buffer.popleft()
            self._dropped += max(0, overflow)
        if partial.strip():
            self._buffer.append(partial)
        error = b""
        if self._proc.stderr is not None:
            error = (await self._proc.stderr.read())[-2000:]
        if await self._proc.wait() not in (0, -15) and error:
            message = error.decode(errors="replace").strip().replace("minicloud: ", "")
            self._buffer.append(json.dumps({"time": "", "role": "minicloud", "release": None,
                                            "line": f"log stream ended: {message}"}).encode())
        self._done.set()

    def _take(self) -> tuple[list[bytes], int]:
        n = min(len(self._buffer), MAX_PER_NOTIFICATION)
        batch = [self._buffer.popleft() for _ in range(n)]
        dropped, self._dropped = self._dropped, 0
        return batch, dropped

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            batch, dropped = self._take()
            while batch or dropped:
                self._send(self.id, batch, dropped)
                await asyncio.sleep(0)  # let waiting requests (completions) in between two sends
                batch, dropped = self._take() if len(self._buffer) >= MAX_PER_NOTIFICATION else ([], 0)
            if self._done.is_set() and not self._buffer:
                return

    def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.terminate()


class LogStreams:
    def __init__(self) -> None:
        self._streams: dict[str, LogStream] = {}
        self._ids = itertools.count(1)

    async def open(self, command: list[str], send: Callable[[str, list[bytes], int], None]) -> str:
        stream = LogStream(f"logs-{next(self._ids)}", command, send)
        await stream.start()
        self._streams[stream.id] = stream
        return stream.id

    def close(self, stream_id: str) -> bool:
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return False
        stream.stop()
        return True

    def close_all(self) -> None:
        for stream_id in list(self._streams):
            self.close(stream_id)
