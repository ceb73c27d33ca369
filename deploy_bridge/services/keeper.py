"""The keeper: brings back the containers of a running env that died and that Docker will not restart.

    python3 -m deploy_bridge.services.keeper --instance NAME --routes /gateway/routes.tsv

Docker restarts a crashed container by its restart policy, but not one stopped by `docker kill` (or
left stopped that way across a reboot). The keeper watches the engine's `die` events of its instance
and starts a container again when it is wanted:
- an app container is wanted when the gateway's route names it and the env is not stopped
  (routes.tsv, the gateway's own state, mounted read-only);
- a db or sandbox container when its env's app is wanted.
So `minicloud stop`, drains and `env destroy` (which change the route first) are never undone.

It runs in its own container with the engine's socket mounted: whoever controls that container
controls the engine. It publishes no port and joins no network (network mode none).
Standard library only.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import defaultdict, deque
from pathlib import Path

from .engine_api import Engine, survive

RECONCILE_SECONDS = 30.0
MAX_STARTS_PER_MINUTE = 5  # a container that dies at once again is left to its logs, not hammered
SERVICES = ("db", "sandbox", "functions", "datadb", "data")  # the roles beside the app (deploy_bridge.roles)


def routes(path: Path) -> dict[str, tuple[str | None, bool]]:
    """host -> (container, stopped), from the gateway's routes.tsv."""
    out = {}
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[0]:
            target = parts[1]
            stopped = target == "-" or target.startswith("!")
            out[parts[0]] = (target.lstrip("!") if target != "-" else None, stopped)
            if len(parts) > 5 and parts[4]:  # a canary: its container serves some of the users
                out[parts[0] + "#canary"] = (parts[4], stopped)
    return out


class Keeper:
    def __init__(self, engine: Engine, instance: str, routes_file: Path) -> None:
        self.engine, self.instance, self.routes_file = engine, instance, routes_file
        self.starts: dict[str, deque[float]] = defaultdict(deque)

    def wanted(self, containers: list[dict]) -> set[str]:
        """Ids of the containers that should be running now."""
        serving = {target for target, stopped in routes(self.routes_file).values() if target and not stopped}
        live_envs = set()
        out = set()
        for c in containers:
            labels = c.get("Labels") or {}
            names = [n.lstrip("/") for n in c.get("Names") or []]
            # the app a route names, or the functions scheduler of an env without a server
            if labels.get("minicloud.role") in ("app", "functions") and serving.intersection(names):
                out.add(c["Id"])
                live_envs.add((labels.get("minicloud.app"), labels.get("minicloud.env")))
        for c in containers:
            labels = c.get("Labels") or {}
            if labels.get("minicloud.role") in SERVICES and \
                    (labels.get("minicloud.app"), labels.get("minicloud.env")) in live_envs:
                out.add(c["Id"])
        return out

    def reconcile(self) -> None:
        containers = self.engine.containers([f"minicloud.instance={self.instance}"])
        wanted = self.wanted(containers)
        for c in containers:
            if c["Id"] in wanted and c.get("State") in ("exited", "dead", "created"):
                self.start(c)

    def start(self, container: dict) -> None:
        recent = self.starts[container["Id"]]
        now = time.monotonic()
        while recent and now - recent[0] > 60:
            recent.popleft()
        name = (container.get("Names") or [container["Id"][:12]])[0].lstrip("/")
        if len(recent) >= MAX_STARTS_PER_MINUTE:
            return
        recent.append(now)
        status, body = self.engine.call("POST", f"/containers/{container['Id']}/start")
        what = {204: "started", 304: "already running"}.get(status, f"could not start it: {status} {body!r}")
        print(f"keeper: {name} had stopped; {what}", flush=True)

    def watch(self) -> None:
        """Reconcile now and every RECONCILE_SECONDS, and at every `die` of the instance's containers."""
        self.reconcile()

        def timer() -> None:
            while True:
                time.sleep(RECONCILE_SECONDS)
                self._safely(self.reconcile)

        threading.Thread(target=timer, daemon=True).start()
        while True:
            try:
                for event in self.engine.events([f"minicloud.instance={self.instance}"], ["die"]):
                    self._safely(lambda event=event: self.on_die(event))
            except OSError as err:
                print(f"keeper: the engine's event stream broke ({err}); reconnecting", flush=True)
            time.sleep(1)  # the engine restarts: do not spin

    def on_die(self, event: dict) -> None:
        container_id = event.get("id", "")
        name = (event.get("Actor") or {}).get("Attributes", {}).get("name", container_id[:12])
        self.settled(container_id)
        containers = self.engine.containers([f"minicloud.instance={self.instance}"])
        if container_id in self.wanted(containers):
            self.reconcile()
        elif any(c["Id"] == container_id for c in containers):
            print(f"keeper: {name} stopped; left stopped (not routed, or its env is stopped)", flush=True)

    def settled(self, container_id: str, timeout: float = 5.0) -> None:
        """Wait until the engine has recorded the exit of a container whose `die` event just came
        (for a moment after the event it still lists it as running)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self.engine.call("GET", f"/containers/{container_id}/json")
            state = body.get("State", {}) if status == 200 and isinstance(body, dict) else {}
            if not state.get("Running") or state.get("Restarting"):
                return
            time.sleep(0.05)

    @staticmethod
    def _safely(step) -> None:
        survive(step, lambda text: print(f"keeper: {text}", flush=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="keeper")
    parser.add_argument("--instance", required=True)
    parser.add_argument("--routes", type=Path, required=True)
    parser.add_argument("--socket", default="/var/run/docker.sock")
    args = parser.parse_args(argv)
    print(f"keeper: watching instance {args.instance}", flush=True)
    Keeper(Engine(args.socket), args.instance, args.routes).watch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
