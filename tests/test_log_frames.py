"""Following a container's log without the engine's per-line work: its socket read in blocks
(frames split wherever reads end), or its json-file log read directly."""

from __future__ import annotations

import json
import random
import socket
import threading
import time

from deploy_bridge.logs import _FollowedLog, _LogFile


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


class _FakeContainer:
    """Just what `_LogFile` asks of a container: its log file, the history, whether it runs."""

    def __init__(self, path, history: list[bytes] | None = None) -> None:
        self.attrs = {"LogPath": str(path), "HostConfig": {"LogConfig": {"Type": "json-file"}}}
        self.status = "running"
        self._history = history or []

    def logs(self, **_params):
        return iter(self._history)  # streamed, a frame per record, like docker-py

    def reload(self) -> None:
        pass


def _wait_for(condition, what: str, timeout: float = 30.0) -> None:  # a deadline for a loaded machine, not a goal
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.01)


def _record(text: str, stamp: str) -> bytes:
    return json.dumps({"log": text + "\n", "stream": "stdout", "time": stamp}).encode() + b"\n"


def test_a_followed_log_file_skips_what_the_history_had_and_crosses_a_rotation(tmp_path):
    path = tmp_path / "c-json.log"
    path.write_bytes(_record("old", "2026-11-25T10:00:00.1Z"))
    # the history (from the API) already had "old" and "racing", written while it was read
    history = [b"2026-11-25T10:00:00.100000000Z old\n", b"2026-11-25T10:00:00.200000000Z racing\n"]
    container = _FakeContainer(path, history)
    stream = _LogFile.open(container, since=None, tail=None)  # type: ignore[arg-type]
    assert stream is not None
    with path.open("ab") as f:
        f.write(_record("racing", "2026-11-25T10:00:00.2Z") + _record("new 1", "2026-11-25T10:00:00.35Z"))
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(stream), daemon=True)
    reader.start()
    _wait_for(lambda: b"new 1" in b"".join(chunks), "the follower reads the file's end")
    with path.open("ab") as f:  # the last line before the driver rotates the file
        f.write(_record("new 2", "2026-11-25T10:00:01Z"))
    path.rename(tmp_path / "c-json.log.1")
    path.write_bytes(_record("after rotation", "2026-11-25T10:00:02.5Z"))
    _wait_for(lambda: b"after rotation" in b"".join(chunks), "the follower crosses the rotation")
    path.unlink()  # the container is removed: the follower ends
    (tmp_path / "c-json.log.1").unlink()
    reader.join(timeout=5)
    assert not reader.is_alive()
    assert b"".join(chunks).decode().splitlines() == [
        "2026-11-25T10:00:00.100000000Z old", "2026-11-25T10:00:00.200000000Z racing",
        "2026-11-25T10:00:00.350000000Z new 1", "2026-11-25T10:00:01.000000000Z new 2",
        "2026-11-25T10:00:02.500000000Z after rotation"]


def test_a_log_file_we_may_not_read_goes_through_the_api(tmp_path):
    assert _LogFile.open(_FakeContainer(tmp_path / "missing-json.log"), None, None) is None  # type: ignore[arg-type]
    other = _FakeContainer(tmp_path / "c-json.log")
    other.attrs["HostConfig"]["LogConfig"]["Type"] = "local"
    assert _LogFile.open(other, None, None) is None  # type: ignore[arg-type]
