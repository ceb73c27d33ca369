"""`minicloud`: the verbs users type, each a thin call into `Cloud` (the language server calls the same).

Results go to stdout (`--json` for machines), progress and errors to stderr, so pipes stay clean.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from ..errors import BadInput, Cancelled, MinicloudError
from ..progress import Progress, for_terminal
from . import capabilities, data, functions, metrics, parsing, sandbox
from .parsing import add_verb, common_options

Handler = Callable[[argparse.Namespace], int]


def _cloud(args: argparse.Namespace):
    from ..cloud import Cloud

    return Cloud(args.workspace)


def _progress(args: argparse.Namespace) -> Progress:
    progress = for_terminal(quiet=args.quiet, machine_output=args.json)
    _open_progress.append(progress)
    return progress


_open_progress: list[Progress] = []  # bars to end before the result or an error is printed


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    _close_progress()  # the bar's last line stays above the result
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        print(text)


def _deployed(args: argparse.Namespace, result) -> int:
    line = f"{result.app}/{result.env} release {result.release} is live at {result.url} ({result.seconds:.1f}s)"
    grey = result.canary or {}
    if grey.get("state") == "running":
        line = (f"{result.app}/{result.env} release {result.release} takes {grey['percent']}% of the users at "
                f"{result.url}\n  minicloud canary {result.env} | promote {result.env} | rollback {result.env}")
    elif grey:
        line = f"{result.app}/{result.env} canary {result.release} {grey['state']}: {grey.get('reason', '')}"
    if result.previous:
        line += f"\n  previous release: {result.previous}"
    _emit(args, result.to_json(), line)
    return 1 if grey.get("state") == "aborted" else 0


# ----------------------------------------------------------------------------- handlers
def cmd_env_build(args: argparse.Namespace) -> int:
    return _deployed(args, _cloud(args).build_env(args.env, _progress(args)))


def cmd_env_destroy(args: argparse.Namespace) -> int:
    cloud = _cloud(args)
    cloud.destroy_env(args.env, with_data=args.with_data, progress=_progress(args))
    kept = "" if args.with_data else " (database volume and credentials kept; --with-data removes them)"
    _emit(args, {"env": args.env, "app": cloud.app, "destroyed": True, "data_kept": not args.with_data},
          f"{cloud.app}/{args.env} destroyed{kept}")
    return 0


def _duration(text: str) -> float:
    """5m, 90s, 1h -> seconds (the canary's judging window)."""
    from ..manifest import parse_duration

    value = parse_duration(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected a duration from 10s to 24h like 5m or 90s, got {text!r}")
    return value


def cmd_deploy(args: argparse.Namespace) -> int:
    judge = args.judge if args.judge is not None else (300.0 if args.auto else None)
    if judge is not None and args.canary is None:
        raise BadInput("--auto and --judge judge a canary: add --canary PERCENT")
    if args.no_canary and args.canary is not None:
        raise BadInput("--no-canary and --canary contradict each other: keep one")
    return _deployed(args, _cloud(args).deploy(args.env, _progress(args), canary=args.canary, judge_seconds=judge,
                                               all_at_once=args.no_canary))


def cmd_canary(args: argparse.Namespace) -> int:
    view = _cloud(args).canary_status(args.env)

    def row(what: str, r: dict) -> str:
        rate = f"{r['error_rate']:.2f}%" if r["error_rate"] is not None else "-"
        p95 = f"{r['p95_ms']} ms" if r["p95_ms"] is not None else "-"
        return f"{what:9} {r['release'] or '-':28} requests {r['requests']:7}  errors {rate:>7}  p95 {p95}"

    _emit(args, view, "\n".join([f"{view['app']}/{view['env']}: {view['percent']}% of the users on the canary",
                                   row("baseline", view["baseline"]), row("canary", view["canary"])]))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    return _deployed(args, _cloud(args).promote(args.env, _progress(args)))


def cmd_rollback(args: argparse.Namespace) -> int:
    return _deployed(args, _cloud(args).rollback(args.env, to=args.to, progress=_progress(args)))


def cmd_releases(args: argparse.Namespace) -> int:
    releases = _cloud(args).releases(args.env)
    lines = [f"{'*' if r.current else ' '} {r.id}  {r.created}  {r.image}" for r in releases]
    _emit(args, {"env": args.env, "releases": [vars(r) for r in releases]},
          "\n".join(lines) or f"no releases in {args.env} yet (minicloud deploy {args.env})")
    return 0


def _status_text(status) -> str:
    lines = [f"{status.app}/{status.env}: {status.state}  release {status.release or '-'}  {status.url}"]
    for c in status.containers:
        cpu = f"{c.cpu_percent:5.1f}%" if c.cpu_percent is not None else "    -"
        mem = f"{c.mem_bytes / 2**20:7.1f} MiB" if c.mem_bytes is not None else "        -"
        lines.append(f"  {c.role:8} {c.state:9} {c.health or '':9} {cpu} {mem}  {c.name}")
    for t in status.tasks or []:
        lines.append(f"  task {t['slot'] or '-':<3} {t['state']:9} {t.get('health', '-'):8} {t['node']:20} "
                     f"{t['release'] or '-'}" + ("  canary" if t.get("canary") else "")
                     + (f"  {t['error']}" if t["error"] else ""))
    if status.collections:
        lines.append("  collections: " + ", ".join(f"{c['name']} ({c['count']})" for c in status.collections))
    return "\n".join(lines)


def _lifecycle(verb: str) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        status = getattr(_cloud(args), verb)(args.env, progress=_progress(args))
        _emit(args, status.to_json(), _status_text(status))
        return 0

    return handler


STATUS_EXIT = {"running": 0, "not-built": 3}  # degraded, stopped: 1 (the env does not serve as it should)


def cmd_status(args: argparse.Namespace) -> int:
    status = _cloud(args).status(args.env)
    _emit(args, status.to_json(), _status_text(status))
    return STATUS_EXIT.get(status.state, 1)


def cmd_scale(args: argparse.Namespace) -> int:
    status = _cloud(args).scale(args.env, args.replicas, _progress(args))
    _emit(args, status.to_json(), _status_text(status))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    roles = [args.role] if args.role else None
    out = sys.stdout
    encode = json.JSONEncoder(ensure_ascii=False).encode  # one encoder for all lines of a flood
    if args.fn and not roles:
        roles = ["function"]
    for batch in _cloud(args).log_batches(args.env, follow=args.follow, since=args.since, tail=args.tail,
                                          grep=args.grep, roles=roles, fn=args.fn):
        if args.json:
            out.write("".join(encode(line.to_json()) + "\n" for line in batch))
        else:
            out.write("".join(line.to_text() + "\n" for line in batch))
        out.flush()  # once per batch: a flood is a few writes a second, not one per line
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    cloud = _cloud(args)
    if args.execute is None:
        argv, environ = cloud.db_shell_command(args.env)
        os.execvpe(argv[0], argv, environ)
    results = cloud.db_query(args.env, args.execute)
    tables = ["\n".join(["\t".join(r.columns)] + ["\t".join("NULL" if v is None else str(v) for v in row)
                                                  for row in r.rows]) if r.columns else "(no rows)"
              for r in results]
    _emit(args, [r.to_json() for r in results], "\n\n".join(tables) or "OK")
    return 0


def cmd_vars(args: argparse.Namespace) -> int:
    found = _cloud(args).injected_vars(args.env)
    _emit(args, [vars(v) for v in found], "\n".join(f"{v.name}={v.value}    # {v.source}" for v in found))
    return 0


def cmd_ca(args: argparse.Namespace) -> int:
    from ..ca import ensure_ca
    from ..config import settings

    path = str(ensure_ca(settings().instance_dir() / "ca").cert_path)
    _emit(args, {"ca": path}, path)
    return 0


def cmd_images_build(args: argparse.Namespace) -> int:
    from .. import engine, images

    built = images.ensure_all(engine.client(), args.names or list(images.RECIPES), _progress(args))
    _emit(args, built, "\n".join(f"{name}: {tag}" for name, tag in built.items()))
    return 0


# ----------------------------------------------------------------------------- parser
def _tail(text: str) -> int:
    from ..logs import parse_tail

    try:
        return parse_tail(text)
    except BadInput as err:
        raise argparse.ArgumentTypeError(err.message) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minicloud", description="A local cloud for mini-program backends.",
                                     parents=[common_options(top_level=True)])
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, func: Handler, help: str, env: bool = True, parent=sub) -> argparse.ArgumentParser:
        return parsing.verb(parent, name, func, help, env)

    env = add_verb(sub, "env", "build or destroy an environment")
    env_sub = env.add_subparsers(dest="env_verb", required=True, metavar="VERB")
    verb("build", cmd_env_build, "network, database, gateway, sandbox and a first deploy", parent=env_sub)
    destroy = verb("destroy", cmd_env_destroy, "remove the environment's containers and network (the last one "
                   "of this cloud removes the gateway too)", parent=env_sub)
    destroy.add_argument("--with-data", action="store_true",
                         help="also remove the database volume and its credentials")

    dp = verb("deploy", cmd_deploy, "build the workspace into a new release and switch to it with no failed request")
    dp.add_argument("--canary", type=int, metavar="PERCENT",
                    help="a grey release: send PERCENT of the users to it (sticky), the others stay")
    dp.add_argument("--auto", action="store_true", help="judge the canary over 5 minutes: promote or abort it")
    dp.add_argument("--judge", type=_duration, metavar="DURATION", help="judge the canary over DURATION (e.g. 2m)")
    dp.add_argument("--no-canary", action="store_true",
                    help="switch every user at once, even with [deploy] canary in the manifest")
    verb("canary", cmd_canary, "the serving release and the canary side by side: requests, error rate, p95")
    verb("promote", cmd_promote, "move every user to the canary (the old release drains and stops)")
    verb("releases", cmd_releases, "list the releases of an environment, newest first")
    rb = verb("rollback", cmd_rollback, "switch back to an earlier release (no rebuild); with a canary running, remove it")
    rb.add_argument("--to", metavar="RELEASE", help="release id or a unique prefix (default: the previous)")
    verb("restart", _lifecycle("restart"), "a fresh container of the running release, with no failed request")
    verb("stop", _lifecycle("stop"), "stop the environment's containers (its URL answers 503)")
    verb("start", _lifecycle("start"), "start the environment's containers again")
    scale = verb("scale", cmd_scale, "run N app tasks on a swarm env (0 stops the app)")
    scale.add_argument("replicas", type=int, metavar="N", help="app tasks, from 0 to 50")
    verb("status", cmd_status, "state, release, URL, health, CPU and memory per container "
         "(exit 0 only when the env serves and is healthy)")
    logs = verb("logs", cmd_logs, "the environment's logs, merged across containers")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("--since", help="e.g. 10m, 2h, 30s or an ISO time")
    logs.add_argument("--tail", type=_tail, metavar="N", help="the last N lines of each container")
    logs.add_argument("--grep", help="only lines matching this regular expression")
    logs.add_argument("--role", metavar="ROLE",
                      help="only one role's lines: app, db, sandbox, functions (the scheduler), function, data "
                           "(the data API), datadb (its PostgreSQL), gateway")
    logs.add_argument("--fn", metavar="NAME", help="only the invocations of this function (with --role function)")
    db = verb("db", cmd_db, "run SQL in the environment's database (a shell without -e)")
    db.add_argument("-e", "--execute", metavar="SQL")
    verb("vars", cmd_vars, "the variables injected into the app (secrets masked)")
    verb("ca", cmd_ca, "print the path of the local CA certificate", env=False)
    images = add_verb(sub, "images", "the locally built images")
    images_sub = images.add_subparsers(dest="images_verb", required=True, metavar="VERB")
    ib = verb("build", cmd_images_build, "build (or confirm cached) base and runtime images", env=False,
              parent=images_sub)
    ib.add_argument("names", nargs="*", help="recipes to build (default: all)")
    # the verbs of the open platform: imported, not discovered, so a broken module fails loudly
    capabilities.register(sub)
    sandbox.register(sub)
    functions.register(sub)
    metrics.register(sub)
    data.register(sub)
    return parser


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    finally:
        _close_progress()


def _close_progress() -> None:
    for progress in _open_progress:
        if hasattr(progress, "close"):
            progress.close()
    _open_progress.clear()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Ctrl-C arrives as KeyboardInterrupt in the main thread; verbs clean up in their finally blocks.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _run(args)
    except Cancelled as err:
        print(f"minicloud: {err.render()}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("minicloud: interrupted", file=sys.stderr)
        return 130
    except MinicloudError as err:
        print(f"minicloud: {err.render()}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:
        return 0
    except UnicodeDecodeError as err:
        print(f"minicloud: error: a file is not UTF-8 text ({err.reason} at byte {err.start})", file=sys.stderr)
        return BadInput.exit_code


if __name__ == "__main__":
    sys.exit(main())
