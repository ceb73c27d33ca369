"""`minicloud fn deploy|invoke|list`: the env's cloud functions."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import BadInput
from .parsing import add_verb, verb


def _cloud(args: argparse.Namespace):
    from ..cloud import Cloud

    return Cloud(args.workspace)


def _event(text: str | None) -> Any:
    """--data JSON, or @FILE holding JSON; {} when absent."""
    if text is None:
        return {}
    source = "--data"
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise BadInput(f"--data @{path}: cannot read it ({err})") from None
        source = str(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise BadInput(f"{source}: not JSON: {err.msg} (line {err.lineno}, column {err.colno})") from None


def cmd_deploy(args: argparse.Namespace) -> int:
    from . import _emit, _progress

    result = _cloud(args).fn_deploy(args.env, args.names or None, _progress(args))
    lines = [f"{name} {version}" for name, version in sorted(result["versions"].items())]
    _emit(args, result, "\n".join(lines) + f"\nlive in {result['seconds']:.2f}s")
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    from . import _emit

    call = _cloud(args).fn_invoke(args.env, args.name, _event(args.data))
    text = json.dumps(call.result, indent=2, ensure_ascii=False)
    _emit(args, call.to_json(), text)
    print(f"{args.name}: HTTP {call.status}, {call.duration_ms:.1f} ms, {'cold' if call.cold else 'warm'}, "
          f"instance {call.instance or '-'}, request {call.request_id or '-'}", file=sys.stderr)
    return 0 if call.status == 200 else 1


def cmd_list(args: argparse.Namespace) -> int:
    from . import _emit

    status = _cloud(args).fn_list(args.env)
    lines = []
    for name, fn in sorted(status.get("functions", {}).items()):
        p95 = f"{fn['p95_ms']} ms" if fn.get("p95_ms") is not None else "-"
        lines.append(f"{name:24} {fn['version']}  reserved {fn['reserved']}  on-demand {fn['on_demand']}  "
                     f"busy {fn['busy']}  idle {fn['idle']}  queue {fn['queue']}  invocations {fn['invocations']}  "
                     f"errors {fn['errors']}  p95 {p95}")
    lines += [f"pool {runtime}: {count} warm" for runtime, count in sorted(status.get("pool", {}).items())]
    _emit(args, status, "\n".join(lines) or "no functions")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    fn = add_verb(sub, "fn", "cloud functions: deploy code, invoke, list")
    verbs = fn.add_subparsers(dest="fn_verb", required=True, metavar="VERB")
    deploy = verb(verbs, "deploy", cmd_deploy, "deploy function code only (no image build; none of the calls fails)")
    deploy.add_argument("names", nargs="*", metavar="NAME", help="the functions to deploy (default: all)")
    invoke = verb(verbs, "invoke", cmd_invoke, "invoke a function; prints its result (duration, cold or warm on stderr)")
    invoke.add_argument("name", metavar="NAME")
    invoke.add_argument("--data", metavar="JSON|@FILE", help="the event (default {})")
    verb(verbs, "list", cmd_list, "each function's version, instances, queue, invocations, errors, p95; the pool")
