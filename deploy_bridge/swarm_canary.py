"""A grey release on a swarm env: the new release as a service of one task beside the app service, and
the env's gateway sending a share of the users to it (sticky by its cookie), as on one machine.

    start    push the release; run it as APP-ENV-canary (the app's spec, one task) until it is healthy;
             split the host at the gateway, each side counted from zero
    judge    after the window, the canary's error rate and p95 against the app service's, as the gateway
             counted them (canary.verdict: the same rules as on one machine)
    promote  Swarm's rolling update of the app service to the canary's image (start-first: no failed
             request), then everyone to the app service, the canary drained and removed
    abort    everyone back to the app service; the canary drained and removed

The canary service and the gateway's split are the state: nothing else is kept.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any

from . import canary
from .canary import Verdict
from .config import LABEL_RELEASE
from .errors import MinicloudError
from .progress import Progress
from .releases import ReleaseBuilder
from .services.histogram import hist_quantile

if TYPE_CHECKING:
    from .swarm_env import SwarmEnv

CANARY_TASKS = 1


class SwarmCanary:
    def __init__(self, env: SwarmEnv) -> None:
        self.env = env
        self.manager, self.settings, self.manifest = env.manager, env.settings, env.manifest
        self.app, self.name_of_env = env.app, env.env
        self.host = self.settings.app_host(self.app, env.env)

    @property
    def service_name(self) -> str:
        return self.settings.container(self.app, self.name_of_env, "canary")

    def service(self):
        found = self.manager.services.list(filters={"name": self.service_name})
        return next((s for s in found if s.name == self.service_name), None)

    def release(self) -> str | None:
        service = self.service()
        if service is None:
            return None
        return (service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"].get("Labels") or {}).get(LABEL_RELEASE)

    def _upstream(self, service: str) -> str:
        return f"tasks.{service}:{self.manifest.port}"

    # ------------------------------------------------------------------ start
    def start(self, percent: int, environment: dict[str, str], files: dict[str, tuple[bytes, bool]],
              progress: Progress) -> str:
        """Build and push a release, run it beside the app service, send it `percent` of the users; its id."""
        env = self.env
        if not 1 <= percent <= 99:
            raise MinicloudError(f"--canary {percent}: a share of the users from 1 to 99 (percent)")
        if not any(t.state == "running" for t in env.tasks()):
            raise MinicloudError(f"{self.app}/{self.name_of_env} serves no release yet: deploy one first",
                                 hint=f"minicloud deploy {self.name_of_env}")
        self.refuse_if_running()
        route = env.image_route(progress)
        network = env.ensure_network()
        release, tag = ReleaseBuilder(env.builder, self.settings, self.manifest, self.name_of_env).build(progress)
        progress.check_cancelled()
        image = route.push(tag, progress)
        progress.report(f"starting {release} as {self.service_name}, beside {env.service_name}")
        self.manager.services.create(**env.app_spec(image, release, environment, network, files,
                                                  name=self.service_name, replicas=CANARY_TASKS))
        try:
            self._wait_running(release, progress)
            env.ensure_edge(network, route, progress)  # a gateway of this minicloud's kind
            progress.report(f"sending {percent}% of the users to {release}", 90)
            env.gateway().split(self.host, env.service_name, self.service_name, self.manifest.port, percent)
        except BaseException:
            self._remove(progress)
            raise
        return release

    def refuse_if_running(self) -> None:
        if self.service() is not None:
            raise MinicloudError(f"a canary already runs in {self.app}/{self.name_of_env}",
                                 hint=f"minicloud promote {self.name_of_env}, or minicloud rollback "
                                      f"{self.name_of_env} to remove it")

    def _wait_running(self, release: str, progress: Progress) -> None:
        """Until the canary's task runs, past its health check; MinicloudError with the task's error if not."""
        deadline = time.monotonic() + self.manifest.health_timeout + 60
        while True:
            tasks = self.env.tasks_of(self.service(), all_tasks=True)
            if any(t.state == "running" and t.desired == "running" for t in tasks):
                return
            failed = [t for t in tasks if t.state in ("failed", "rejected")]
            if failed or time.monotonic() > deadline:
                errors = "; ".join(f"{t.state} on {t.node}: {t.error}" for t in failed) or "no task runs"
                raise MinicloudError(f"the canary {release} did not get healthy ({errors})",
                                     hint=f"minicloud logs {self.name_of_env} --role app")
            progress.check_cancelled()
            time.sleep(0.25)

    # ------------------------------------------------------------------ reading
    def side_by_side(self) -> dict[str, Any]:
        """The app service's and the canary's requests, error rate and p95 since the split began."""
        service = self._require()
        gateway, env = self.env.gateway(), self.env
        percent = (self.split() or {}).get("percent", 0)

        def side(name: str, release: str | None) -> dict[str, Any]:
            counted = gateway.side(self._upstream(name))
            n = counted["requests"]
            p95 = hist_quantile(counted["hist"], 0.95)
            return {"service": name, "release": release, "requests": n,
                    "error_rate": round(100 * counted["errors"] / n, 2) if n else None,
                    "p95_ms": round(p95, 1) if p95 is not None else None}

        created = service.attrs.get("CreatedAt", "")
        since = dt.datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00").timestamp() if created else None
        return {"app": self.app, "env": self.name_of_env, "percent": percent, "since": since,
                "baseline": side(env.service_name, (env.service_spec() or {}).get("release")),
                "canary": side(self.service_name, self.release())}

    def split(self) -> dict[str, Any] | None:
        """The editor's view of a running canary: its percent and the two releases (None: no canary)."""
        if self.service() is None:
            return None
        split = self.env.gateway().routes_now().get(self.host, "").split("|")
        return {"percent": int(split[2]) if len(split) == 3 and split[2].isdigit() else 0,
                "serving": (self.env.service_spec() or {}).get("release"), "canary": self.release()}

    def judge(self, seconds: float, started: float, progress: Progress) -> Verdict:
        canary.wait_window(started, seconds, progress)
        view = self.side_by_side()
        return canary.verdict(view["baseline"], view["canary"])

    # ------------------------------------------------------------------ ending
    def promote(self, environment: dict[str, str], files: dict[str, tuple[bytes, bool]],
                progress: Progress) -> str:
        """Every user to the canary's release: the app service rolls to its image, then the canary goes."""
        service = self._require()
        release = self.release() or ""
        image = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].split("@")[0]
        progress.report(f"rolling {self.env.service_name} to {release}, one task at a time")
        self.env.roll_out(image, release, environment, self.env.ensure_network(), progress, files)
        self._end(progress)
        return release

    def abort(self, progress: Progress) -> str:
        """Everyone back to the app service; the canary drains and goes. Its release."""
        self._require()
        release = self.release() or ""
        self._end(progress)
        return release

    def _require(self):
        service = self.service()
        if service is None:
            raise MinicloudError(f"no canary runs in {self.app}/{self.name_of_env}",
                                 hint=f"minicloud deploy {self.name_of_env} --canary 10")
        return service

    def _end(self, progress: Progress) -> None:
        """No user is sent to the canary any more; once the gateway proxies nothing to it, it is removed."""
        progress.report(f"moving every user to {self.env.service_name}", 90)
        self.env.gateway().split(self.host, self.env.service_name, None, self.manifest.port)
        self._drain(progress)
        self._remove(progress)

    def _drain(self, progress: Progress) -> None:
        deadline = time.monotonic() + self.env.grace_seconds()
        upstream = self._upstream(self.service_name)
        while (busy := self.env.gateway().inflight(upstream)) > 0 and time.monotonic() < deadline:
            progress.report(f"{busy} requests in flight on the canary")
            time.sleep(0.1)

    def _remove(self, progress: Progress) -> None:
        service = self.service()
        if service is not None:
            service.remove()
            progress.report(f"removed service {self.service_name}")
