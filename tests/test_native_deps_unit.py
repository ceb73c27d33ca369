"""Native dependencies without an engine: the [build] packages fields, the two-stage Dockerfile, and
failed dependency steps explained in one line with the [build] line that fixes them."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from deploy_bridge import images
from deploy_bridge.errors import BuildFailed, ManifestError
from deploy_bridge.manifest import TABLES, check_manifest_text, parse_manifest
from deploy_bridge.progress import NullProgress
from deploy_bridge.releases import apt_step, dockerfile, explain_build_failure, first_error_line

DATA = Path(__file__).parent / "data" / "native_deps"

APP = """\
[app]
name = "djshop"
runtime = "{runtime}"
start = "python3 app.py"
port = 8000

[env.test]
"""
PACKAGES = '\n[build]\npackages = ["pkg-config", "default-libmysqlclient-dev", "build-essential"]\n'


def manifest(extra: str = "", runtime: str = "python", tmp: Path = Path("/tmp/ws")):
    return parse_manifest(APP.format(runtime=runtime) + extra, tmp / "minicloud.toml")


# ------------------------------------------------------------------ the manifest


def test_packages_parse_as_lists_of_names():
    m = manifest(PACKAGES + 'runtime_packages = ["libmariadb3"]\n')
    assert m.build.packages == ("pkg-config", "default-libmysqlclient-dev", "build-essential")
    assert m.build.runtime_packages == ("libmariadb3",)
    assert manifest().build.packages == () and manifest().build.runtime_packages == ()


@pytest.mark.parametrize(("build", "line", "key", "says"), [
    ('packages = ["pkg-config", "Build_Essential"]', 10, "build.packages", "'Build_Essential' is not a Debian package"),
    ('packages = ["build-essential; rm -rf /"]', 10, "build.packages", "not a Debian package"),
    ('packages = "build-essential"', 10, "build.packages", "expected an array of strings, got string"),
    ('packages = [1]', 10, "build.packages", "item 1 is integer"),
    ('runtime_pakages = ["libmariadb3"]', 10, "build.runtime_pakages", "known keys: "),
])
def test_package_names_and_keys_are_checked_offline_with_file_and_line(build, line, key, says):
    problems, _ = check_manifest_text(APP.format(runtime="python") + "\n[build]\n" + build + "\n", "minicloud.toml")
    assert len(problems) == 1, [p.message for p in problems]
    problem = problems[0]
    assert (problem.line, problem.key) == (line, key) and says in problem.problem
    with pytest.raises(ManifestError):
        manifest("\n[build]\n" + build + "\n")


def test_the_schema_offers_the_build_keys_to_the_language_server():
    fields = {f.name: f for f in TABLES["build"].fields}
    assert fields["packages"].kind == fields["runtime_packages"].kind == "strings"
    assert fields["packages"].example.startswith("[") and "runtime_packages" in fields["packages"].doc


def test_the_language_server_completes_build_keys_and_array_values():
    from lsp_server.features.base import Context
    from lsp_server.features.manifest import ManifestFeature
    from lsp_server.index import Snapshot

    feature = ManifestFeature()
    text = APP.format(runtime="python") + "\n[build]\n"
    lines = text.split("\n")
    ctx = Context("file:///w/minicloud.toml", "toml", text, len(lines) - 1, 0, Snapshot("test"))
    ctx.match = feature.completion_trigger.match(ctx)
    labels = {item.label for item in feature.completion(ctx)}
    assert {"packages", "runtime_packages"} <= labels
    text += "packages = "
    lines = text.split("\n")
    ctx = Context("file:///w/minicloud.toml", "toml", text, len(lines) - 1, len(lines[-1]), Snapshot("test"))
    ctx.match = feature.completion_trigger.match(ctx)
    values = [item.text_edit.new_text for item in feature.completion(ctx)]
    assert values == ['["build-essential"]']
    diagnostics = feature.diagnostics("file:///w/minicloud.toml", "toml", text + '["Bad Name"]\n', Snapshot("test"))
    assert len(diagnostics) == 1 and "not a Debian package" in diagnostics[0].message


# ------------------------------------------------------------------ the Dockerfile


def test_without_packages_the_dockerfile_is_one_stage_as_before():
    df = dockerfile(manifest(), "BASE", "pip install -r requirements.txt", custom_install=False)
    assert df.count("FROM ") == 1 and "apt-get" not in df
    df = dockerfile(manifest('\n[build]\nruntime_packages = ["libvips42"]\n'), "BASE", "pip install -r r.txt", False)
    assert df.count("FROM ") == 1 and apt_step(("libvips42",)) in df


def test_packages_make_a_cached_build_stage_and_stay_out_of_the_image_that_runs():
    m = manifest(PACKAGES + 'runtime_packages = ["libmariadb3"]\n')
    df = dockerfile(m, "BASE", "pip install --no-cache-dir -r requirements.txt", custom_install=False)
    build, final = df.split("\n\nFROM ")
    steps = build.splitlines()
    assert steps[0] == "FROM BASE AS build"
    # the packages' own layer comes before the dependency files: cached while code and dependencies change
    packages = steps.index(apt_step(m.build.packages))
    assert packages < steps.index("COPY app/requirements.txt ./") < steps.index(
        next(s for s in steps if "pip install" in s))
    # the install step gets the CA bundle exactly as before
    assert "PIP_CERT=/tmp/ca.pem" in build and "COPY minicloud-build-ca.pem /tmp/minicloud-build-ca.pem" in build
    assert "build-essential" not in final and apt_step(("libmariadb3",)) in final
    assert "COPY --from=build /usr/local /usr/local" in final
    # the libraries are checked before the code comes in, so that layer stays cached too
    assert final.index("minicloud-missing-libraries") < final.index("COPY app/ ./") < final.index("CMD")


def test_node_packages_copy_node_modules_and_a_custom_install_copies_the_app():
    m = manifest('\n[build]\npackages = ["build-essential"]\n', runtime="nodejs")
    df = dockerfile(m, "BASE", "npm ci --omit=dev", custom_install=False)
    assert "COPY app/package*.json ./" in df and "COPY --from=build /app/node_modules /app/node_modules" in df
    assert "npm ci --omit=dev && mkdir -p /app/node_modules" in df
    df = dockerfile(m, "BASE", "npm ci && npm run build", custom_install=True)
    final = df.split("\n\nFROM ")[1]
    assert "COPY --from=build /app /app" in final and "COPY app/ ./" not in final


def test_the_nodejs_recipe_points_node_gyp_at_its_own_headers():
    recipe = images.recipe_context("nodejs", "BASE")["Dockerfile"].decode()
    assert "libnode-dev" in recipe and "npm_config_nodedir=/usr" in recipe


# ------------------------------------------------------------------ failures in minicloud's words


def _log(name: str) -> tuple[list[str], str]:
    lines = (DATA / name).read_text().splitlines()
    return lines, lines[-1]


def test_mysqlclient_without_packages_says_which_step_the_error_and_the_fix():
    log, error = _log("pip-mysqlclient.log")
    err = explain_build_failure(log, error, manifest(), "pip install --no-cache-dir -r requirements.txt", False)
    assert err.message == ("installing Python dependencies failed (pip install --no-cache-dir -r requirements.txt, "
                           "exit 1): Exception: Can not find valid pkg-config name.")
    assert err.hint.endswith('[build] packages = ["pkg-config", "default-libmysqlclient-dev", "build-essential", '
                             '"python3-dev"]  runtime_packages = ["libmariadb3"]')


def test_bcrypt_without_a_compiler_says_make_is_missing_and_the_fix():
    log, error = _log("npm-bcrypt.log")
    m = manifest(runtime="nodejs")
    err = explain_build_failure(log, error, m, "npm install --omit=dev --no-audit --no-fund", False)
    assert err.message.startswith("installing Node dependencies failed (npm install --omit=dev --no-audit --no-fund, "
                                  "exit 1): ")
    assert err.message.endswith("gyp ERR! stack Error: not found: make")
    assert err.hint.endswith('add to minicloud.toml  [build] packages = ["build-essential"]')


def test_a_missing_shared_library_at_run_time_names_the_runtime_package():
    log, error = _log("missing-runtime-lib.log")
    m = manifest(PACKAGES + '\n', runtime="python")
    err = explain_build_failure(log, error, m, "pip install -r requirements.txt", False)
    assert "lacks shared libraries" in err.message and "libmariadb.so.3" in err.message
    assert err.hint.endswith('[build] runtime_packages = ["libmariadb3"]')


@pytest.mark.parametrize(("output", "line", "fix"), [
    (["  fatal error: Python.h: No such file or directory", "error: command '/usr/bin/gcc' failed"],
     "fatal error: Python.h: No such file or directory", '["python3-dev", "build-essential"]'),
    (["Error: pg_config executable not found."], "Error: pg_config executable not found.", '"libpq-dev"'),
    (["  src/x.c:1:10: fatal error: ffi.h: No such file or directory"], "fatal error: ffi.h", '"libffi-dev"'),
    (["error: command 'x86_64-linux-gnu-gcc' failed: No such file or directory"], "x86_64-linux-gnu-gcc",
     '["build-essential", "python3-dev"]'),
    (["ERROR: Could not find a version that satisfies the requirement nosuch==9 (from versions: none)",
      "ERROR: No matching distribution found for nosuch==9"], "ERROR: Could not find a version", None),
])
def test_known_causes_and_the_first_real_error_line(output, line, fix):
    log = ["Step 5/9 : RUN cat /etc/ssl/certs/ca-certificates.crt /tmp/minicloud-build-ca.pem > /tmp/ca.pem; x",
           " ---> Running in 0123", *output, "The command '/bin/sh -c x' returned a non-zero code: 1"]
    err = explain_build_failure(log, log[-1], manifest(), "pip install -r requirements.txt", False)
    assert line in err.message and "exit 1" in err.message
    assert (fix in err.hint) if fix else err.hint is None


def test_a_bad_package_name_and_a_custom_step_are_named():
    m = manifest('\n[build]\npackages = ["no-such-pkg"]\n')
    log = [f"Step 2/9 : {apt_step(m.build.packages)}", "Reading package lists...",
           "E: Unable to locate package no-such-pkg", "The command 'x' returned a non-zero code: 100"]
    err = explain_build_failure(log, log[-1], m, "pip install -r requirements.txt", False)
    assert err.message == "installing [build] packages failed (exit 100): E: Unable to locate package no-such-pkg"
    assert "packages.debian.org" in err.hint
    log = ["Step 5/9 : RUN cat /etc/ssl/certs/ca-certificates.crt /tmp/minicloud-build-ca.pem > /tmp/ca.pem; x",
           "resolving dependencies", "The command 'x' returned a non-zero code: 7"]
    err = explain_build_failure(log, log[-1], manifest(), "make deps", True)
    assert err.message == "the [build] install step failed (make deps, exit 7): resolving dependencies"
    assert first_error_line(["npm ERR! code E404", "npm ERR! 404 Not Found - GET https://r/x - Not found"]) \
        == "404 Not Found - GET https://r/x - Not found"


def test_other_failed_steps_keep_the_generic_error():
    log = ["Step 6/9 : COPY app/ ./", "COPY failed: no source files"]
    assert explain_build_failure(log, log[-1], manifest(), "pip install -r r.txt", False) is None


class _FailingApi:
    def __init__(self, chunks):
        self.chunks = chunks

    def build(self, **_):
        yield from self.chunks


class _Client:
    def __init__(self, chunks):
        self.api = _FailingApi(chunks)


def test_docker_build_keeps_the_whole_log_in_a_file_and_names_it(tmp_path):
    log, error = _log("pip-mysqlclient.log")
    chunks = [{"stream": line + "\n"} for line in log[:-1]] + [{"error": error}]
    path = tmp_path / "logs" / "build.log"
    with pytest.raises(BuildFailed) as got:
        images.docker_build(_Client(chunks), io.BytesIO(), "t", {}, NullProgress(), "release x", log_path=path,
                            explain=lambda lines, e: explain_build_failure(lines, e, manifest(), "pip install", False))
    text = got.value.render()
    assert text.splitlines()[0].startswith("error: installing Python dependencies failed")
    assert f"the full build log: {path}" in text and len(text.splitlines()) == 3
    assert path.read_text().splitlines() == log
