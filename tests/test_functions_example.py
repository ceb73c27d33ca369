"""The functions example, as a user runs it: a function that reads the database, one that calls the
sandbox capability with generated code (its SDK installed at deploy), a Python one, and the mini-program
front end (run by Node) that places and reads its member's orders through the data API and calls a
function that reads them all with `context.cloud`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from .conftest import copy_example

pytestmark = pytest.mark.docker


def minicloud(ws, *args: str) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "deploy_bridge.cli", "-w", str(ws), *args], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return run


def test_the_functions_example_reads_the_database_and_calls_the_sandbox(docker_engine, tmp_path):
    from deploy_bridge.cloud import Cloud

    ws = copy_example("functions-shop", tmp_path)
    cloud = Cloud(ws)
    try:
        cloud.build_env("test")
        minicloud(ws, "abilities", "grant", "test", "FACE_TO_FACE_PAYMENT", "小程序授权")
        added = cloud.fn_invoke("test", "products", {"add": {"name": "matcha", "price_cents": 1500}})
        assert added.status == 200, added.result
        assert [p["name"] for p in added.result["products"]] == ["matcha"]
        # the row is in the env's database, where the app would see it too
        rows = cloud.db_query("test", "SELECT name FROM fn_products")[0].rows
        assert rows == [["matcha"]]
        trade = cloud.fn_invoke("test", "precreate", {"out_trade_no": "FN-ORDER-1"})
        assert trade.status == 200, trade.result
        assert trade.result["out_trade_no"] == "FN-ORDER-1" and trade.result["qr_code"]
        hello = cloud.fn_invoke("test", "hello", {"name": "py"})
        assert hello.status == 200 and hello.result["hello"] == "py" and hello.result["env"] == "test"
        # the mini-program, as its README says to try it: the SDK generated into it, a member's auth code
        minicloud(ws, "codegen", "cloud-sdk", "--lang", "js", "--out", str(ws / "miniprogram" / "minicloud-cloud.js"))
        member = "2088102150477652"
        code = minicloud(ws, "sandbox", "login", "test", "--user", member).stdout.strip()
        node = shutil.which("node")
        assert node, "node is needed to run the example's front end"
        front = subprocess.run([node, str(ws / "miniprogram" / "try-in-node.js"), cloud.url("test"), code],
                               capture_output=True, text=True, timeout=60,
                               env={**os.environ, "NODE_EXTRA_CA_CERTS": cloud.ca_path()})
        assert front.returncode == 0, front.stderr
        out = json.loads(front.stdout)
        assert [o["_id"] for o in out["mine"]] == [out["placed"]] and out["mine"][0]["_owner"] == member
        assert out["stats"] == {"orders": 1, "biggest": 18, "askedBy": member}
    finally:
        cloud.destroy_env("test", with_data=True)
