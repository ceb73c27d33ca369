"""The manifest's error locator follows the TOML structure: strings, comments, dotted and quoted keys,
headers and inline tables; it takes linear time, whatever is inside a string."""

from __future__ import annotations

import time
import tomllib
from typing import Any

import pytest

from deploy_bridge.manifest import _Locator, check_manifest_text

APP = """\
[app]
name = "shop"
runtime = "nodejs"
start = \"\"\"
port = 1
\"\"\"
port = 70000
"""


def test_a_key_inside_a_multiline_string_is_not_a_key():
    errors, _ = check_manifest_text(APP, "m.toml")
    assert [(e.key, e.line, e.column, e.end_column) for e in errors] == [("app.port", 7, 1, 5)]
    literal = APP.replace('"""', "'''")
    errors, _ = check_manifest_text(literal, "m.toml")
    assert [(e.key, e.line) for e in errors] == [("app.port", 7)]


# each was slow or worse with the per-line regexes (`[` + 128 KB of spaces: minutes)
@pytest.mark.parametrize("body", ["[" + " " * 2**20, "x" * 2**20, "a." * 2**19, "port = " + "1" * 2**20,
                                  '\\"' * 2**19, "[a" + "." * 2**20, "'" * 2 + " " * 2**20])
def test_a_megabyte_line_inside_a_string_is_validated_in_linear_time(body: str):
    text = APP.replace("port = 1\n", body + "\n")
    started = time.perf_counter()
    errors, _ = check_manifest_text(text, "m.toml")
    assert time.perf_counter() - started < 2  # a correctness bound (linear), not a benchmark
    assert [(e.key, e.line) for e in errors] == [("app.port", 7)]


TRICKY = """\
# [app] in a comment, key = 1 too
[app]   # a comment after a header
name = "shop"  # name = "other"
"runtime" = 'nodejs'
start = '''node "server.js" # not a comment
port = 2 '''
  port   =   70000
"a.b" . 'c' = { x = 1, "y.z" = { q = [1, { r = 2 }, "]}"], w = '}' }, v = "=" }
arr = [
  1, # ] } a comment inside an array
  \"\"\"
  [fake]
  fake = 1
  \"\"\", '''x = 1
''',
]
when = 1979-05-27 07:32:00
esc = "a \\" b = 1"
multi = \"\"\"a\\
   \\\"\"\" still = "inside"
\"\"\"\"\"
[[ env . "prod" ]]
k = 1
[env.test.vars] # x
A = "1"
site.url = "http://x"
"""


def _leaf_paths(table: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for key, value in table.items():
        out.append((*path, key))
        if isinstance(value, dict):
            out.extend(_leaf_paths(value, (*path, key)))
    return out


def test_every_key_is_located_where_it_is_written():
    data = tomllib.loads(TRICKY)
    loc = _Locator(TRICKY)
    lines = TRICKY.splitlines()
    # tables given by headers or by the first part of a dotted key are on that line; keys where written
    tables = {("app",): 2, ("env",): 22, ("env", "prod"): 22, ("env", "test"): 24, ("env", "test", "vars"): 24,
              ("app", "a.b"): 8, ("env", "test", "vars", "site"): 26}
    for path in _leaf_paths(data):
        if path in tables:
            assert loc.where(path) == (tables[path], 1, None), path
            continue
        line, col, end = loc.where(path)
        written = lines[line - 1][col - 1:end - 1]
        assert written.replace('"', "").replace("'", "").replace(" ", "").endswith(path[-1]), (path, written)
    assert ("env", "prod", "k") in loc.keys  # a key of an array of tables: under its header
    assert loc.keys[("app", "port")] == (7, 3, 7)
    assert loc.keys[("app", "a.b", "c", "y.z", "q")][0] == 8
    assert loc.tables[("app", "a.b", "c")] == 8  # a table given by a dotted key and an inline table
    assert loc.keys[("app", "a.b", "c", "v")] == (8, 71, 72)
    assert loc.keys[("app", "multi")] == (19, 1, 6) and loc.keys[("env", "prod", "k")] == (23, 1, 2)
    assert loc.keys[("env", "test", "vars", "site", "url")] == (26, 1, 9)
    assert not any("fake" in p or "still" in p or "r" in p for p in loc.keys)  # strings and arrays are skipped


def test_inline_table_keys_are_located():
    text = 'app = { name = "shop", runtime = "nodejs", start = "x", port = 0 }\n'
    errors, _ = check_manifest_text(text, "m.toml")
    assert [(e.key, e.line, e.column, e.end_column) for e in errors] == [("app.port", 1, 57, 61)]


def test_windows_line_endings_and_dotted_keys_at_the_top():
    text = 'app.name = "shop"\r\napp.runtime = "ruby"\r\napp.start = "x"\r\napp.port = 1\r\n'
    errors, _ = check_manifest_text(text, "m.toml")
    assert [(e.key, e.line, e.column) for e in errors] == [("app.runtime", 2, 1)]
