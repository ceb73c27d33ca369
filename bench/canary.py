"""Grey releases, measured: how close the split is to the share asked for (distinct users), and the failed
requests of keep-alive and new-connection clients across a canary's start, promote and abort."""

from __future__ import annotations

import concurrent.futures
import shutil
from pathlib import Path
from typing import Any

import httpx

from .load import RequestLoop, bump, trusting

GOALS = {"canary_split_error_pct": (2.0, "<="), "canary_failed_requests": (0, "<=")}


def split_share(cloud, canary_release_version: str, users: int) -> tuple[float, int]:
    """Percent of `users` distinct users (a new client each: no cookie) that the canary answered, and how
    many users' first connection failed and was made again (a user's side is drawn on an answered request:
    a connection that never got one leaves the split as it was; the count is reported, not hidden)."""
    url, ca = cloud.url("test") + "/", trusting(cloud.ca_path())
    again: list[str] = []  # list.append is atomic across the pool's threads

    def one(_: int) -> bool:
        for attempt in (1, 2):
            try:
                with httpx.Client(verify=ca, timeout=30) as client:
                    return client.get(url).json().get("version") == canary_release_version
            except httpx.TransportError:
                if attempt == 2:
                    raise
                again.append(url)
        raise AssertionError("unreachable")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        hits = sum(pool.map(one, range(users)))
    return 100 * hits / users, len(again)


def measure_canary(root: Path, app: Path, quick: bool, out: dict[str, Any], log) -> None:
    from deploy_bridge.cloud import Cloud

    ws = root / "canarybench"
    shutil.rmtree(ws, ignore_errors=True)
    shutil.copytree(app, ws)
    manifest = ws / "minicloud.toml"
    manifest.write_text(manifest.read_text().replace('name = "benchapp"', 'name = "canarybench"'))
    cloud = Cloud(ws)
    cloud.build_env("test")
    try:
        url, ca = cloud.url("test") + "/healthz", cloud.ca_path()
        failed = requests = 0
        for end in ("promote", "abort"):
            bump(ws)
            fresh = RequestLoop(url, ca, limit=100_000)
            kept = RequestLoop(url, ca, clients=20, keep_alive=True, interval=0.01, limit=100_000)
            with fresh, kept:
                fresh.wait_for(10)
                kept.wait_for(100)
                cloud.deploy("test", canary=10)
                kept.wait_for(len(kept.statuses) + 200)
                cloud.promote("test") if end == "promote" else cloud.rollback("test")
                kept.wait_for(len(kept.statuses) + 200)
            failed += len(fresh.failures) + len(kept.failures)
            requests += len(fresh.statuses) + len(kept.statuses)
        out["canary_failed_requests"], out["canary_requests"] = failed, requests
        log("canary: the split of distinct users")
        bump(ws)
        cloud.deploy("test", canary=10)
        version = (ws / "server.js").read_text().split("const version = '")[1].split("'")[0]
        users = 2000 if quick else 10_000
        share, again = split_share(cloud, version, users)
        out.update(canary_split_users=users, canary_split_share_pct=round(share, 2),
                   canary_split_error_pct=round(abs(share - 10), 2), canary_split_connections_again=again)
        cloud.rollback("test")
    finally:
        cloud.destroy_env("test", with_data=True)
