"""What goes into a release image, and the log options' parsing: pure logic, no engine."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from deploy_bridge.errors import MinicloudError
from deploy_bridge.logs import compile_grep, parse_since
from deploy_bridge.releases import new_release_id, workspace_files


def test_private_keys_and_own_state_never_enter_the_build(tmp_path: Path):
    (tmp_path / "server.js").write_text("console.log(1)")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "app.pem").write_text("-----BEGIN RSA PRIVATE KEY-----\nabc\n")
    (tmp_path / ".minicloud" / "test").mkdir(parents=True)
    (tmp_path / ".minicloud" / "test" / "db.json").write_text("{}")
    (tmp_path / "node_modules" / "x").mkdir(parents=True)
    (tmp_path / "node_modules" / "x" / "index.js").write_text("")
    (tmp_path / "notes.log").write_text("")
    (tmp_path / ".dockerignore").write_text("*.log\n")
    files, refused = workspace_files(tmp_path)
    names = {rel for rel, _ in files}
    assert names == {"server.js", ".dockerignore"}
    assert refused == ["keys/app.pem"]


def test_release_ids_sort_by_time():
    early = new_release_id("abcdef", dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    late = new_release_id("000000", dt.datetime(2026, 1, 2, 3, 4, 6, tzinfo=dt.UTC))
    assert early < late and early.startswith("20260102-030405")


def test_since_and_grep():
    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    assert parse_since("10m", now) == now - dt.timedelta(minutes=10)
    assert parse_since("2h", now) == now - dt.timedelta(hours=2)
    assert parse_since(None, now) is None
    with pytest.raises(MinicloudError) as err:
        parse_since("yesterday-ish", now)
    assert "--since" in err.value.render()
    assert compile_grep("err(or)?").search("an error here")
    with pytest.raises(MinicloudError) as err:
        compile_grep("([unclosed")
    assert "--grep" in err.value.render()


@pytest.mark.parametrize("padding", [0, 1_100_000, (1 << 20) - 8, 5 * (1 << 20)])
def test_a_private_key_anywhere_in_a_file_keeps_it_out(tmp_path: Path, padding: int):
    """Whole files are scanned: a key after 1.1 MB of padding (or across a chunk boundary) is found."""
    (tmp_path / "bundle.js").write_bytes(b"x" * padding + b"\n-----BEGIN PRIVATE KEY-----\nMIIE\n")
    (tmp_path / "ok.js").write_bytes(b"y" * padding)
    files, refused = workspace_files(tmp_path)
    assert refused == ["bundle.js"]
    assert [rel for rel, _ in files] == ["ok.js"]


def test_dockerignore_is_read_as_docker_reads_it(tmp_path: Path):
    for rel in ("a/b/c.txt", "a/keep.txt", "docs/x.md", "docs/keep.md", "deep/node_modules/m.js"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    # `**` patterns and `!` exceptions, which a per-name fnmatch got wrong
    (tmp_path / ".dockerignore").write_text("a/**/c.txt\ndocs/*.md\n!docs/keep.md\n")
    names = {rel for rel, _ in workspace_files(tmp_path)[0]}
    assert names == {".dockerignore", "a/keep.txt", "docs/keep.md"}
