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
