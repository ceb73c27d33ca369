"""codegen.compose: several "Generate call to …" actions in one file compose into a file that compiles,
with the imports and the client set-up once, one function per call, and the file's own code kept."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from codegen.compose import SETUP_END_MARKER, SETUP_MARKER, apply_edits, insert_call
from codegen.generate import CodegenError, generate

NODE_DIR = Path(__file__).parent / "node"
METHODS = ("alipay.trade.precreate", "alipay.trade.query", "alipay.trade.refund")
FUNCTIONS = ("tradePrecreate", "tradeQuery", "tradeRefund")
GRANTED = set(METHODS)

CJS = """'use strict';
const fs = require('fs');
const path = require('node:path');

function handler(req) {
  const name = path.basename(req.url);
  return `hello ${name}`;
}

function helper() {
  return fs.existsSync('/') && /a{2}/.test('aa');
}

module.exports = { handler, helper };
"""

ESM = """import { basename } from 'node:path';

export function handler(req) {
  return `hello ${basename(req.url)}`;
}

const answer = { ok: true };
export default answer;
"""

EGG = """'use strict';

const { Controller } = require('egg');

class OrderController extends Controller {
  async index() {
    const { ctx } = this;
    ctx.body = { orders: [] };
  }

  async show() {
    this.ctx.body = { id: this.ctx.params.id };
  }
}

module.exports = OrderController;
"""

PYTHON = '''"""The shop's handlers."""

from __future__ import annotations

import json
import os, sys


def handler(event: dict) -> str:
    name = event.get("name", "world")

    return json.dumps({"hello": name, "pid": os.getpid(), "argv": len(sys.argv)})


if __name__ == "__main__":
    print(handler({}))
'''

JAVA = """package shop;

import java.util.List;
import java.util.Map;

public class Orders {
    private final List<String> names = List.of("a", "b");

    public int count() {
        return names.size();
    }

    public String first() {
        return names.get(0);
    }
}
"""


def compose(source: str, lang: str, cursors: tuple[int, int, int]) -> str:
    """The three calls added one after the other, each at its cursor line (as the editor does)."""
    for method, cursor in zip(METHODS, cursors, strict=True):
        source = apply_edits(source, insert_call(source, method, lang, cursor, GRANTED))
    return source


def assert_kept(original: str, composed: str) -> None:
    """Every line of the original is still there, in order (nothing of the file's own code changed)."""
    lines = iter(composed.split("\n"))
    for line in original.split("\n"):
        assert any(line == other for other in lines), f"lost or moved: {line!r}"


def assert_once(composed: str, *needles: str) -> None:
    for needle in needles:
        assert composed.count(needle) == 1, f"{needle!r} appears {composed.count(needle)} times"


@pytest.fixture(scope="module")
def node_modules() -> Path:
    if not (NODE_DIR / "node_modules" / "alipay-sdk").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR, check=True)
    return NODE_DIR / "node_modules"


def node(tmp_path: Path, node_modules: Path, script: str) -> subprocess.CompletedProcess:
    (tmp_path / "node_modules").symlink_to(node_modules, target_is_directory=True)
    return subprocess.run(["node", "--input-type=module", "-e", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("cursors", [(5, 0, 100), (9, 9, 9), (0, 0, 0)])
def test_commonjs_file_gets_one_setup_and_a_function_per_call(cursors, tmp_path, node_modules):
    out = compose(CJS, "node", cursors)
    assert_kept(CJS, out)
    assert_once(out, SETUP_MARKER, SETUP_END_MARKER, "require('alipay-sdk')", "function alipayClient(",
                "module.exports = { handler, helper };", *(f"function {fn}(" for fn in FUNCTIONS),
                *(f"module.exports.{fn} = {fn};" for fn in FUNCTIONS))
    # the file's own `fs` is reused (a second `const fs` was the reported breakage)
    assert "require('node:fs')" not in out and out.count("const fs") == 1
    # the added exports come after the file's own `module.exports = …`, which would drop them
    own = out.index("module.exports = {")
    assert all(out.index(f"module.exports.{fn} =") > own for fn in FUNCTIONS)
    # nothing is above the directive and the requires
    assert out.startswith("'use strict';\nconst fs = require('fs');\nconst path = require('node:path');\n")
    source = tmp_path / "shop.js"
    source.write_text(out)
    checked = subprocess.run(["node", "--check", str(source)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    loaded = node(tmp_path, node_modules, "import { createRequire } from 'node:module';"
                  "const m = createRequire(import.meta.url)('./shop.js');"
                  "console.log(JSON.stringify({keys: Object.keys(m).sort(), hello: m.handler({url: '/a/b'})}));")
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout) == {"keys": sorted(["handler", "helper", *FUNCTIONS]), "hello": "hello b"}


def test_es_module_gets_imports_and_exported_functions(tmp_path, node_modules):
    out = compose(ESM, "node", (3, 0, 7))
    assert_kept(ESM, out)
    assert_once(out, SETUP_MARKER, "import { AlipaySdk } from 'alipay-sdk';", "import fs from 'node:fs';",
                "export default answer;", *(f"export async function {fn}(" for fn in FUNCTIONS))
    assert "module.exports" not in out and "require(" not in out
    source = tmp_path / "shop.mjs"
    source.write_text(out)
    checked = subprocess.run(["node", "--check", str(source)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    loaded = node(tmp_path, node_modules, "const m = await import('./shop.mjs');"
                  "console.log(JSON.stringify({keys: Object.keys(m).sort(), answer: m.default}));")
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout) == {"keys": sorted(["default", "handler", *FUNCTIONS]),
                                         "answer": {"ok": True}}


@pytest.mark.parametrize("cursors", [(6, 11, 0), (10, 10, 10), (100, 0, 15)])
def test_egg_controller_gets_methods_in_its_class(cursors, tmp_path):
    out = compose(EGG, "node", cursors)
    assert_kept(EGG, out)
    assert_once(out, SETUP_MARKER, "require('alipay-sdk')", "module.exports = OrderController;",
                *(f"  async {fn}(" for fn in FUNCTIONS))
    assert "module.exports." not in out and "this.app" not in out
    # the set-up is at the top, the methods inside the class (before its closing brace)
    body = out[out.index("class OrderController"):out.index("\n}\n", out.index("class OrderController"))]
    assert out.index(SETUP_MARKER) < out.index("class OrderController")
    assert all(f"async {fn}(" in body for fn in FUNCTIONS)
    source = tmp_path / "order.js"
    source.write_text(out)
    checked = subprocess.run(["node", "--check", str(source)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    # the class's methods, as Egg sees them
    script = source.with_name("probe.js")
    script.write_text("const Module = require('node:module');\nconst load = Module._load;\n"
                      "Module._load = (r, ...a) => r === 'egg' ? { Controller: class {} } : r === 'alipay-sdk' "
                      "? { AlipaySdk: class {} } : load(r, ...a);\n"
                      "const C = require('./order.js');\n"
                      "console.log(JSON.stringify(Object.getOwnPropertyNames(C.prototype).sort()));\n")
    probe = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout) == sorted(["constructor", "index", "show", *FUNCTIONS])


@pytest.mark.parametrize("cursors", [(10, 0, 100), (0, 0, 0), (14, 14, 14)])
def test_python_file_gets_imports_once_and_a_def_per_call(cursors, tmp_path):
    out = compose(PYTHON, "python", cursors)
    assert_kept(PYTHON, out)
    assert_once(out, SETUP_MARKER, "def _alipay_client(", "import ssl\n", "import re\n",
                "from alipay.aop.api.DefaultAlipayClient import DefaultAlipayClient",
                *(f"def {fn}(" for fn in FUNCTIONS),
                *(f"from alipay.aop.api.request.{cls} import {cls}" for cls in
                  ("AlipayTradePrecreateRequest", "AlipayTradeQueryRequest", "AlipayTradeRefundRequest")))
    # json and os were imported by the file already (`import os, sys` counts)
    assert out.count("import json") == 1 and "import os\n" not in out
    assert out.startswith('"""The shop\'s handlers."""\n\nfrom __future__ import annotations\n')
    source = tmp_path / "shop_handlers.py"
    source.write_text(out)
    checked = subprocess.run([sys.executable, "-m", "py_compile", str(source)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    loaded = subprocess.run([sys.executable, "-c", "import json, shop_handlers as m; print(json.dumps("
                             "[m.handler({'name': 'x'}), sorted(n for n in dir(m) if n.startswith('trade'))]))"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert loaded.returncode == 0, loaded.stderr
    hello, functions = json.loads(loaded.stdout)
    assert json.loads(hello)["hello"] == "x" and functions == sorted(FUNCTIONS)


@pytest.mark.parametrize("cursors", [(8, 0, 100), (12, 12, 12), (2, 2, 2)])
def test_java_class_gets_methods_and_merged_imports(cursors, tmp_path):
    if shutil.which("javac") is None:
        pytest.skip("javac is not installed")
    out = compose(JAVA, "java", cursors)
    assert_kept(JAVA, out)
    assert_once(out, SETUP_MARKER, "class MinicloudAlipay", "import java.util.Map;", "import java.util.List;",
                "import java.net.http.HttpClient;", "public class Orders {",
                *(f"public static String {fn}(" for fn in FUNCTIONS))
    # the imports come after the package line; the methods inside the class
    assert out.startswith("package shop;\n") and out.index("import java.net.URI;") < out.index("public class")
    assert out.rstrip().endswith("}") and out.count("\n}") == 1
    source = tmp_path / "shop" / "Orders.java"
    source.parent.mkdir()
    source.write_text(out)
    compiled = subprocess.run(["javac", "-d", str(tmp_path / "classes"), str(source)], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr
    methods = subprocess.run(["javap", "-cp", str(tmp_path / "classes"), "shop.Orders"], capture_output=True, text=True)
    assert all(f" {fn}(" in methods.stdout for fn in FUNCTIONS) and " count()" in methods.stdout


def test_java_wildcard_and_existing_imports_are_not_repeated():
    source = "import java.util.*;\nimport java.net.URI;\n\nclass A { int x; }\n"
    out = apply_edits(source, insert_call(source, "alipay.trade.query", "java", 0, GRANTED))
    assert "import java.util.Map;" not in out and out.count("import java.net.URI;") == 1
    assert "import java.net.http.HttpClient;" in out
    # a closing brace that shares its line with code: the method goes before it, inside the class
    assert out.rstrip().endswith("}") and out.index("tradeQuery(") < out.rindex("}")


@pytest.mark.parametrize("lang, source", [("node", CJS), ("node", ESM), ("node", EGG), ("python", PYTHON),
                                          ("java", JAVA)])
def test_the_same_call_twice_adds_nothing_the_second_time(lang, source):
    once = apply_edits(source, insert_call(source, "alipay.trade.query", lang, 5, GRANTED))
    assert insert_call(once, "alipay.trade.query", lang, 3, GRANTED) == []


def test_an_empty_file_gets_a_working_module(tmp_path):
    out = compose("", "node", (0, 0, 0))
    assert_once(out, SETUP_MARKER, "const fs = require('node:fs');", *(f"function {fn}(" for fn in FUNCTIONS))
    out_py = compose("", "python", (0, 0, 0))
    source = tmp_path / "empty.py"
    source.write_text(out_py)
    assert subprocess.run([sys.executable, "-m", "py_compile", str(source)]).returncode == 0


def test_a_file_whose_fs_is_something_else_gets_its_own_name(tmp_path):
    source = "const fs = require('fs').promises;\n\nasync function main() {\n  return fs.readFile('x');\n}\n"
    out = apply_edits(source, insert_call(source, "alipay.trade.query", "node", 5, GRANTED))
    assert "const alipayFs = require('node:fs');" in out and "alipayFs.readFileSync(" in out
    (tmp_path / "a.js").write_text(out)
    assert subprocess.run(["node", "--check", str(tmp_path / "a.js")]).returncode == 0


def test_crlf_file_stays_crlf_and_utf16_columns():
    source = "const s = '𝄞';\r\nclass A extends Controller { x() { return s; } }\r\n"
    out = apply_edits(source, insert_call(source, "alipay.trade.query", "node", 1, GRANTED))
    assert "\n" not in out.replace("\r\n", "")
    assert out.index("async tradeQuery(") < out.rindex("}") and "const s = '𝄞';" in out


def test_unsigned_and_unknown_calls_are_refused():
    with pytest.raises(CodegenError) as err:
        insert_call(CJS, "alipay.trade.create", "node", 0, GRANTED)
    assert "not granted" in err.value.message
    with pytest.raises(CodegenError):
        insert_call(CJS, "alipay.trade.precreat", "node", 0, GRANTED)


def test_the_standalone_file_is_still_whole():
    code = generate("alipay.trade.precreate", "node", None).code
    assert "module.exports" in code and "require.main === module" in code
    assert code.count(SETUP_MARKER) == 1
