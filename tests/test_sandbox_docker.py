"""Generated calling code, run with the official SDKs against the sandbox gateway of a real env.

Signature checks are on both ways: the sandbox checks the SDK's RSA2 signature, the generated code
(through the SDK) checks the platform's signature on every answer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from codegen.generate import generate

pytestmark = pytest.mark.docker
NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture(scope="module")
def node_sdk() -> Path:
    if not (NODE_DIR / "node_modules" / "alipay-sdk").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR, check=True)
    return NODE_DIR / "node_modules"


@pytest.fixture(scope="module")
def sandbox(cloud_env):
    """The env's sandbox with 当面付 and 小程序授权 signed (not 小程序支付), and the variables to reach it."""
    from deploy_bridge.sandbox.client import sandbox_info

    out = cli(cloud_env.workspace, "abilities", "grant", "test", "FACE_TO_FACE_PAYMENT", "小程序授权")
    assert out.returncode == 0, out.stderr
    info = sandbox_info(cloud_env.cloud, "test")
    env = {**os.environ, "ALIPAY_APP_ID": info["app_id"], "ALIPAY_GATEWAY": info["gateway"],
           "ALIPAY_ENDPOINT": info["endpoint"], "ALIPAY_APP_PRIVATE_KEY_PATH": info["app_private_key_path"],
           "ALIPAY_PUBLIC_KEY_PATH": info["platform_public_key_path"], "MINICLOUD_CA_FILE": info["ca_file"],
           "NODE_EXTRA_CA_CERTS": info["ca_file"]}
    return info, env


def cli(workspace: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploy_bridge.cli", "--workspace", str(workspace), *args],
                          capture_output=True, text=True, timeout=120)


def run_generated(method: str, lang: str, args: dict, env: dict, tmp: Path, node_modules: Path,
                  granted: set[str] | None = None) -> dict:
    code = generate(method, lang, granted)
    source = tmp / code.filename
    source.write_text(code.code)
    if lang == "node":
        cmd = ["node", str(source), json.dumps(args)]
        env = {**env, "NODE_PATH": str(node_modules)}
    elif lang == "python":
        cmd = [sys.executable, str(source), json.dumps(args)]
    else:
        compiled = subprocess.run(["javac", "-d", str(tmp), str(source)], capture_output=True, text=True)
        assert compiled.returncode == 0, compiled.stderr
        cmd = ["java", "-cp", str(tmp), source.stem, *(f"{k}={v}" for k, v in args.items())]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert result.stdout.strip(), result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("lang", ["node", "python", "java"])
def test_generated_code_runs_a_trade_through_the_sandbox(lang, sandbox, cloud_env, node_sdk, tmp_path):
    if lang == "java" and shutil.which("javac") is None:
        pytest.skip("javac is not installed")
    info, env = sandbox
    trade = f"{lang}-{uuid.uuid4().hex[:10]}"
    created = run_generated("alipay.trade.precreate", lang,
                            {"out_trade_no": trade, "total_amount": "12.50", "subject": "green tea"},
                            env, tmp_path, node_sdk)
    assert created["code"] == "10000" and created["qr_code"]
    query = run_generated("alipay.trade.query", lang, {"out_trade_no": trade}, env, tmp_path, node_sdk)
    assert query["code"] == "10000" and query["trade_status"] == "WAIT_BUYER_PAY"
    paid = cli(cloud_env.workspace, "sandbox", "pay", "test", trade, "--json")
    assert paid.returncode == 0 and json.loads(paid.stdout)["status"] == "TRADE_SUCCESS"
    refund = run_generated("alipay.trade.refund", lang, {"out_trade_no": trade, "refund_amount": "2.50"},
                           env, tmp_path, node_sdk)
    assert refund["code"] == "10000" and refund["refund_fee"] == "2.50"
    query = run_generated("alipay.trade.query", lang, {"out_trade_no": trade}, env, tmp_path, node_sdk)
    assert query["trade_status"] == "TRADE_SUCCESS"
    # top-level parameters (not biz_content): a member's auth code, as `minicloud sandbox login` prints it
    member = "2088102150477652"
    login = cli(cloud_env.workspace, "sandbox", "login", "test", "--user", member)
    assert login.returncode == 0, login.stderr
    token = run_generated("alipay.system.oauth.token", lang,
                          {"grant_type": "authorization_code", "code": login.stdout.strip()}, env, tmp_path, node_sdk)
    assert token["code"] == "10000" and token["access_token"] and token["user_id"] == member
    # the call shows in the env's logs
    deadline = time.monotonic() + 10
    while trade not in cli(cloud_env.workspace, "logs", "test", "--role", "sandbox", "--grep", trade).stdout:
        assert time.monotonic() < deadline, "the sandbox's log line never arrived"
        time.sleep(0.3)


@pytest.mark.parametrize("lang", ["node", "python", "java"])
def test_unsigned_method_gets_the_permission_error(lang, sandbox, node_sdk, tmp_path):
    if lang == "java" and shutil.which("javac") is None:
        pytest.skip("javac is not installed")
    _, env = sandbox
    # generated without the signing check, to see what the gateway says
    answer = run_generated("alipay.trade.create", lang,
                           {"out_trade_no": "x1", "total_amount": "1.00", "subject": "s", "buyer_id": "2088"},
                           env, tmp_path, node_sdk, granted=None)
    response = answer.get("error", answer)
    assert "isv.insufficient-isv-permissions" in json.dumps(response, ensure_ascii=False)


def test_missing_parameter_bad_signature_and_v3(sandbox, node_sdk, tmp_path):
    _, env = sandbox
    script = tmp_path / "v3.js"
    script.write_text("""
const fs = require('node:fs');
const { AlipaySdk } = require('alipay-sdk');
const make = (keyPath) => new AlipaySdk({
  appId: process.env.ALIPAY_APP_ID, endpoint: process.env.ALIPAY_ENDPOINT, gateway: process.env.ALIPAY_GATEWAY,
  privateKey: fs.readFileSync(keyPath, 'ascii'),
  alipayPublicKey: fs.readFileSync(process.env.ALIPAY_PUBLIC_KEY_PATH, 'ascii'),
});
(async () => {
  const out = {};
  const sdk = make(process.env.ALIPAY_APP_PRIVATE_KEY_PATH);
  const v3 = await sdk.curl('POST', '/v3/alipay/trade/precreate',
    { body: { out_trade_no: 'v3-' + Date.now(), total_amount: '1.00', subject: 'v3' } });
  out.v3 = v3.data;
  try { await sdk.curl('POST', '/v3/alipay/trade/query', { body: {} }); } catch (e) { out.missing = e.code; }
  const missing = await sdk.exec('alipay.trade.precreate', { bizContent: { subject: 's' } }, { validateSign: true });
  out.v2missing = missing;
  const wrong = make(process.env.OTHER_KEY);
  out.badsig = await wrong.exec('alipay.trade.query', { bizContent: { out_trade_no: 'x' } });
  console.log(JSON.stringify(out));
})().catch((e) => { console.log(JSON.stringify({ fatal: e.message })); });
""")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = tmp_path / "other.pem"
    other.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    result = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60,
                            env={**env, "NODE_PATH": str(node_sdk), "OTHER_KEY": str(other)})
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert "fatal" not in out, out
    assert out["v3"]["qr_code"]  # v3 answer verified by the SDK (alipay-signature header)
    assert out["missing"] == "isv.missing-parameter"
    # exec() answers with camelCased keys by default
    assert out["v2missing"]["code"] == "40001" and "out_trade_no" in out["v2missing"]["subMsg"]
    assert out["badsig"]["subCode"] == "isv.invalid-signature"


def test_tampered_package_grants_nothing(cloud_env, sandbox, node_sdk, tmp_path):
    _, env = sandbox
    package = cloud_env.workspace / "abilities" / "FACE_TO_FACE_PAYMENT.json"
    good = package.read_text()
    package.write_text(good.replace("alipay.trade.cancel", "alipay.trade.create"))
    try:
        verify = cli(cloud_env.workspace, "abilities", "verify")
        assert verify.returncode == 1 and "tampered" in verify.stderr
        answer = run_generated("alipay.trade.query", "python", {"out_trade_no": "x"}, env, tmp_path, node_sdk)
        assert "isv.insufficient-isv-permissions" in json.dumps(answer)
        assert cli(cloud_env.workspace, "codegen", "alipay.trade.query").returncode != 0
    finally:
        package.write_text(good)


def test_sandbox_info_json(cloud_env, sandbox):
    out = cli(cloud_env.workspace, "sandbox", "info", "test", "--json")
    info = json.loads(out.stdout)
    assert info["gateway"].endswith(".localhost:" + os.environ["MINICLOUD_GATEWAY_PORT"] + "/gateway.do")
    for key in ("app_private_key_path", "platform_public_key_path"):
        assert Path(info[key]).read_text().startswith("-----BEGIN")
    assert Path(info["app_private_key_path"]).stat().st_mode & 0o777 == 0o600


def test_the_sandbox_log_says_what_a_new_grant_allows(cloud_env, sandbox):
    """A grant made while the sandbox runs shows in its log at once, with the env's own name in hints."""
    package = cloud_env.workspace / "abilities" / "QUICK_WAP_WAY.json"
    package.unlink(missing_ok=True)
    try:
        assert cli(cloud_env.workspace, "abilities", "grant", "test", "QUICK_WAP_WAY").returncode == 0
        deadline = time.monotonic() + 20
        while True:
            out = cli(cloud_env.workspace, "logs", "test", "--role", "sandbox", "--grep", "granted")
            lines = out.stdout.strip().splitlines()
            if lines and "alipay.trade.wap.pay" in lines[-1] and "granted now" in lines[-1]:
                break
            assert time.monotonic() < deadline, lines[-3:]
            time.sleep(0.3)
        assert "grant ENV" not in out.stdout
    finally:
        package.unlink(missing_ok=True)
