"""Logs of an environment's containers, merged, as `LogLine`s; optionally followed across deploys."""

from __future__ import annotations

import contextlib
import datetime as dt
import queue
import re
import threading
from collections.abc import Callable, Iterator

import docker
from docker.errors import APIError, NotFound

from .config import LABEL_RELEASE, LABEL_ROLE
from .errors import MinicloudError
from .model import LogLine

_SINCE = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str | None, now: dt.datetime | None = None) -> dt.datetime | None:
    """'10m', '2h', '30s', '1d' or an ISO time -> an aware UTC datetime."""
    if not text:
        return None
    now = now or dt.datetime.now(dt.UTC)
    m = _SINCE.match(text.strip())
    if m:
        return now - dt.timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise MinicloudError(f"--since {text!r}: expected a duration like 10m, 2h, 30s, 1d or an ISO time") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


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
            self.stream = self.container.logs(stream=True, follow=True, timestamps=True, since=since,
                                              tail=tail if tail is not None else "all")
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


def read(sources_fn: Callable[[], list[_Source]], *, follow: bool, since: str | None, tail: int | None,
         grep: str | None, stop: threading.Event | None) -> Iterator[LogLine]:
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
        yield from merged[-tail:] if tail else merged
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
            try:
                batch = sink.get(timeout=0.1)
            except queue.Empty:
                batch = []
            for ln in batch:
                if keep(ln):
                    yield ln
            now = dt.datetime.now(dt.UTC)
            if (now - last_scan).total_seconds() >= 1:
                last_scan = now
                attach(initial=False)
    finally:
        for src in followed.values():
            src.close()


def make_source(container: docker.models.containers.Container,
                accept: Callable[[str], bool] | None = None) -> _Source:
    return _Source(container, container.labels.get(LABEL_ROLE, "?"), accept)
