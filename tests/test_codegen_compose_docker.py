"""Three "Generate call to …" actions composed into one Node (CommonJS) file and one Python file,
run against the sandbox gateway of a real env: each call's answer is the platform's."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from codegen.compose import apply_edits, insert_call

from .test_codegen_compose import CJS, PYTHON
from .test_sandbox_docker import cli, node_sdk, sandbox  # noqa: F401 - the fixtures, reused

pytestmark = pytest.mark.docker
GRANTED = {"alipay.trade.precreate", "alipay.trade.query", "alipay.trade.refund"}

NODE_DRIVER = """const shop = require(process.argv[2]);
const [step, trade] = [process.argv[3], process.argv[4]];
(async () => {
  const out = { hello: shop.handler({ url: '/x/y' }) };
  if (step === 'create') {
    out.created = await shop.tradePrecreate(trade, '12.50', 'green tea');
    out.query = await shop.tradeQuery({ out_trade_no: trade });
  } else {
    out.refund = await shop.tradeRefund('2.50', { out_trade_no: trade });
    out.query = await shop.tradeQuery({ out_trade_no: trade });
  }
  console.log(JSON.stringify(out));
})().catch((e) => { console.log(JSON.stringify({ fatal: e.message, response: e.response })); });
"""

PY_DRIVER = """import json, sys
sys.path.insert(0, sys.argv[1])
import shop_handlers as shop
step, trade = sys.argv[2], sys.argv[3]
out = {"hello": json.loads(shop.handler({"name": "y"}))["hello"]}
if step == "create":
    out["created"] = shop.tradePrecreate(trade, "12.50", "green tea")
    out["query"] = shop.tradeQuery(out_trade_no=trade)
else:
    out["refund"] = shop.tradeRefund("2.50", out_trade_no=trade)
    out["query"] = shop.tradeQuery(out_trade_no=trade)
print(json.dumps(out, ensure_ascii=False))
"""


def compose(source: str, lang: str) -> str:
    for method, cursor in (("alipay.trade.precreate", 5), ("alipay.trade.query", 0), ("alipay.trade.refund", 200)):
        source = apply_edits(source, insert_call(source, method, lang, cursor, GRANTED))
    return source


@pytest.mark.parametrize("lang", ["node", "python"])
def test_composed_file_runs_a_trade_through_the_sandbox(lang, sandbox, cloud_env, node_sdk, tmp_path):  # noqa: F811
    _, env = sandbox
    if lang == "node":
        module = tmp_path / "shop.js"
        module.write_text(compose(CJS, "node"))
        driver = tmp_path / "driver.js"
        driver.write_text(NODE_DRIVER)
        command = ["node", str(driver), str(module)]
        env = {**env, "NODE_PATH": str(node_sdk)}
        hello = "hello y"
    else:
        (tmp_path / "shop_handlers.py").write_text(compose(PYTHON, "python"))
        driver = tmp_path / "driver.py"
        driver.write_text(PY_DRIVER)
        command = [sys.executable, str(driver), str(tmp_path)]
        hello = "y"

    def run(step: str, trade: str) -> dict:
        result = subprocess.run([*command, step, trade], capture_output=True, text=True, env=env, timeout=60)
        assert result.stdout.strip(), result.stderr
        out = json.loads(result.stdout.strip().splitlines()[-1])
        assert "fatal" not in out, out
        assert out["hello"] == hello  # the file's own code still works beside the calls
        return out

    trade = f"compose-{lang}-{uuid.uuid4().hex[:8]}"
    first = run("create", trade)
    assert first["created"]["code"] == "10000" and first["created"]["qr_code"]
    assert first["query"]["code"] == "10000" and first["query"]["trade_status"] == "WAIT_BUYER_PAY"
    paid = cli(cloud_env.workspace, "sandbox", "pay", "test", trade, "--json")
    assert paid.returncode == 0 and json.loads(paid.stdout)["status"] == "TRADE_SUCCESS"
    second = run("refund", trade)
    assert second["refund"]["code"] == "10000" and second["refund"]["refund_fee"] == "2.50"
    assert second["query"]["trade_status"] == "TRADE_SUCCESS"

