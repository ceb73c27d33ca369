"""Live logs for the editor's log panel: `minicloud/logs` notifications, batched.

A thread reads `Cloud.logs(follow=True)` into a bounded buffer; a task on the event loop flushes it
at most every 50 ms. A flood of thousands of lines a second therefore costs one notification per
50 ms, never blocks the server's loop (completions keep answering), and when the client cannot keep
up the oldest lines are dropped and counted instead of growing memory.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

FLUSH_SECONDS = 0.05
MAX_BUFFERED = 50_000
MAX_PER_NOTIFICATION = 5_000


class LogStream:
    def __init__(self, stream_id: str, lines: Callable[[threading.Event], Iterator[Any]],
                 send: Callable[[str, list[dict[str, Any]], int], None]) -> None:
        self.id = stream_id
        self._lines = lines
        self._send = send
        self._buffer: collections.deque[dict[str, Any]] = collections.deque()
        self._lock = threading.Lock()
        self._dropped = 0
        self.stop_event = threading.Event()
        self.error: str | None = None
        self._task: asyncio.Task | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        threading.Thread(target=self._read, name=f"logs-{self.id}", daemon=True).start()
        self._task = loop.create_task(self._flush_loop())

    def stop(self) -> None:
        self.stop_event.set()

    def _read(self) -> None:
        try:
            for line in self._lines(self.stop_event):
                item = line.to_json() if hasattr(line, "to_json") else dict(line)
                with self._lock:
                    if len(self._buffer) >= MAX_BUFFERED:
                        self._buffer.popleft()
                        self._dropped += 1
                    self._buffer.append(item)
                if self.stop_event.is_set():
                    break
        except Exception as err:  # noqa: BLE001 - reported to the client, the server goes on
            self.error = str(err)
        finally:
            self.stop_event.set()

    def _take(self) -> tuple[list[dict[str, Any]], int]:
        with self._lock:
            n = min(len(self._buffer), MAX_PER_NOTIFICATION)
            batch = [self._buffer.popleft() for _ in range(n)]
            dropped, self._dropped = self._dropped, 0
        return batch, dropped

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            batch, dropped = self._take()
            if batch or dropped:
                self._send(self.id, batch, dropped)
            if self.stop_event.is_set() and not self._buffer:
                if self.error:
                    self._send(self.id, [{"time": "", "role": "minicloud", "release": None,
                                          "line": f"log stream ended: {self.error}"}], 0)
                return


class LogStreams:
    def __init__(self) -> None:
        self._streams: dict[str, LogStream] = {}
        self._ids = itertools.count(1)

    def open(self, lines: Callable[[threading.Event], Iterator[Any]],
             send: Callable[[str, list[dict[str, Any]], int], None], loop: asyncio.AbstractEventLoop) -> str:
        stream = LogStream(f"logs-{next(self._ids)}", lines, send)
        self._streams[stream.id] = stream
        stream.start(loop)
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
