"""Reading a followed log straight from the engine's socket: frames split wherever reads end."""

from __future__ import annotations

import random
import socket
import threading

from deploy_bridge.logs import _FollowedLog


def _frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


def test_frames_cut_at_any_byte_come_out_whole_and_in_order():
    lines = [f"2026-11-25T10:00:00.{i:09d}Z line {i} {'x' * random.randint(0, 300)}\n".encode() for i in range(2000)]
    wire = b"".join(_frame(1 + i % 2, line) for i, line in enumerate(lines))
    ours, engine = socket.socketpair()

    def send_in_random_pieces() -> None:
        rng, pos = random.Random(7), 0
        while pos < len(wire):
            step = rng.randint(1, 5000)
            engine.sendall(wire[pos:pos + step])
            pos += step
        engine.close()

    threading.Thread(target=send_in_random_pieces, daemon=True).start()
    received = b"".join(_FollowedLog(ours))
    assert received == b"".join(lines)


def test_a_closed_stream_ends_the_reader():
    ours, engine = socket.socketpair()
    stream = _FollowedLog(ours)
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(stream), daemon=True)
    reader.start()
    engine.sendall(_frame(1, b"one\n"))
    stream.close()
    reader.join(timeout=5)
    assert not reader.is_alive()


def test_engines_not_on_a_unix_socket_are_read_through_docker_py(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.1:2376")
    assert _FollowedLog.open(container=None, since=None, tail=None) is None  # type: ignore[arg-type]
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/run/docker.sock")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    assert _FollowedLog.open(container=None, since=None, tail=None) is None  # type: ignore[arg-type]
