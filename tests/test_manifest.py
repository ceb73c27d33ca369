"""minicloud.toml validation: every problem names file, line and key; the schema drives both uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy_bridge.errors import ManifestError, ManifestNotFound, UnknownEnv
from deploy_bridge.manifest import SCHEMA, check_manifest_text, find_workspace, load_manifest, parse_manifest

GOOD = """\
[app]
name = "shop"
runtime = "nodejs"
start = "node server.js"
port = 3000
health = "/healthz"

[env.test]
[env.prod]
[env.prod.vars]
FEATURE_X = "on"
"""


def test_good_manifest_parses_with_envs_and_vars(tmp_path: Path):
    m = parse_manifest(GOOD, tmp_path / "minicloud.toml")
    assert (m.name, m.runtime, m.port, m.health) == ("shop", "nodejs", 3000, "/healthz")
    assert m.env("prod").vars == {"FEATURE_X": "on"}
    assert m.env("test").vars == {}
    with pytest.raises(UnknownEnv) as err:
        m.env("staging")
    assert "test" in err.value.render() and "prod" in err.value.render()


@pytest.mark.parametrize(
    ("change", "line", "key"),
    [
        (('port = 3000', 'port = "3000"'), 5, "port"),
        (('runtime = "nodejs"', 'runtime = "ruby"'), 3, "runtime"),
        (('name = "shop"', 'name = "Shop!"'), 2, "name"),
        (('health = "/healthz"', 'health = "/healthz"\ncolour = "blue"'), 7, "colour"),
        (('FEATURE_X = "on"', 'FEATURE_X = [1, 2]'), 11, "FEATURE_X"),
    ],
)
def test_errors_name_file_line_and_key(change, line, key):
    errors, _ = check_manifest_text(GOOD.replace(*change), "app/minicloud.toml")
    assert errors, change
    err = errors[0]
    assert (err.file, err.line, err.key.split(".")[-1]) == ("app/minicloud.toml", line, key)
    assert f"app/minicloud.toml:{line}" in err.render()
    assert err.column is not None and err.end_column is not None and err.end_column > err.column


def test_missing_required_key_and_toml_syntax_error():
    errors, _ = check_manifest_text(GOOD.replace('start = "node server.js"\n', ""), "m.toml")
    assert any(e.key == "app" and "required key 'start'" in e.problem and e.line == 1 for e in errors)
    errors, _ = check_manifest_text("[app\nname = 1", "m.toml")
    assert errors and errors[0].line == 1


def test_load_raises_the_first_error_and_finds_the_workspace_upward(tmp_path: Path):
    (tmp_path / "minicloud.toml").write_text(GOOD.replace("port = 3000", "port = 99999"))
    nested = tmp_path / "src" / "lib"
    nested.mkdir(parents=True)
    assert find_workspace(nested) == tmp_path
    with pytest.raises(ManifestError) as err:
        load_manifest(nested)
    assert "port" in err.value.render() and ":5" in err.value.render()
    with pytest.raises(ManifestNotFound):
        find_workspace(Path("/"))


def test_schema_documents_every_field():
    for table in SCHEMA:
        assert table.doc
        for f in table.fields:
            assert f.doc and f.kind in {"string", "integer", "boolean"}, f
