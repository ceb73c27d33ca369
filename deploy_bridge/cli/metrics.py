"""`minicloud metrics|top|alerts ENV`: the env's series, a live view, and its alerts (read from the
instance's metrics.db, which the collector writes)."""

from __future__ import annotations

import argparse
import datetime as dt
import time

from ..errors import BadInput
from .parsing import verb

REFRESH_SECONDS = 2.0


def _workspace(args: argparse.Namespace):
    from ..cloud import Cloud

    ws = Cloud(args.workspace)
    ws._check_env(args.env)
    return ws


def _since(text: str, default_seconds: float) -> float:
    from ..logs import parse_since

    if not text:
        return time.time() - default_seconds
    when = parse_since(text)
    if when is None:
        raise BadInput(f"--since {text!r}: expected e.g. 10m, 1h, 24h or an ISO time")
    return when.timestamp()


def _clock(t: float | None) -> str:
    return dt.datetime.fromtimestamp(t).strftime("%H:%M:%S") if t else "-"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}ms"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}MiB"


def cmd_metrics(args: argparse.Namespace) -> int:
    from . import _emit

    ws = _workspace(args)
    data = ws.metrics(args.env, _since(args.since, 3600))
    if not args.json:
        for r in data["releases"]:
            r.pop("points")
        for c in data["containers"]:
            c.pop("points")
    lines = [f"{ws.app}/{args.env} since {_clock(data['since'])} (10 s buckets, 24 h kept)",
             f"  {'release':34} {'role':9} {'requests':>8} {'4xx':>6} {'5xx':>6} {'5xx %':>6} {'p50':>7} {'p95':>7} "
             f"{'p99':>7}"]
    for r in data["releases"]:
        lines.append(f"  {r['release']:34} {r['role']:9} {r['requests']:>8} {r['s4xx']:>6} {r['s5xx']:>6} "
                     f"{_pct(r['error_rate']):>6} {_ms(r['p50_ms']):>7} {_ms(r['p95_ms']):>7} {_ms(r['p99_ms']):>7}")
    if not data["releases"]:
        lines.append("  no requests in that time")
    lines.append(f"  {'container':50} {'cpu avg':>8} {'cpu max':>8} {'mem max':>11} {'restarts':>8}")
    for c in data["containers"]:
        lines.append(f"  {c['container']:50} {_pct(c['cpu_avg']):>8} {_pct(c['cpu_max']):>8} "
                     f"{_mib(c['memory_max']):>11} {c['restarts']:>8}")
    _emit(args, data, "\n".join(lines))
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    from . import _emit

    ws = _workspace(args)
    data = ws.alerts(args.env, _since(args.since, 24 * 3600))
    lines = []
    for e in data["events"]:
        on = f" on {e['subject']}" if e["subject"] else ""
        hook = f"  webhook {e['delivery']} ({e['attempts']} tries)" if e["webhook"] else ""
        lines.append(f"{_clock(e['at'])}  {e['state']:8} {e['alert']} ({e['rule']}){on}: {e['shown']}{hook}")
    lines.append("firing now: " + (", ".join(f"{f['alert']}" + (f" on {f['subject']}" if f["subject"] else "")
                                             for f in data["firing"]) or "none"))
    _emit(args, data, "\n".join(lines))
    return 0


def render(data: dict):
    """The `top` screen for one reading (a rich renderable)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    title = Text(f"{data['app']}/{data['env']}  {_clock(data['at'])}  (every {REFRESH_SECONDS:.0f} s; Ctrl-C ends)",
                 style="bold")
    releases = Table(box=None, header_style="bold")
    for column in ("release", "role", "req/s", "5xx", "4xx", "p95"):
        releases.add_column(column, justify="left" if column in ("release", "role") else "right")
    for r in data["releases"]:
        errors = _pct(r["error_rate"])
        releases.add_row(r["release"], r["role"], f"{r['rps']:.1f}",
                         Text(errors, style="red" if (r["error_rate"] or 0) > 1 else ""), _pct(r["s4xx_rate"]),
                         _ms(r["p95_ms"]))
    if not data["releases"]:
        releases.add_row("no requests in the last 10 s", "", "", "", "", "")
    containers = Table(box=None, header_style="bold")
    for column in ("container", "role", "state", "cpu", "memory", "restarts"):
        containers.add_column(column, justify="left" if column in ("container", "role", "state") else "right")
    for c in data["containers"]:
        containers.add_row(c["container"], c["role"], c["state"] or "", _pct(c["cpu_percent"]),
                           _mib(c["memory_bytes"]), str(c["restarts"]))
    firing = Text("alerts firing: " + (", ".join(f["alert"] + (f" on {f['subject']}" if f["subject"] else "")
                                                  for f in data["firing"]) or "none"),
                  style="bold red" if data["firing"] else "")
    return Group(title, Text(""), releases, Text(""), containers, Text(""), firing)


def cmd_top(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    ws = _workspace(args)
    console = Console()
    first = ws.live_metrics(args.env)
    with Live(render(first), console=console, refresh_per_second=4, screen=False) as view:
        try:
            while True:
                time.sleep(REFRESH_SECONDS)
                view.update(render(ws.live_metrics(args.env)))
        except KeyboardInterrupt:
            pass
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    m = verb(sub, "metrics", cmd_metrics, "requests, 4xx, 5xx, p50/p95/p99 per release and CPU/memory per container")
    m.add_argument("--since", help="e.g. 10m, 1h, 24h or an ISO time (default 1h)")
    verb(sub, "top", cmd_top, "a live view: requests/s, error rate, p95 per release; CPU and memory per container")
    alerts = verb(sub, "alerts", cmd_alerts, "the env's alerts firing and resolving (and their webhook deliveries)")
    alerts.add_argument("--since", help="e.g. 1h, 24h or an ISO time (default 24h)")
