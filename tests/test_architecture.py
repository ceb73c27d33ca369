"""The architecture invariants of ARCHITECTURE.md, checked on the import graph and the CLI."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold():
    """Every "Architecture Invariant" about imports is a contract in pyproject.toml; lint-imports checks them."""
    lint = Path(sys.executable).parent / "lint-imports"
    out = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "BROKEN" not in out.stdout and "KEPT" in out.stdout


def test_a_broken_boundary_fails_the_check(tmp_path):
    """The check is real: a codegen module that imports the cloud breaks its contract."""
    for package in ("deploy_bridge", "lsp_server", "codegen"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "codegen" / "sneaky.py").write_text("from deploy_bridge import cloud  # noqa\n")
    lint = Path(sys.executable).parent / "lint-imports"
    out = subprocess.run([str(lint)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode != 0
    assert "codegen.sneaky -> deploy_bridge.cloud" in out.stdout


def test_the_sandbox_image_holds_every_module_its_programs_import():
    from deploy_bridge.images import IN_IMAGE_SOURCES

    graph = grimp.build_graph("deploy_bridge", "codegen")
    needed = {"deploy_bridge.services"} | {m for m in graph.find_downstream_modules("deploy_bridge.services")}
    needed |= {m for m in graph.modules if m.startswith("deploy_bridge.services")}

    def shipped(module: str) -> bool:
        parts = module.split(".")
        candidates = ["/".join(parts) + ".py", "/".join(parts) + "/__init__.py", "/".join(parts)]
        return any(c == src or c.startswith(src + "/") for c in candidates for src in IN_IMAGE_SOURCES)

    missing = sorted(m for m in needed if not shipped(m))
    assert missing == [], f"imported by deploy_bridge.services but not in the sandbox image: {missing}"
    # and the package __init__ files along the way are the real ones, not stubs
    assert "deploy_bridge/__init__.py" in IN_IMAGE_SOURCES and "codegen/__init__.py" in IN_IMAGE_SOURCES


def test_every_verb_in_the_readme_is_a_verb_of_the_cli():
    from deploy_bridge.cli import build_parser

    readme = (ROOT / "README.md").read_text()
    documented = set()
    for words in re.findall(r"`minicloud ((?:[a-z]+)(?: [a-z]+)?)", readme):
        documented.add(tuple(w for w in words.split() if w.islower()))
    parser = build_parser()
    top = next(a for a in parser._actions if isinstance(a, type(parser._subparsers._group_actions[0])))
    known = {}
    for name, sub in top.choices.items():
        nested = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"]
        known[name] = set(nested[0].choices) if nested else set()
    assert documented, "README names no verbs?"
    for words in documented:
        verb = words[0]
        assert verb in known, f"README names `minicloud {verb}`, which the CLI lacks"
        if known[verb] and len(words) > 1 and words[1] in known[verb] | {"env", "test", "prod"}:
            continue
        if known[verb] and len(words) > 1:
            assert words[1] in known[verb], f"README names `minicloud {' '.join(words)}`, which the CLI lacks"


def test_a_broken_verb_module_fails_loudly(tmp_path):
    """The CLI imports its verb modules: a broken one is an error, never a silently missing verb."""
    shutil.copytree(ROOT / "deploy_bridge", tmp_path / "deploy_bridge", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "codegen", tmp_path / "codegen", ignore=shutil.ignore_patterns("__pycache__"))
    broken = tmp_path / "deploy_bridge" / "cli" / "capabilities.py"
    broken.write_text(broken.read_text() + "\nimport no_such_module_here  # noqa\n")
    out = subprocess.run([sys.executable, "-m", "deploy_bridge.cli", "--help"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode != 0 and "no_such_module_here" in out.stderr


def test_the_keeper_brings_back_every_service_role():
    """The keeper runs in its own image and cannot import the roles registry: its list must be the same."""
    from deploy_bridge.roles import SERVICE_ROLES
    from deploy_bridge.services.keeper import SERVICES

    assert set(SERVICES) == {role.name for role in SERVICE_ROLES}
