"""The functions example, as a user runs it: a function that reads the database, one that calls the
sandbox capability with generated code (its SDK installed at deploy), and a Python one."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import copy_example

pytestmark = pytest.mark.docker


def test_the_functions_example_reads_the_database_and_calls_the_sandbox(docker_engine, tmp_path):
    from deploy_bridge.cloud import Cloud

    ws = copy_example("functions-shop", tmp_path)
    cloud = Cloud(ws)
    try:
        cloud.build_env("test")
        grant = subprocess.run([sys.executable, "-m", "deploy_bridge.cli", "-w", str(ws), "abilities", "grant",
                                "test", "FACE_TO_FACE_PAYMENT"], capture_output=True, text=True, timeout=60)
        assert grant.returncode == 0, grant.stderr
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
    finally:
        cloud.destroy_env("test", with_data=True)
