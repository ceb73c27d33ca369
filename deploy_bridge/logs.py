"""Logs of an environment's containers, merged, as `LogLine`s; optionally followed across deploys."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import queue
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator

import docker
from docker.errors import APIError, NotFound

from .config import LABEL_RELEASE, LABEL_ROLE
from .errors import BadInput, MinicloudError
from .model import LogLine

_SINCE = re.compile(r"^([0-9]+)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_SINCE_FORMS = "a duration like 30s, 10m, 2h, 1d or an ISO time like 2026-01-02T03:04:05Z"


def parse_since(text: str | None, now: dt.datetime | None = None) -> dt.datetime | None:
    """'10m', '2h', '30s', '1d' or an ISO time -> an aware UTC datetime; BadInput (exit 2) otherwise."""
    if not text:
        return None
    now = now or dt.datetime.now(dt.UTC)
    m = _SINCE.match(text.strip())
    if m:
        try:
            return now - dt.timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
        except (OverflowError, ValueError):  # beyond datetime's years 1..9999, or too many digits for int()
            raise BadInput(f"--since {text!r} is out of range; expected {_SINCE_FORMS}") from None
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (OverflowError, ValueError):
        raise BadInput(f"--since {text!r}: expected {_SINCE_FORMS}") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def parse_tail(text: str) -> int:
    """`--tail N`: a whole number of lines, 0 or more; BadInput (exit 2) otherwise. For argparse `type=`."""
    value = text.strip()
    if re.fullmatch(r"[0-9]{1,18}", value):
        return int(value)
    if re.fullmatch(r"[0-9]+", value):
        problem = "is too large"
    elif re.fullmatch(r"-\s*[0-9]+", value):
        problem = "must not be negative"
    else:
        problem = "is not a whole number"
    raise BadInput(f"--tail {text!r} {problem}; expected a number of lines, 0 or more (e.g. --tail 100)")


def compile_grep(pattern: str | None) -> re.Pattern[str] | None:
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as err:
        raise MinicloudError(f"--grep {pattern!r} is not a valid regular expression: {err}") from None


def _split_timestamp(raw: str) -> tuple[str, str]:
    stamp, _, text = raw.partition(" ")
    # Docker gives nanoseconds; milliseconds are enough and sort the same
    if len(stamp) > 24 and stamp.endswith("Z"):
        stamp = stamp[:23] + "Z"
    return stamp, text


class _Source:
    """One container's log, turned into whole lines."""

    def __init__(self, container: docker.models.containers.Container, role: str,
                 accept: Callable[[str], bool] | None) -> None:
        self.container = container
        self.role = role
        self.release = container.labels.get(LABEL_RELEASE)
        self.accept = accept
        self.stream = None

    def lines(self, raw: bytes) -> list[LogLine]:
        out = []
        for line in raw.decode(errors="replace").splitlines():
            if not line:
                continue
            stamp, text = _split_timestamp(line)
            if self.accept is None or self.accept(text):
                out.append(LogLine(stamp, self.role, self.release, text))
        return out

    def follow(self, since: dt.datetime | None, tail: int | None, sink: queue.Queue) -> None:
        buffer = b""
        try:
            self.stream = (_LogFile.open(self.container, since, tail)
                           or _FollowedLog.open(self.container, since, tail)
                           or self.container.logs(stream=True, follow=True, timestamps=True, since=since,
                                                  tail=tail if tail is not None else "all"))
            for chunk in self.stream:
                buffer += chunk
                if b"\n" not in buffer:
                    continue
                complete, _, buffer = buffer.rpartition(b"\n")
                batch = self.lines(complete)
                if batch:
                    sink.put(batch)
        except (NotFound, APIError, OSError, ValueError, AttributeError):
            pass  # the container went away (old release stopped): its log simply ends
        finally:
            if buffer:
                sink.put(self.lines(buffer))

    def close(self) -> None:
        if self.stream is not None:
            # closing a dead socket must not kill the reader
            with contextlib.suppress(Exception):
                self.stream.close()


def _fixed_ns(stamp: str) -> str:
    """Docker's file timestamps drop trailing zeros; its API pads to nanoseconds. Pad, so they compare."""
    head, dot, frac = stamp.rstrip("Z").partition(".")
    return f"{head}.{frac:0<9}Z" if dot else f"{head}.000000000Z"


class _LogFile:
    """A followed container log read from the engine's own log file, as log shippers do.

    Following through the engine's API costs the engine work for every line (decode, frame, write,
    flush): under a 10,000 lines/s flood that is a tenth of a core, taken from the editor on a small
    machine. The json-file driver (every minicloud container uses it, see config.LOG_CONFIG) keeps
    the log in a file: where this process may read it (the engine is local and we are root), new
    lines are read from there and the engine does nothing. The history (`since`, `tail`) still comes
    from the API, which knows the rotated files; the file is followed from where it ended before
    that call, skipping what the history already had. Everywhere else: `_FollowedLog`, then docker-py.
    """

    POLL_SECONDS = 0.01
    STATE_CHECK_SECONDS = 1.0  # when idle, how often to ask whether the container still runs

    def __init__(self, container: docker.models.containers.Container, path: str, fd: int,
                 history: Iterator[bytes]) -> None:
        self._container = container
        self._path = path
        self._fd = fd
        self._inode = os.fstat(fd).st_ino
        self._history = history
        self._skip_through: str | None = None
        self._pending = b""
        self._closed = False

    @classmethod
    def open(cls, container: docker.models.containers.Container, since: dt.datetime | None,
             tail: int | None) -> _LogFile | None:
        path = container.attrs.get("LogPath") or ""
        if not path or (container.attrs.get("HostConfig", {}).get("LogConfig") or {}).get("Type") != "json-file":
            return None
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:  # not ours to read (not root, or the engine runs elsewhere)
            return None
        try:
            os.lseek(fd, 0, os.SEEK_END)
            # streamed, not read whole: the history of a chatty app is up to the five rotated files
            history = container.logs(stream=True, follow=False, timestamps=True, since=since,
                                     tail=tail if tail is not None else "all")
        except BaseException:
            os.close(fd)
            raise
        return cls(container, path, fd, history)

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._follow()
        finally:
            os.close(self._fd)  # here, not in close(): another thread may be reading it

    def _follow(self) -> Iterator[bytes]:
        last = b""
        for frame in self._history:  # one frame per log record: "TIMESTAMP text"
            if self._closed:
                return
            last = frame.partition(b" ")[0] or last
            yield frame
        if last:  # lines written while the history was read are in both: skip them in the file
            self._skip_through = _fixed_ns(last.decode(errors="replace"))
        idle_since = time.monotonic()
        while not self._closed:
            data = os.read(self._fd, 1 << 20)
            if data:
                idle_since = time.monotonic()
                yield self._lines(data)
                continue
            alive, rest = self._follow_rotation()
            if rest:
                yield self._lines(rest)
            if not alive:
                return
            if time.monotonic() - idle_since > self.STATE_CHECK_SECONDS:
                idle_since = time.monotonic()
                if not self._still_running():
                    yield self._lines(self._drain())
                    return
            time.sleep(self.POLL_SECONDS)

    def _lines(self, data: bytes) -> bytes:
        """'TIMESTAMP text' lines, as the API gives them, from the file's JSON records."""
        *records, self._pending = (self._pending + data).split(b"\n")
        out = []
        for record in records:
            try:
                entry = json.loads(record)
                stamp = _fixed_ns(entry["time"])
                text = entry["log"]
            except (ValueError, KeyError, TypeError):
                continue
            if self._skip_through is not None:
                if stamp <= self._skip_through:
                    continue  # the history already had it
                self._skip_through = None
            out.append(f"{stamp} {text}" if text.endswith("\n") else f"{stamp} {text}\n")
        return "".join(out).encode()

    def _drain(self) -> bytes:
        chunks = []
        with contextlib.suppress(OSError):
            while chunk := os.read(self._fd, 1 << 20):
                chunks.append(chunk)
        return b"".join(chunks)

    def _follow_rotation(self) -> tuple[bool, bytes]:
        """After the driver rotated the file, continue in the new one: (still followed, the rest of
        the old file). Not followed once the log file is gone (the container was removed)."""
        try:
            inode = os.stat(self._path).st_ino
        except OSError:
            return False, self._drain()
        if inode == self._inode:
            return True, b""
        rest = self._drain()  # the old file is complete once the new one exists
        try:
            fd = os.open(self._path, os.O_RDONLY)
        except OSError:
            return False, rest
        os.close(self._fd)
        self._fd, self._inode = fd, os.fstat(fd).st_ino
        return True, rest

    def _still_running(self) -> bool:
        try:
            self._container.reload()
        except (NotFound, APIError):
            return False
        return self._container.status in ("running", "restarting", "created")

    def close(self) -> None:
        self._closed = True  # the reader stops within a poll
        close_history = getattr(self._history, "close", None)
        if close_history is not None:  # a reader blocked in a long history
            with contextlib.suppress(Exception):
                close_history()


class _FollowedLog:
    """A followed container log read straight from the engine's socket, many lines per read.

    The engine writes (and flushes) every log line on its own; docker-py then reads each frame with
    two calls through urllib3's chunked decoding, which under a 10,000 lines/s flood costs a core's
    fifth. Asked over HTTP/1.0, the engine sends the multiplexed frames unchunked until it closes
    the connection; here they are read in large blocks — after a short pause when little came, so
    that a trickle of lines does not mean a wake-up per line — and split in one pass. Used for the
    usual local engine (a unix socket); anything else (TLS, ssh) goes through docker-py.
    """

    PAUSE_SECONDS = 0.01  # at most this much more latency, for ~100 reads a second instead of one per line

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._pending = b""

    @classmethod
    def open(cls, container: docker.models.containers.Container, since: dt.datetime | None,
             tail: int | None) -> _FollowedLog | None:
        from .engine import engine_url

        host = engine_url()
        if not host.startswith("unix://") or os.environ.get("DOCKER_TLS_VERIFY"):
            return None
        params = {"follow": "1", "stdout": "1", "stderr": "1", "timestamps": "1",
                  "tail": "all" if tail is None else str(tail)}
        if since is not None:
            params["since"] = f"{since.timestamp():.6f}"
        version = container.client.api.api_version
        path = f"/v{version}/containers/{container.id}/logs?{urllib.parse.urlencode(params)}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(host[len("unix://"):])
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                data = sock.recv(65536)
                if not data:
                    raise NotFound(f"container {container.name}: the engine closed the log stream")
                head += data
        except BaseException:
            sock.close()
            raise
        head, _, body = head.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
        if status_line.split()[1:2] != ["200"]:
            sock.close()
            raise NotFound(f"container {container.name}: the engine answered {status_line!r} for its log")
        stream = cls(sock)
        stream._pending = body
        return stream

    def __iter__(self) -> Iterator[bytes]:
        while True:
            payload = self._split_frames()
            if payload:
                yield payload
            try:
                data = self._sock.recv(1 << 20)
            except OSError:
                return
            if not data:
                return
            self._pending += data
            if len(data) < 16384:
                time.sleep(self.PAUSE_SECONDS)  # let more lines gather before the next read

    def _split_frames(self) -> bytes:
        """The payloads of the complete frames (8-byte header: stream, 0, 0, 0, size) received."""
        buf, pos, out = self._pending, 0, []
        while pos + 8 <= len(buf):
            end = pos + 8 + int.from_bytes(buf[pos + 4:pos + 8], "big")
            if end > len(buf):
                break
            out.append(buf[pos + 8:end])
            pos = end
        self._pending = buf[pos:]
        return b"".join(out)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the reader blocked in recv
        self._sock.close()


def read_batches(sources_fn: Callable[[], list[_Source]], *, follow: bool, since: str | None, tail: int | None,
                 grep: str | None, stop: threading.Event | None) -> Iterator[list[LogLine]]:
    """The containers' lines in batches: all of them when not following; when following, what has
    arrived from all containers since the last batch. A writer that flushes once per batch makes
    one write per burst, not one per line."""
    since_dt = parse_since(since)
    pattern = compile_grep(grep)
    keep = (lambda ln: bool(pattern.search(ln.line))) if pattern else (lambda ln: True)
    if not follow:
        merged: list[LogLine] = []
        for src in sources_fn():
            try:
                raw = src.container.logs(timestamps=True, since=since_dt, tail=tail if tail is not None else "all")
            except (NotFound, APIError):
                continue
            merged.extend(ln for ln in src.lines(raw) if keep(ln))
        merged.sort(key=lambda ln: ln.time)
        yield merged[-tail:] if tail else merged
        return
    stop = stop or threading.Event()
    sink: queue.Queue[list[LogLine]] = queue.Queue()
    followed: dict[str, _Source] = {}

    def attach(initial: bool) -> None:
        for src in sources_fn():
            if src.container.id in followed:
                continue
            followed[src.container.id] = src
            # containers that appear later (a new release) are read from their first line
            threading.Thread(target=src.follow, args=(since_dt if initial else None, tail if initial else None, sink),
                             daemon=True, name=f"logs-{src.container.name}").start()

    attach(initial=True)
    last_scan = dt.datetime.now(dt.UTC)
    try:
        while not stop.is_set():
            batch = _take_waiting(sink, timeout=0.1)
            kept = [ln for ln in batch if keep(ln)] if pattern else batch
            if kept:
                yield kept
            now = dt.datetime.now(dt.UTC)
            if (now - last_scan).total_seconds() >= 1:
                last_scan = now
                attach(initial=False)
    finally:
        for src in followed.values():
            src.close()


def _take_waiting(sink: queue.Queue[list[LogLine]], timeout: float) -> list[LogLine]:
    """The next batch (waiting up to `timeout`), joined by every batch already queued behind it."""
    try:
        batch = sink.get(timeout=timeout)
    except queue.Empty:
        return []
    with contextlib.suppress(queue.Empty):
        while True:
            batch += sink.get_nowait()
    return batch


class _ServiceLog:
    """A swarm service as `read_batches` reads a container: its log is every task's, with the task named."""

    def __init__(self, service) -> None:
        self.service = service
        self.id, self.name = service.id, service.name

    def logs(self, *, timestamps: bool = True, since: dt.datetime | None = None, tail: int | str = "all",
             stream: bool = False, follow: bool = False):
        chunks = self.service.logs(stdout=True, stderr=True, timestamps=timestamps, details=True, follow=follow,
                                   since=int(since.timestamp()) if since else 0, tail=tail)
        return chunks if stream or follow else b"".join(chunks)


class _ServiceSource(_Source):
    """One swarm service's log; each line's release is its task's (`release_of(task id)`)."""

    def __init__(self, service, role: str, release_of: Callable[[str], str | None]) -> None:
        self.container = _ServiceLog(service)  # type: ignore[assignment] - what read_batches uses of it
        self.role, self.release_of, self.accept, self.stream = role, release_of, None, None
        self.release = None

    def lines(self, raw: bytes) -> list[LogLine]:
        out = []
        for line in raw.decode(errors="replace").splitlines():
            stamp, _, rest = line.partition(" ")
            details, _, text = rest.partition(" ")  # com.docker.swarm.node.id=…,…task.id=… MESSAGE
            if not stamp or "=" not in details:
                continue
            fields = dict(part.partition("=")[::2] for part in details.split(","))
            stamp = stamp[:23] + "Z" if len(stamp) > 24 and stamp.endswith("Z") else stamp
            out.append(LogLine(stamp, self.role, self.release_of(fields.get("com.docker.swarm.task.id", "")), text))
        return out

    def follow(self, since: dt.datetime | None, tail: int | None, sink: queue.Queue) -> None:
        buffer = b""
        try:
            self.stream = self.container.logs(follow=True, since=since, tail=tail if tail is not None else "all")
            for chunk in self.stream:
                buffer += chunk
                if b"\n" in buffer:
                    complete, _, buffer = buffer.rpartition(b"\n")
                    if batch := self.lines(complete):
                        sink.put(batch)
        except (NotFound, APIError, OSError, ValueError):
            pass  # the service went away: its log ends
        finally:
            if buffer:
                sink.put(self.lines(buffer))


def service_source(service, role: str, release_of: Callable[[str], str | None]) -> _Source:
    return _ServiceSource(service, role, release_of)


def make_source(container: docker.models.containers.Container,
                accept: Callable[[str], bool] | None = None) -> _Source:
    return _Source(container, container.labels.get(LABEL_ROLE, "?"), accept)
