"""`minicloud abilities …` and `minicloud codegen …`: registered into the `minicloud` CLI."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from codegen.abilities import (
    AbilityError,
    grant,
    granted_methods,
    load_workspace_abilities,
    verify_package_file,
    workspace_trust,
)
from codegen.catalog import load_catalog
from codegen.generate import LANGUAGES, CodegenError, generate

from ..errors import MinicloudError
from ..manifest import find_workspace
from .parsing import add_verb, verb


def _workspace(args: argparse.Namespace) -> Path:
    return find_workspace(args.workspace)


def cmd_grant(args: argparse.Namespace) -> int:
    try:
        written = grant(_workspace(args), args.env, args.packages, days=args.days)
    except KeyError as err:
        raise MinicloudError(str(err.args[0])) from None
    for path in written:
        print(f"granted: {path}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    workspace = _workspace(args)
    trusted, app_id = workspace_trust(workspace, args.env)
    files = [Path(f) for f in args.files] or sorted((workspace / "abilities").glob("*.json"))
    if not files:
        raise MinicloudError("no package files to verify", hint=f"minicloud abilities grant {args.env} PACKAGE")
    bad = 0
    results = []
    for path in files:
        try:
            ability = verify_package_file(path, trusted, app_id)
            results.append({"file": str(path), "ok": True, "package": ability.label, "apis": list(ability.apis)})
            if not args.json:
                print(f"ok        {path}: {ability.label} ({len(ability.apis)} APIs, until {ability.expires_at})")
        except AbilityError as err:
            bad += 1
            results.append({"file": str(path), "ok": False, "kind": err.kind, "message": err.message})
            if not args.json:
                print(f"{err.kind:9} {path}: {err.message}", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    return 1 if bad else 0


def cmd_list(args: argparse.Namespace) -> int:
    abilities, errors = load_workspace_abilities(_workspace(args), args.env)
    granted = granted_methods(abilities)
    catalog = load_catalog()
    rows = [{"package": p.label, "name": p.name, "signed": any(a.package == p.name for a in abilities),
             "apis": [{"method": m, "granted": m in granted} for m in p.apis]} for p in catalog.packages]
    if args.json:
        print(json.dumps({"packages": rows, "errors": [vars(e) for e in errors]}, indent=2, ensure_ascii=False))
        return 0
    for row in rows:
        mark = "signed  " if row["signed"] else "        "
        print(f"{mark}{row['package']}  ({row['name']})")
        for api in row["apis"]:
            print(f"          {'✓' if api['granted'] else ' '} {api['method']}")
    for err in errors:
        print(f"{err.kind}: {err.file}: {err.message}", file=sys.stderr)
    return 0


def cmd_cloud_sdk(args: argparse.Namespace) -> int:
    """`minicloud codegen cloud-sdk --lang js|python [--out FILE]`: the data API's SDK into the workspace."""
    from codegen.cloud_sdk import sdk_file

    try:
        name, source = sdk_file(args.lang)
    except ValueError as err:
        raise MinicloudError(str(err)) from None
    out = Path(args.out) if args.out else _workspace(args) / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(source, encoding="utf-8")
    print(f"wrote {out} (the data API's client; docs/data-api.md)", file=sys.stderr)
    return 0


def cmd_codegen(args: argparse.Namespace) -> int:
    if args.method == "cloud-sdk":
        return cmd_cloud_sdk(args)
    if args.lang not in LANGUAGES:
        raise MinicloudError(f"--lang {args.lang}: capability calls are generated for {', '.join(sorted(LANGUAGES))}")
    workspace = _workspace(args)
    abilities, _ = load_workspace_abilities(workspace, args.env)
    try:
        generated = generate(args.method, args.lang, granted_methods(abilities))
    except CodegenError as err:
        raise MinicloudError(err.message, hint=err.hint_for(args.env)) from None
    if args.out:
        Path(args.out).write_text(generated.code)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(generated.code)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    abilities = add_verb(sub, "abilities", "signed ability packages: grant, verify, list")
    verbs = abilities.add_subparsers(dest="abilities_verb", required=True, metavar="VERB")
    names = ", ".join(p.label for p in load_catalog().packages)
    g = add_verb(verbs, "grant", "sign packages for this app with the local platform key")
    g.description = f"Known packages: {names}"
    g.add_argument("env", metavar="ENV")
    g.add_argument("packages", nargs="+", metavar="PACKAGE", help="product code (e.g. FACE_TO_FACE_PAYMENT) or name")
    g.add_argument("--days", type=int, default=365, help="validity (default 365)")
    g.set_defaults(func=cmd_grant)
    v = verb(verbs, "verify", cmd_verify, "check package files; non-zero exit on any bad one", env=False)
    v.add_argument("files", nargs="*", metavar="FILE", help="default: abilities/*.json")
    v.add_argument("--env", default="test")
    verb(verbs, "list", cmd_list, "the catalog's packages, which are signed, what they grant",
         env=False).add_argument("--env", default="test")
    c = add_verb(sub, "codegen", "print code that calls a signed capability; `codegen cloud-sdk --lang js|python` "
                                 "writes the data API's client into the workspace")
    c.add_argument("method", metavar="METHOD", help="e.g. alipay.trade.precreate, or cloud-sdk")
    c.add_argument("--lang", choices=sorted({*LANGUAGES, "js"}), default="node")
    c.add_argument("--env", default="test")
    c.add_argument("--out", metavar="FILE")
    c.set_defaults(func=cmd_codegen)
