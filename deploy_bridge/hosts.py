"""Make `*.localhost` names resolve for programs, not only for curl and browsers.

glibc does not resolve `shop.test.localhost` by itself (`getaddrinfo` fails for it), so Python, Node and the SDKs
could not reach the URLs we print. When a name does not resolve, minicloud adds it to a marked block of
/etc/hosts (when it may write there) and otherwise says what to do. It only ever touches its own block.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

HOSTS = Path(os.environ.get("MINICLOUD_HOSTS_FILE", "/etc/hosts"))
BEGIN, END = "# >>> minicloud (managed; names of local environments)", "# <<< minicloud"


def resolves(name: str) -> bool:
    try:
        return any(info[4][0] == "127.0.0.1" for info in socket.getaddrinfo(name, 443, socket.AF_INET))
    except OSError:
        return False


def _split(text: str) -> tuple[list[str], list[str], list[str]]:
    lines = text.splitlines()
    if BEGIN in lines and END in lines[lines.index(BEGIN):]:
        start = lines.index(BEGIN)
        end = lines.index(END, start)
        return lines[:start], lines[start + 1:end], lines[end + 1:]
    return lines, [], []


def _managed_names(block: list[str]) -> set[str]:
    return {part for line in block for part in line.split()[1:] if not line.startswith("#")}


def ensure_names(names: list[str]) -> str | None:
    """None when all names resolve (or were added); else a message telling the user what to do."""
    missing = [n for n in names if not resolves(n)]
    if not missing:
        return None
    try:
        before, block, after = _split(HOSTS.read_text())
        wanted = sorted(_managed_names(block) | set(missing))
        _write(before, wanted, after)
    except OSError:
        lines = "\n".join(f"127.0.0.1 {n}" for n in missing)
        return (f"these names do not resolve for programs: {', '.join(missing)}; add to /etc/hosts:\n{lines}\n"
                "(or install libnss-myhostname and put `myhostname` in the hosts: line of /etc/nsswitch.conf)")
    return None


def remove_names(names: list[str]) -> None:
    try:
        before, block, after = _split(HOSTS.read_text())
    except OSError:
        return
    wanted = sorted(_managed_names(block) - set(names))
    with contextlib.suppress(OSError):
        _write(before, wanted, after)


def _write(before: list[str], names: list[str], after: list[str]) -> None:
    block = [BEGIN, *(f"127.0.0.1 {n}" for n in names), END] if names else []
    text = "\n".join([*before, *block, *after]) + "\n"
    # write in place: /etc/hosts is often a bind mount that cannot be replaced by rename
    with open(HOSTS, "w") as f:
        f.write(text)
