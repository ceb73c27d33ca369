"""codegen: the catalog, signed ability packages (and every way they are refused), generated code."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from codegen.abilities import AbilityError, grant, load_workspace_abilities, sign_package, verify_package_file
from codegen.catalog import load_catalog
from codegen.generate import CodegenError, generate
from codegen.keys import ensure_env_keys, env_keys


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "minicloud.toml").write_text('[app]\nname = "shop"\nruntime = "nodejs"\nstart = "node s.js"\nport = 3000\n')
    return tmp_path


def test_catalog_has_the_packages_and_apis_with_required_params():
    catalog = load_catalog()
    assert len(catalog.packages) >= 6 and len(catalog.apis) >= 14
    assert catalog.package("FACE_TO_FACE_PAYMENT").name == "当面付"
    assert catalog.package("芝麻信用").product_code is None
    pay = catalog.api("alipay.trade.pay")
    assert {p.name for p in pay.required} == {"out_trade_no", "total_amount", "subject", "auth_code", "scene"}
    assert catalog.api("alipay.system.oauth.token").biz_content is False
    assert catalog.missing_params("alipay.trade.query", {}) == ["out_trade_no|trade_no"]
    assert catalog.missing_params("alipay.trade.query", {"trade_no": "1"}) == []
    assert catalog.missing_params("alipay.trade.refund", {"out_trade_no": "1"}) == ["refund_amount"]
    for api in catalog.apis:
        assert api.packages, f"{api.method} is granted by no package"
        assert all(p.description for p in api.params)


def test_keys_are_private_and_stable(workspace: Path):
    assert env_keys(workspace, "test") is None
    keys = ensure_env_keys(workspace, "test")
    assert ensure_env_keys(workspace, "prod").app_id == keys.app_id  # one app, one platform
    for private in (keys.platform_private, keys.app_private):
        assert private.stat().st_mode & 0o777 == 0o600
    assert keys.folder.stat().st_mode & 0o777 == 0o700
    assert len(keys.app_id) == 16 and keys.app_id.isdigit()


def test_granted_package_verifies_and_each_refusal_says_why(workspace: Path, tmp_path: Path):
    [path] = grant(workspace, "test", ["FACE_TO_FACE_PAYMENT"])
    abilities, errors = load_workspace_abilities(workspace, "test")
    assert errors == [] and "alipay.trade.precreate" in abilities[0].apis
    keys = env_keys(workspace, "test")
    trusted = {keys.key_id: keys.platform_public}

    # one byte changed
    text = path.read_text()
    path.write_text(text.replace('"alipay.trade.pay"', '"alipay.trade.paY"'))
    with pytest.raises(AbilityError) as err:
        verify_package_file(path, trusted, keys.app_id)
    assert err.value.kind == "tampered" and err.value.line > 1
    path.write_text(text)

    with pytest.raises(AbilityError) as err:
        verify_package_file(path, trusted, "9021000000000000")
    assert err.value.kind == "wrong_app" and "9021000000000000" in err.value.message

    old = sign_package("当面付", keys.app_id, keys.platform_private, keys.key_id, days=1,
                       now=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    expired = tmp_path / "old.json"
    expired.write_text(json.dumps(old))
    with pytest.raises(AbilityError) as err:
        verify_package_file(expired, trusted, keys.app_id)
    assert err.value.kind == "expired" and "2020-01-02" in err.value.message

    other = ensure_env_keys(tmp_path / "elsewhere", "test") if (tmp_path / "elsewhere").mkdir() is None else None
    foreign = sign_package("当面付", keys.app_id, other.platform_private, other.key_id)
    stranger = tmp_path / "foreign.json"
    stranger.write_text(json.dumps(foreign))
    with pytest.raises(AbilityError) as err:
        verify_package_file(stranger, trusted, keys.app_id)
    assert err.value.kind == "unknown_key"

    garbage = tmp_path / "garbage.json"
    garbage.write_text('{"format": ')
    with pytest.raises(AbilityError) as err:
        verify_package_file(garbage, trusted, keys.app_id)
    assert err.value.kind == "invalid" and "line 1" in err.value.message


def test_cli_verify_fails_on_a_tampered_file_and_codegen_refuses_unsigned(workspace: Path):
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "deploy_bridge.cli", "--workspace", str(workspace), *args],
                              capture_output=True, text=True)

    assert cli("abilities", "grant", "test", "FACE_TO_FACE_PAYMENT", "小程序授权").returncode == 0
    assert cli("abilities", "verify").returncode == 0
    out = cli("codegen", "alipay.trade.create", "--lang", "node")
    assert out.returncode != 0 and "JSAPI_PAY" in out.stderr and out.stdout == ""
    ok = cli("codegen", "alipay.trade.precreate", "--lang", "python")
    assert ok.returncode == 0 and "AlipayTradePrecreateRequest" in ok.stdout
    package = workspace / "abilities" / "FACE_TO_FACE_PAYMENT.json"
    package.write_text(package.read_text().replace("alipay.trade.close", "alipay.trade.create"))
    out = cli("abilities", "verify")
    assert out.returncode == 1 and "tampered" in out.stderr and "FACE_TO_FACE_PAYMENT.json" in out.stderr
    # the tampered package grants nothing any more
    assert cli("codegen", "alipay.trade.precreate").returncode != 0
    out = cli("abilities", "grant", "test", "NO_SUCH_THING")
    assert out.returncode != 0 and "FACE_TO_FACE_PAYMENT" in out.stderr


COMPILERS = {
    "node": lambda f, d: ["node", "--check", str(f)],
    "python": lambda f, d: [sys.executable, "-m", "py_compile", str(f)],
    "java": lambda f, d: ["javac", "-d", str(d), str(f)],
}


@pytest.mark.parametrize("lang", sorted(COMPILERS))
@pytest.mark.parametrize("method", ["alipay.trade.precreate", "alipay.trade.query", "alipay.system.oauth.token",
                                    "alipay.trade.wap.pay", "alipay.trade.app.pay", "zhima.credit.score.get"])
def test_generated_code_compiles_and_holds_no_secret(lang: str, method: str, tmp_path: Path, workspace: Path):
    tool = COMPILERS[lang](tmp_path / "x", tmp_path)[0]
    if shutil.which(tool) is None and tool != sys.executable:
        pytest.skip(f"{tool} is not installed")
    keys = ensure_env_keys(workspace, "test")
    code = generate(method, lang, None)
    source = tmp_path / code.filename
    source.write_text(code.code)
    result = subprocess.run(COMPILERS[lang](source, tmp_path), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    key_body = "".join(keys.app_private.read_text().splitlines()[1:-1])
    assert "-----BEGIN" not in code.code and key_body[:40] not in code.code and keys.app_id not in code.code
    for name in (p.name for p in load_catalog().api(method).required):
        assert name in code.code


def test_unknown_method_and_language():
    with pytest.raises(CodegenError) as err:
        generate("alipay.trade.precreat", "node", None)
    assert "unknown capability" in err.value.message
    with pytest.raises(CodegenError):
        generate("alipay.trade.precreate", "cobol", None)


def test_the_hint_names_the_env_as_the_diagnostics_do(tmp_path):
    """`minicloud codegen` for an unsigned method says `grant test …`, not `grant ENV …`."""
    import subprocess
    import sys

    (tmp_path / "minicloud.toml").write_text('[app]\nname = "shop"\nruntime = "nodejs"\nstart = "x"\nport = 1\n')
    out = subprocess.run([sys.executable, "-m", "deploy_bridge.cli", "-w", str(tmp_path), "codegen",
                          "alipay.trade.precreate", "--env", "test"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "minicloud abilities grant test " in out.stderr and "grant ENV" not in out.stderr
