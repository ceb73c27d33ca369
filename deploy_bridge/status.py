"""An env's state, derived each time from what runs (labels) and what answers (the route, probed).

    running   the route names a running app container that answers its health path through the
              gateway, and the database and sandbox run
    stopped   the route is stopped (`minicloud stop`)
    degraded  anything else that is built: a container down, an app that does not answer, a route
              naming a container that is gone
    not-built no network for the env
"""

from __future__ import annotations

import concurrent.futures

from docker.errors import APIError, NotFound

from .config import LABEL_RELEASE, LABEL_ROLE
from .model import ContainerStatus
from .roles import ALL_ROLES, SERVICE_ROLES


def container_status(c, role: str, health: str | None) -> ContainerStatus:
    return ContainerStatus(role=role, name=c.name, state=c.status, health=health, release=c.labels.get(LABEL_RELEASE))


def derive_state(containers: list[ContainerStatus], serving: str | None, stopped: bool, answers: bool,
                 functions_only: bool | None = None) -> str:
    """`functions_only`: a workspace without a server, whose functions scheduler answers (True) or not."""
    if stopped:
        return "stopped"
    if functions_only is not None:
        services = {r.name for r in SERVICE_ROLES}
        up = all(c.state == "running" for c in containers if c.role in services)
        return "running" if functions_only and up else "degraded"
    by_name = {c.name: c for c in containers}
    app = by_name.get(serving or "")
    services = {r.name for r in SERVICE_ROLES}
    services_up = all(c.state == "running" for c in containers if c.role in services)
    if app is not None and app.state == "running" and answers and services_up:
        return "running"
    return "degraded"


def sort_containers(out: list[ContainerStatus]) -> None:
    order = {r: i for i, r in enumerate(ALL_ROLES)}
    out.sort(key=lambda c: (order.get(c.role, 9), c.name))


def role_of(container) -> str:
    return container.labels.get(LABEL_ROLE, "?")


def fill_stats(containers: list, out: list[ContainerStatus]) -> None:
    """CPU and memory, all containers at once (the engine takes ~1 s per sample)."""
    by_name = {c.name: c for c in out}

    def sample(container):
        try:
            return container.name, container.stats(stream=False)
        except (NotFound, APIError):
            return container.name, None

    if not containers:
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(containers))) as pool:
        for name, st in pool.map(sample, containers):
            if not st or name not in by_name:
                continue
            cpu, pre = st.get("cpu_stats", {}), st.get("precpu_stats", {})
            delta = cpu.get("cpu_usage", {}).get("total_usage", 0) - pre.get("cpu_usage", {}).get("total_usage", 0)
            system = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
            cpus = cpu.get("online_cpus") or len(cpu.get("cpu_usage", {}).get("percpu_usage") or [1])
            by_name[name].cpu_percent = round(delta / system * cpus * 100, 2) if system > 0 else 0.0
            mem = st.get("memory_stats", {})
            usage = mem.get("usage")
            if usage is not None:
                cache = mem.get("stats", {}).get("cache", 0) or mem.get("stats", {}).get("inactive_file", 0)
                by_name[name].mem_bytes = int(usage - cache)
