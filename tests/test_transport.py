"""The server's stdio transport and log-stream pump, on real pipes and a real child process."""

from __future__ import annotations

import asyncio
import os
import sys

from lsp_server.logstream import MAX_PER_NOTIFICATION, LogStream
from lsp_server.transport import PriorityPipeWriter


def _read_all(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def _messages(data: bytes) -> list[bytes]:
    """The complete messages at the start of `data`."""
    found = []
    while b"\r\n\r\n" in data:
        header, _, rest = data.partition(b"\r\n\r\n")
        length = int(header.split(b":")[1])
        if len(rest) < length:
            break
        found.append(rest[:length])
        data = rest[length:]
    return found


def test_answers_overtake_queued_log_traffic_and_messages_stay_whole():
    async def scenario() -> list[bytes]:
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        writer = PriorityPipeWriter(write_fd, asyncio.get_running_loop())
        body = b"x" * 30_000
        for i in range(20):  # ~600 KB of logs: far more than the pipe holds
            writer.write_bulk(b"Content-Length: %d\r\n\r\n" % (len(body) + 4) + b"%04d" % i + body)
        assert writer.bulk_bytes > 0, "the pipe should be full and logs queued"
        answer = b'{"id":1,"result":[]}'
        writer.write(b"Content-Length: %d\r\n\r\n" % len(answer) + answer)
        received = b""
        deadline = asyncio.get_running_loop().time() + 20
        while len(_messages(received)) < 21:
            assert asyncio.get_running_loop().time() < deadline, f"only {len(_messages(received))} of 21 messages"
            await asyncio.sleep(0.01)
            received += _read_all(read_fd)
        writer.close()
        os.close(read_fd)
        os.close(write_fd)
        return _messages(received)

    messages = asyncio.run(scenario())
    assert len(messages) == 21
    position = messages.index(b'{"id":1,"result":[]}')
    assert position < 5, f"the answer waited behind {position} log messages"
    logs = [m for m in messages if m != b'{"id":1,"result":[]}']
    assert [int(m[:4]) for m in logs] == list(range(20)), "log messages lost or reordered"
    assert all(len(m) == 30_004 for m in logs), "a message was cut or interleaved"


def test_log_stream_delivers_every_line_in_bounded_batches_and_reports_a_failed_child():
    lines = 3_000
    child = [sys.executable, "-c",
             f"import sys\nfor i in range({lines}): print('{{\"line\": \"l%d\"}}' % i)\n"
             "sys.stderr.write('minicloud: env test is not built\\n'); sys.exit(2)"]

    async def scenario() -> list[tuple[list[bytes], int]]:
        sent: list[tuple[list[bytes], int]] = []
        stream = LogStream("logs-1", child, lambda _id, batch, dropped: sent.append((batch, dropped)))
        await stream.start()
        await asyncio.wait_for(stream._task, 20)
        return sent

    sent = asyncio.run(scenario())
    received = [line for batch, _ in sent for line in batch]
    assert received[:lines] == [b'{"line": "l%d"}' % i for i in range(lines)]
    assert all(len(batch) <= MAX_PER_NOTIFICATION for batch, _ in sent)
    assert b"log stream ended: env test is not built" in received[-1]
    assert sum(dropped for _, dropped in sent) == 0
