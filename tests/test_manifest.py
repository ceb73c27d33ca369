"""minicloud.toml validation: every problem names file, line and key; the schema drives both uses."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from deploy_bridge.config import Settings
from deploy_bridge.credentials import credentials
from deploy_bridge.errors import ManifestError, ManifestNotFound, UnknownEnv
from deploy_bridge.manifest import (
    APP_NAME_MAX,
    ENV_NAME_MAX,
    SCHEMA,
    TABLES,
    BuildConfig,
    EnvConfig,
    Manifest,
    check_manifest_text,
    find_workspace,
    load_manifest,
    parse_duration,
    parse_manifest,
)

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
            assert f.doc and f.kind in {"string", "integer", "boolean", "strings"}, f


# ---------------------------------------------------------------- defaults: the schema is the one definition

MINIMAL = '[app]\nname = "shop"\nruntime = "nodejs"\nstart = "node server.js"\nport = 3000\n'
WITH_FUNCTION = MINIMAL + "[functions.f]\n"


def _parsed_value(m, table: str, key: str):
    """Where parse_manifest puts the value of schema key `table.key`."""
    readers = {
        "app": lambda: getattr(m, key),
        "env.*": lambda: getattr(m.env("test"), key),
        "build": lambda: getattr(m.build, key),
        "images": lambda: m.images.get(key),
        # [functions] holds the pool and every function's defaults; a function inherits them
        "functions": lambda: m.functions.pool if key == "pool" else getattr(m.functions.functions["f"], key),
        "functions.*": lambda: getattr(m.functions.functions["f"], key),
        "alerts": lambda: m.alerts.get(key),
        "data": lambda: getattr(m.data, key),
        # a collection's rules have no default: absent is "the server only"
        "data.collections.*": lambda: m.data.collections.get("orders", {}).get(key),
    }
    return readers[table]()


def test_every_schema_default_is_what_parse_manifest_returns_when_the_key_is_omitted(tmp_path: Path):
    m = parse_manifest(WITH_FUNCTION + "[data]\n[data.collections.orders]\n", tmp_path / "minicloud.toml")
    optional = [(t.path, f) for t in SCHEMA for f in t.fields if not f.required]
    assert {path for path, _ in optional} == {"app", "env.*", "build", "images", "functions", "functions.*",
                                              "alerts", "deploy.canary", "data", "data.collections.*"}
    # [deploy] canary exists only with its percent: its judge's default, read from one that has it
    canary = parse_manifest(GOOD + "[deploy.canary]\npercent = 10\n", tmp_path / "minicloud.toml").canary
    assert canary.judge_seconds == parse_duration(TABLES["deploy.canary"].field("judge").default)
    optional = [(path, f) for path, f in optional if path != "deploy.canary"]
    for path, f in optional:
        # a function's own keys default to [functions]'s (their schema default is None: "inherit")
        expected = TABLES["functions"].field(f.name).default if path == "functions.*" else f.default
        assert _parsed_value(m, path, f.name) == expected, f"{path}.{f.name}"
    # the dataclasses' own defaults are the schema's too
    for cls, table in ((Manifest, "app"), (EnvConfig, "env.*"), (BuildConfig, "build")):
        for dc_field in dataclasses.fields(cls):
            fld = TABLES[table].field(dc_field.name)
            if fld is not None and not fld.required:
                assert dc_field.default == fld.default, f"{table}.{fld.name}"


def test_parse_manifest_reads_defaults_from_the_schema(monkeypatch, tmp_path: Path):
    def changed(table: str, key: str, default):
        old = TABLES[table]
        fields = tuple(dataclasses.replace(f, default=default) if f.name == key else f for f in old.fields)
        monkeypatch.setitem(TABLES, table, dataclasses.replace(old, fields=fields))

    changed("app", "health_timeout", 123)
    changed("env.*", "sandbox", False)
    changed("build", "trust_host_ca", False)
    m = parse_manifest(MINIMAL, tmp_path / "minicloud.toml")
    assert (m.health_timeout, m.env("prod").sandbox, m.build.trust_host_ca) == (123, False, False)


# ---------------------------------------------------------------- bad bytes, BOM, empty file


def _load(tmp_path: Path, raw: bytes):
    (tmp_path / "minicloud.toml").write_bytes(raw)
    return load_manifest(tmp_path)


def test_a_non_utf8_byte_is_a_manifest_error_with_its_line_and_column(tmp_path: Path):
    raw = GOOD.replace('start = "node server.js"', 'start = "nöde \udcff"').encode("utf-8", "surrogateescape")
    with pytest.raises(ManifestError) as err:
        _load(tmp_path, raw)
    assert (err.value.line, err.value.column, err.value.exit_code) == (4, 15, 2)
    assert "not UTF-8" in err.value.render() and "0xff" in err.value.render()
    assert f"{tmp_path / 'minicloud.toml'}:4:" in err.value.render()


def test_a_byte_order_mark_is_accepted(tmp_path: Path):
    m = _load(tmp_path, b"\xef\xbb\xbf" + GOOD.encode())
    assert (m.name, m.port) == ("shop", 3000)
    errors, _ = check_manifest_text("\ufeff" + GOOD.replace("port = 3000", "port = 0"), "m.toml")
    assert [(e.key, e.line) for e in errors] == [("app.port", 5)]


@pytest.mark.parametrize("raw", [b"", b"\n  \n", b"\xef\xbb\xbf"])
def test_an_empty_file_is_one_clear_manifest_error(tmp_path: Path, raw: bytes):
    with pytest.raises(ManifestError) as err:
        _load(tmp_path, raw)
    assert err.value.exit_code == 2 and "empty" in err.value.problem and "[app]" in err.value.problem


def test_deep_nesting_is_a_manifest_error_not_a_traceback():
    errors, _ = check_manifest_text(MINIMAL + "x = " + "[" * 50000 + "]" * 50000 + "\n", "m.toml")
    assert len(errors) == 1 and errors[0].exit_code == 2


# ---------------------------------------------------------------- names fit where they are used


def test_a_long_app_name_fails_in_validation_naming_the_key_the_limit_and_the_line(tmp_path: Path):
    errors, _ = check_manifest_text(GOOD.replace('"shop"', '"' + "a" * 70 + '"'), "m.toml")
    assert [(e.key, e.line) for e in errors] == [("app.name", 2)]
    assert str(APP_NAME_MAX) in errors[0].problem and "70" in errors[0].problem
    with pytest.raises(ManifestError) as err:
        _load(tmp_path, GOOD.replace('"shop"', '"' + "a" * 70 + '"').encode())
    assert f"{tmp_path / 'minicloud.toml'}:2: app.name:" in err.value.render() and err.value.exit_code == 2
    assert str(APP_NAME_MAX) in TABLES["app"].field("name").doc  # documented where editors show it


def test_a_long_env_name_or_a_trailing_hyphen_fails_in_validation():
    errors, _ = check_manifest_text(GOOD.replace("[env.prod]\n", "[env." + "p" * 21 + "]\n"), "m.toml")
    assert [(e.key, e.line) for e in errors] == [("env." + "p" * 21, 9)]
    assert str(ENV_NAME_MAX) in errors[0].problem and str(ENV_NAME_MAX) in TABLES["env"].doc
    errors, _ = check_manifest_text(GOOD.replace('"shop"', '"shop-"'), "m.toml")
    assert [(e.key, e.line) for e in errors] == [("app.name", 2)]


def test_the_longest_names_allowed_fit_docker_dns_and_mariadb(tmp_path: Path):
    app, env = "a" * (APP_NAME_MAX - 1) + "1", "e" * ENV_NAME_MAX
    text = GOOD.replace('"shop"', f'"{app}"').replace("[env.prod]\n[env.prod.vars]", f"[env.{env}]\n[env.{env}.vars]")
    m = parse_manifest(text, tmp_path / "minicloud.toml")
    assert env in m.envs
    s = Settings(home=tmp_path, instance="default", gateway_port=8443)
    assert all(len(label) <= 63 for label in s.app_host(app, env).split("."))
    creds = credentials(tmp_path, env, app)
    assert len(creds.database) <= 64 and len(creds.user) <= 80


@pytest.mark.parametrize("written", ['[deploy]\ncanary = { percent = 15, judge = "90s" }\n',
                                     '[deploy.canary]\npercent = 15\njudge = "90s"\n'])
def test_deploy_canary_inline_or_as_a_table(tmp_path: Path, written: str):
    m = parse_manifest(GOOD + written, tmp_path / "minicloud.toml")
    assert (m.canary.percent, m.canary.judge_seconds) == (15, 90.0)
    assert parse_manifest(GOOD, tmp_path / "minicloud.toml").canary is None


def test_deploy_canary_errors_name_the_line_and_the_field():
    text = GOOD + '[deploy]\ncanary = { percent = 0, judge = "soon" }\n'
    problems, _ = check_manifest_text(text, "minicloud.toml")
    line = text.split("\n").index('canary = { percent = 0, judge = "soon" }') + 1
    assert {(p.line, p.key) for p in problems} == {(line, "deploy.canary.percent"), (line, "deploy.canary.judge")}
    assert any("at least 1" in p.message for p in problems)
    assert any("10s to 24h" in p.message for p in problems)
    missing, _ = check_manifest_text(GOOD + "[deploy.canary]\njudge = \"5m\"\n", "minicloud.toml")
    assert any("percent" in p.message and "missing" in p.message for p in missing)


def test_a_swarm_env_reads_its_engine_replicas_registry_and_placement(tmp_path: Path):
    text = GOOD.replace("[env.prod]\n", '[env.prod]\nengine = "swarm"\nreplicas = 3\nregistry = "10.0.0.5:5000"\n'
                                       'placement = ["node.labels.zone==a", "node.role != manager"]\n')
    prod, test = (parse_manifest(text, tmp_path / "minicloud.toml").env(e) for e in ("prod", "test"))
    assert (prod.engine, prod.replicas, prod.registry) == ("swarm", 3, "10.0.0.5:5000")
    assert list(prod.placement) == ["node.labels.zone==a", "node.role != manager"]
    assert (test.engine, test.replicas, test.registry, list(test.placement)) == ("local", 1, None, [])


@pytest.mark.parametrize(("line", "key", "says"), [
    ('engine = "k8s"', "engine", "one of local, swarm"),
    ("replicas = 0", "replicas", "at least 1"),
    ('registry = "https://reg.example.com/v2"', "registry", "not HOST:PORT"),
    ('placement = ["zone a"]', "placement", "not a constraint"),
    ("gateway_port = 8444", "gateway_port", "is for swarm envs"),
])
def test_swarm_settings_errors_name_the_line_and_say_what_is_wrong(line, key, says):
    text = GOOD.replace("[env.prod]\n", f"[env.prod]\n{line}\n")
    problems, _ = check_manifest_text(text, "minicloud.toml")
    assert [(p.line, p.key) for p in problems] == [(text.split("\n").index(line) + 1, f"env.prod.{key}")]
    assert says in problems[0].message


def test_every_verb_of_a_swarm_env_takes_its_swarm_branch_before_the_local_engines_code():
    """Architecture Invariant: a verb that reaches the local engine's code (`_check_local`) has asked whether
    the env is on a swarm (`_swarm`) first, or is refused there by `_check_local` itself."""
    import inspect

    from deploy_bridge.cloud import Cloud

    local_paths = ("self._check_local(env)", "self._begin(env", "self._bring_up(env")  # the last two check too
    checked = []
    for name, method in inspect.getmembers(Cloud, inspect.isfunction):
        source = inspect.getsource(method)
        found = [source.index(path) for path in local_paths if path in source]
        if name.startswith("_") or not found:
            continue
        checked.append(name)
        assert "self._swarm(env)" in source[:min(found)], f"Cloud.{name} reaches the local engine without a swarm branch"
    assert {"deploy", "status", "rollback", "promote", "start", "fn_deploy", "metrics", "canary_status"} <= set(checked)


def test_a_verb_of_swarm_envs_only_is_refused_on_a_local_env_by_name(tmp_path: Path):
    from deploy_bridge.cloud import Cloud
    from deploy_bridge.errors import BadInput, MinicloudError

    (tmp_path / "minicloud.toml").write_text(GOOD.replace("[env.prod]\n", '[env.prod]\nengine = "swarm"\n'))
    cloud = Cloud(tmp_path)
    with pytest.raises(BadInput, match="scale is for swarm envs"):
        cloud.scale("test", 2)
    with pytest.raises(MinicloudError, match='runs on a swarm') as refused:
        cloud._check_local("prod")  # what a verb with no swarm branch would say
    assert "fn invoke" in refused.value.hint and "logs" in refused.value.hint


def test_a_swarm_env_is_named_and_reached_on_its_own_gateway_port(tmp_path: Path):
    from deploy_bridge.cloud import Cloud

    (tmp_path / "minicloud.toml").write_text(GOOD.replace("[env.prod]\n", '[env.prod]\nengine = "swarm"\ngateway_port = 8444\n'))
    cloud = Cloud(tmp_path)
    assert cloud.url("prod").endswith(".localhost:8444") and cloud.sandbox_url("prod").endswith(":8444")
    injected = {v.name: v.value for v in cloud.injected_vars("prod")}
    assert injected["MINICLOUD_URL"] == cloud.url("prod") and ":8444/" in injected.get("ALIPAY_GATEWAY", ":8444/")
    assert not cloud.url("test").endswith(":8444"), "the other envs keep the instance's port"
