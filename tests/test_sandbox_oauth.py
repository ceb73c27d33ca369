"""Members' login on the sandbox open platform: `POST /_sandbox/auth-code` issues a code, and
`alipay.system.oauth.token` (v2, top-level parameters) trades it once for the member's user_id.

The sandbox runs in-process on 127.0.0.1 with its own keys and signed packages; the calls are made by
the official Python SDK (alipay-sdk-python), which signs them and whose answers are verified with the
platform's public key, as an app's server does.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from alipay.aop.api.AlipayClientConfig import AlipayClientConfig
from alipay.aop.api.DefaultAlipayClient import DefaultAlipayClient
from alipay.aop.api.request.AlipaySystemOauthTokenRequest import AlipaySystemOauthTokenRequest
from alipay.aop.api.util.SignatureUtils import verify_with_rsa

from codegen.abilities import grant
from codegen.keys import ensure_env_keys
from deploy_bridge.services import sandbox_server


@dataclass
class Sandbox:
    url: str
    platform: sandbox_server.Platform
    app_id: str
    app_private: Path
    platform_public: Path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Keys for a sandbox app, and its signed packages (小程序授权) in abilities/."""
    folder = tmp_path_factory.mktemp("oauth-ws")
    ensure_env_keys(folder, "test")
    grant(folder, "test", ["小程序授权"])
    return folder


def start_sandbox(workspace: Path, abilities: Path) -> tuple[Sandbox, sandbox_server.ThreadingHTTPServer]:
    """A fresh sandbox open platform for the workspace's keys and the packages in `abilities`, on a free
    local port."""
    keys = ensure_env_keys(workspace, "test")
    args = argparse.Namespace(app_id=keys.app_id, key_id=keys.key_id, platform_private_key=keys.platform_private,
                              app_public_key=keys.app_public, abilities=abilities,
                              state=abilities.parent / f"state-{uuid.uuid4().hex}.json", env="test")
    platform = sandbox_server.make_platform(args)
    server = sandbox_server.serve(platform, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    return Sandbox(url, platform, keys.app_id, keys.app_private, keys.platform_public), server


@pytest.fixture
def sandbox(workspace) -> Iterator[Sandbox]:
    box, server = start_sandbox(workspace, workspace / "abilities")
    try:
        yield box
    finally:
        server.shutdown()
        server.server_close()


def post_json(url: str, payload: object) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def pem_body(path: Path) -> str:
    return "".join(line.strip() for line in path.read_text().splitlines() if line.strip() and "-----" not in line)


def oauth_token(box: Sandbox, **params: str) -> dict:
    """alipay.system.oauth.token through the official SDK; the answer's signature must verify."""
    config = AlipayClientConfig()
    config.server_url = box.url + "/gateway.do"
    config.app_id = box.app_id
    config.app_private_key = pem_body(box.app_private)
    config.alipay_public_key = pem_body(box.platform_public)
    config.sign_type = "RSA2"
    request = AlipaySystemOauthTokenRequest()
    for name, value in params.items():
        setattr(request, name, value)
    signed = DefaultAlipayClient(alipay_client_config=config).sdk_execute(request)
    req = urllib.request.Request(box.url + "/gateway.do", data=signed.encode(),
                                 headers={"content-type": "application/x-www-form-urlencoded;charset=utf-8"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read().decode()
    key = re.search(r'"(alipay_system_oauth_token_response|error_response)"\s*:\s*', text)
    sign = re.search(r',\s*"sign"\s*:\s*"([^"]+)"', text)
    assert key and sign, text
    content = text[key.end():sign.start()]
    assert verify_with_rsa(pem_body(box.platform_public), content.encode(), sign.group(1)), "answer not signed"
    return json.loads(content)


def test_an_auth_code_trades_once_for_the_members_user_id(sandbox):
    status, issued = post_json(sandbox.url + "/_sandbox/auth-code", {"user_id": "2088102150477652"})
    assert status == 200 and issued["expires_in"] == 300 and issued["auth_code"]
    token = oauth_token(sandbox, grant_type="authorization_code", code=issued["auth_code"])
    assert token["code"] == "10000", token
    assert token["user_id"] == "2088102150477652"
    assert token["access_token"] and token["refresh_token"] and token["access_token"] != token["refresh_token"]
    assert token["expires_in"] > 0 and token["re_expires_in"] >= token["expires_in"]
    # single use: the same code again is Alipay's invalid-code error
    again = oauth_token(sandbox, grant_type="authorization_code", code=issued["auth_code"])
    assert again["code"] == "40002" and again["sub_code"] == "isv.code-invalid", again
    # the refresh token gives the same member a new access token, once
    refreshed = oauth_token(sandbox, grant_type="refresh_token", refresh_token=token["refresh_token"])
    assert refreshed["code"] == "10000" and refreshed["user_id"] == "2088102150477652"
    assert refreshed["access_token"] != token["access_token"]
    reused = oauth_token(sandbox, grant_type="refresh_token", refresh_token=token["refresh_token"])
    assert reused["sub_code"] == "isv.refresh-token-invalid", reused


def test_two_members_get_their_own_user_ids(sandbox):
    codes = {uid: post_json(sandbox.url + "/_sandbox/auth-code", {"user_id": uid})[1]["auth_code"]
             for uid in ("2088000000000001", "2088000000000002")}
    assert len(set(codes.values())) == 2
    for uid, code in codes.items():
        assert oauth_token(sandbox, grant_type="authorization_code", code=code)["user_id"] == uid


def test_an_unknown_code_is_refused(sandbox):
    answer = oauth_token(sandbox, grant_type="authorization_code", code="4b203fe6c11548bcabd8da5bb087a83b")
    assert answer["code"] == "40002" and answer["msg"] == "Invalid Arguments"
    assert answer["sub_code"] == "isv.code-invalid" and "user_id" not in answer


def test_an_expired_code_is_refused(sandbox):
    issued = post_json(sandbox.url + "/_sandbox/auth-code", {"user_id": "2088102150477652"})[1]
    started = time.time()
    sandbox.platform.tokens.clock = lambda: started + 301  # 5 minutes and a second later
    answer = oauth_token(sandbox, grant_type="authorization_code", code=issued["auth_code"])
    assert answer["code"] == "40002" and answer["sub_code"] == "isv.code-invalid", answer
    # and one still inside its 5 minutes is taken
    sandbox.platform.tokens.clock = time.time
    fresh = post_json(sandbox.url + "/_sandbox/auth-code", {"user_id": "2088102150477652"})[1]
    sandbox.platform.tokens.clock = lambda: time.time() + 299
    assert oauth_token(sandbox, grant_type="authorization_code", code=fresh["auth_code"])["code"] == "10000"


@pytest.mark.parametrize("user_id", ["123", "2089102150477652", "20881021504776521", "208810215047765x", 2088102150477652,
                                     None])
def test_a_bad_user_id_is_400_naming_the_field(sandbox, user_id):
    status, answer = post_json(sandbox.url + "/_sandbox/auth-code", {"user_id": user_id} if user_id else {})
    assert status == 400 and "user_id" in answer["error"]


def test_a_bad_grant_type_and_a_missing_code(sandbox):
    wrong = oauth_token(sandbox, grant_type="password", code="abc")
    assert wrong["code"] == "40002" and wrong["sub_code"] == "isv.grant-type-invalid", wrong
    missing = oauth_token(sandbox, grant_type="authorization_code")
    assert missing["code"] == "40001", missing


def test_without_the_package_the_call_is_not_granted(workspace, tmp_path):
    box, server = start_sandbox(workspace, tmp_path)  # an abilities folder with no package
    try:
        code = post_json(box.url + "/_sandbox/auth-code", {"user_id": "2088102150477652"})[1]["auth_code"]
        answer = oauth_token(box, grant_type="authorization_code", code=code)
        assert answer["code"] == "40006" and answer["sub_code"] == "isv.insufficient-isv-permissions"
    finally:
        server.shutdown()
        server.server_close()
