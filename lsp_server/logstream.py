"""Live logs for the editor's log panel: `minicloud/logs` notifications, batched.

Each stream is the CLI's own `minicloud logs ENV -f --json` in a child process (the same function
the terminal uses), so the heavy work — demultiplexing Docker's log frames, thousands of lines a
second — never competes with completions for this process's GIL. Its JSON lines are not even
parsed here.

The child's output is pulled, not pushed: every 30 ms a task drains the pipe (split in C) and
sends what came in notifications whose bodies join the raw lines. However the child writes, a
flood costs the event loop about thirty short steps a second, not one wake-up per write. The pipe
is enlarged so that the child does not block in between. When the editor cannot keep up, the
oldest lines are dropped and counted instead of growing memory.

A stream belongs to one app (one server answers several): `LogStreams.open(..., app=name)` hands
the app's name to every delivery, and the server puts it in each notification.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

FLUSH_SECONDS = 0.03
MAX_BUFFERED = 50_000
MAX_PER_NOTIFICATION = 1000  # ~130 KB: one notification per step at 10k lines/s
PIPE_BYTES = 1 << 20  # a slow step or two of a 10k lines/s flood outgrows a default (64 KiB) pipe
MAX_READ_PER_STEP = 1 << 20  # a burst is read over several steps, so that requests get in between (~30 MB/s)


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


def _background_priority() -> None:
    """In the child: run only on CPU time nobody else wants (SCHED_IDLE), so that under a flood
    the editor's requests — this server, the editor itself — are never queued behind log work."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)


def _enlarge_pipe(fd: int) -> None:
    with contextlib.suppress(OSError, AttributeError, ImportError):  # Linux only; a smaller pipe still works
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


def _drain(fd: int, limit: int) -> tuple[bytes, bool]:
    """What the non-blocking `fd` holds now (up to `limit` bytes), and whether it reached its end."""
    chunks, size = [], 0
    while size < limit:
        try:
            chunk = os.read(fd, 1 << 18)
        except BlockingIOError:
            return b"".join(chunks), False
        except OSError:
            return b"".join(chunks), True
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


class LogStream:
    """One `minicloud logs -f` child; `send(stream_id, raw_json_lines, dropped)` delivers batches."""

    def __init__(self, stream_id: str, command: list[str], send: Callable[[str, list[bytes], int], None],
                 congested: Callable[[], bool] = lambda: False, app: str | None = None) -> None:
        self.id = stream_id
        self.app = app  # the app whose logs these are
        self.command = command
        self._send = send
        self._congested = congested
        self._buffer: collections.deque[bytes] = collections.deque()
        self._partial = b""
        self._error = b""
        self._dropped = 0
        self._proc: subprocess.Popen | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        # at idle priority: under a log flood the CPU goes to the editor's requests first
        self._proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, preexec_fn=_background_priority)
        for pipe in (self._proc.stdout, self._proc.stderr):
            assert pipe is not None
            os.set_blocking(pipe.fileno(), False)
        _enlarge_pipe(self._proc.stdout.fileno())
        self._task = asyncio.ensure_future(self._run())

    def _pull(self) -> bool:
        """Move what the child wrote into the buffer; True once its output has ended."""
        assert self._proc is not None and self._proc.stdout is not None and self._proc.stderr is not None
        data, ended = _drain(self._proc.stdout.fileno(), MAX_READ_PER_STEP)
        if data:
            *lines, self._partial = (self._partial + data).split(b"\n")
            self._buffer.extend(line for line in lines if line)
        if ended and self._partial.strip():
            self._buffer.append(self._partial)
            self._partial = b""
        error, _ = _drain(self._proc.stderr.fileno(), 1 << 16)
        self._error = (self._error + error)[-2000:]
        overflow = len(self._buffer) - MAX_BUFFERED
        for _ in range(max(0, overflow)):
            self._buffer.popleft()
        self._dropped += max(0, overflow)
        return ended

    def _take(self) -> tuple[list[bytes], int]:
        n = min(len(self._buffer), MAX_PER_NOTIFICATION)
        batch = [self._buffer.popleft() for _ in range(n)]
        dropped, self._dropped = self._dropped, 0
        return batch, dropped

    async def _run(self) -> None:
        ended = False
        while not ended or self._buffer:
            await asyncio.sleep(FLUSH_SECONDS)
            if not ended:
                ended = self._pull()
                if ended:
                    await self._report_exit()
            if self._congested():
                continue  # the editor has not read what was sent: lines wait here, the oldest drop
            batch, dropped = self._take()
            while batch or dropped:
                self._send(self.id, batch, dropped)
                await asyncio.sleep(0)  # let waiting requests (completions) in between two sends
                more = len(self._buffer) >= MAX_PER_NOTIFICATION and not self._congested()
                batch, dropped = self._take() if more else ([], 0)
        self._close_pipes()

    async def _report_exit(self) -> None:
        assert self._proc is not None
        code = await asyncio.get_running_loop().run_in_executor(None, self._proc.wait)
        with contextlib.suppress(OSError):
            assert self._proc.stderr is not None
            self._error = (self._error + _drain(self._proc.stderr.fileno(), 1 << 16)[0])[-2000:]
        if code not in (0, -15) and self._error:
            message = self._error.decode(errors="replace").strip().replace("minicloud: ", "")
            self._buffer.append(json.dumps({"time": "", "role": "minicloud", "release": None,
                                            "line": f"log stream ended: {message}"}).encode())

    def _close_pipes(self) -> None:
        if self._proc is not None:
            for pipe in (self._proc.stdout, self._proc.stderr):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.terminate()


class LogStreams:
    def __init__(self, congested: Callable[[], bool] = lambda: False) -> None:
        self._congested = congested
        self._streams: dict[str, LogStream] = {}
        self._ids = itertools.count(1)

    async def open(self, command: list[str], send: Callable[..., None], app: str | None = None) -> str:
        """Start a stream; `send(stream_id, lines, dropped)`, or with `app`, `send(..., app=app)`."""
        deliver = send if app is None else (lambda sid, lines, dropped: send(sid, lines, dropped, app=app))
        stream = LogStream(f"logs-{next(self._ids)}", command, deliver, self._congested, app)
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
