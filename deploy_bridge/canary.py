"""Grey releases: a new release beside the current one for a share of the users, then promoted or removed.

    start   the new release runs beside the serving one (healthy as the gateway sees it, restart
            policy set), and the gateway sends `percent` of the users to it — sticky: a cookie the
            gateway sets keeps each user on the release that first answered them
    promote everyone goes to the canary (the route names it; the old release drains and stops)
    abort   everyone goes back to the serving release; the canary drains and stops
    judge   over a window, the canary's error rate and p95 against the serving release's (the
            collector's per-release series): promote when its error rate is within 0.5 points and
            its p95 within 1.2× of the baseline's, else abort, saying why

The route is the only state (routes.tsv: the serving container, the canary container, the percent).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from . import metrics
from .config import LABEL_RELEASE
from .errors import MinicloudError
from .progress import Progress
from .rollout import RESTART_POLICY, AppTarget, Rollout, drain

ERROR_RATE_POINTS = 0.5  # the canary's error rate may exceed the baseline's by this many points
P95_FACTOR = 1.2  # and its p95 be this much slower


@dataclass
class Verdict:
    promote: bool
    reason: str
    canary: dict[str, Any]
    baseline: dict[str, Any]


def start(target: AppTarget, release: str, image: str, percent: int, progress: Progress) -> str:
    """Run `release` beside the serving one and give it `percent` of the users; returns its container."""
    if not 1 <= percent <= 99:
        raise MinicloudError(f"--canary {percent}: a share of the users from 1 to 99 (percent)")
    if target.serving() is None:
        raise MinicloudError(f"{target.app}/{target.env} serves no release yet: deploy one first",
                             hint=f"minicloud deploy {target.env}")
    if target.canary() is not None:
        raise MinicloudError(f"a canary already runs in {target.app}/{target.env}",
                             hint=f"minicloud promote {target.env}, or minicloud rollback {target.env} to remove it")
    rollout = Rollout(target, release, image, progress, fresh_image=True)
    container = rollout.start_new()
    try:
        rollout.wait_until_healthy(container)
        container.update(restart_policy=RESTART_POLICY)
        progress.report(f"sending {percent}% of the users to {release}", 90)
        target.edge.set_canary(target.host, container.name, percent)
    except BaseException:
        rollout.discard(container)
        raise
    return container.name


def promote(target: AppTarget, progress: Progress) -> str:
    """Everyone to the canary; the old release drains and stops. Returns the canary's release."""
    name = _canary_or_fail(target)
    container = target.client.containers.get(name)
    progress.report(f"moving every user to {name}", 90)
    target.edge.set_route(target.host, name, target.manifest.port)
    old = [c for c in target.app_containers() if c.name != name]
    drain(target, old, progress)
    return container.labels.get(LABEL_RELEASE, "")


def abort(target: AppTarget, progress: Progress) -> str:
    """Everyone back to the serving release; the canary drains and stops. Returns its release."""
    name = _canary_or_fail(target)
    container = target.client.containers.get(name)
    progress.report(f"moving every user back to {target.serving()}", 90)
    target.edge.set_canary(target.host, None)
    drain(target, [container], progress)
    return container.labels.get(LABEL_RELEASE, "")


def _canary_or_fail(target: AppTarget) -> str:
    name = target.canary()
    if name is None:
        raise MinicloudError(f"no canary runs in {target.app}/{target.env}",
                             hint=f"minicloud deploy {target.env} --canary 10")
    return name


def side_by_side(target: AppTarget, since: float) -> dict[str, Any]:
    """The serving and the canary release's requests, error rate and p95 since `since`."""
    route = target.edge.route(target.host)
    releases = {c.name: c.labels.get(LABEL_RELEASE) for c in target.app_containers()}
    series = {r["release"]: r for r in metrics.series(target.edge.settings, target.app, target.env, since)["releases"]
              if r["role"] == "app"}

    def stats(container: str | None) -> dict[str, Any]:
        release = releases.get(container or "")
        found = series.get(release or "", {})
        return {"container": container, "release": release, "requests": found.get("requests", 0),
                "error_rate": found.get("error_rate"), "p95_ms": found.get("p95_ms")}

    return {"app": target.app, "env": target.env, "percent": route.canary_percent if route else 0,
            "baseline": stats(route.upstream if route else None), "canary": stats(route.canary if route else None)}


def judge(target: AppTarget, since: float) -> Verdict:
    """Promote or abort, by the canary's error rate and p95 against the baseline's since `since`."""
    view = side_by_side(target, since)
    return verdict(view["baseline"], view["canary"])


def verdict(base: dict[str, Any], can: dict[str, Any]) -> Verdict:
    """Promote or abort, by two sides' {"requests", "error_rate" (%), "p95_ms"}: the rules of the module's doc."""
    if not can["requests"]:
        return Verdict(False, "the canary got no request in the window", can, base)
    base_errors, can_errors = base["error_rate"] or 0.0, can["error_rate"] or 0.0
    if can_errors > base_errors + ERROR_RATE_POINTS:
        return Verdict(False, f"error rate {can_errors:.2f}% against the baseline's {base_errors:.2f}% "
                              f"(more than {ERROR_RATE_POINTS} points above)", can, base)
    if base["p95_ms"] and can["p95_ms"] and can["p95_ms"] > P95_FACTOR * base["p95_ms"]:
        return Verdict(False, f"p95 {can['p95_ms']} ms against the baseline's {base['p95_ms']} ms "
                              f"(more than {P95_FACTOR}×)", can, base)
    return Verdict(True, f"error rate {can_errors:.2f}% (baseline {base_errors:.2f}%), p95 {can['p95_ms']} ms "
                         f"(baseline {base['p95_ms']} ms) over {can['requests']} requests", can, base)


def wait_and_judge(target: AppTarget, started: float, seconds: float, progress: Progress) -> Verdict:
    """Let the canary take traffic for `seconds`, then judge it (the collector's buckets are 10 s)."""
    wait_window(started, seconds, progress)
    time.sleep(1.5)  # the collector has written the last bucket
    return judge(target, started)


def wait_window(started: float, seconds: float, progress: Progress) -> None:
    """The judging window the user chose: until `started + seconds` (a UNIX time), saying what is left;
    a cancel ends it early (MinicloudError)."""
    end = started + seconds
    while time.time() < end:
        progress.check_cancelled()
        progress.report(f"judging the canary: {int(end - time.time())} s left")
        time.sleep(min(5.0, max(0.0, end - time.time())))
