"""The HTTPS gateway of a swarm env: the `gateway` recipe (nginx + Lua, as on one machine) as a service.

One per swarm env, on the env's overlay network, its port published in host mode on the manager node(s)
(the routing mesh needs IPVS, which not every kernel has). What a local gateway reads from bind-mounted
files comes from Swarm configs and secrets here, so the manager may be another machine: the TLS server
block of the env's host, the default server, the route (routes.tsv) and the certificate as configs, the
certificate's key as a secret (never in an image, never on a node's disk but in tmpfs). A changed file
is a new config (configs are immutable; the name carries the content's hash) and a rolling update.

The route never changes across deploys: the host goes to `tasks.APP_SERVICE:PORT`. nginx resolves that
name at Docker's DNS (kept a second), gets one address per running task, and tries the next address when
a connection fails — a task that stopped a moment ago costs a retry, not a failed request.

A grey release splits the host between two services. That split changes with no update of the service
(an update is stop-first, since the port is published in host mode): it is written into the task, on the
gateway's own volume (ROUTES_DIR, kept across the task's restarts on its node), and read again at once,
as a local gateway reads routes.tsv. The gateway counts each side of a split (requests, 5xx, latency
bins): what the canary is judged by.
"""

from __future__ import annotations

import time

import docker
from docker.errors import APIError, NotFound
from docker.types import EndpointSpec, Mount, NetworkAttachmentConfig, ServiceMode, UpdateConfig

from . import ca, images, swarm
from .config import Settings
from .errors import MinicloudError, PortInUse
from .gateway import ADMIN, CONTAINER_CONF, DEFAULT_CERT_NAME, METRICS_LOG_CONF, UPSTREAM_SYSCTLS
from .progress import NullProgress, Progress
from .swarm_files import SwarmFiles, differs
from .swarm_registry import ImageRoute

SECRETS_DIR = "/run/secrets"
ROUTES_DIR = "/var/lib/minicloud"  # the Lua's OVERRIDE_FILE is routes.tsv here
ACCESS_LOG = f"{ROUTES_DIR}/access.log"  # the metrics' JSON log, which the env's collector reads (swarm_metrics.py)


def hosts_of(routes: dict[str, tuple[str, int]]) -> list[str]:
    """The host names of route keys (HOST, or HOST/PATH for a service under the host)."""
    return sorted({key.split("/", 1)[0] for key in routes})


class SwarmGateway:
    def __init__(self, manager: docker.DockerClient, builder: docker.DockerClient, settings: Settings,
                 app: str, env: str) -> None:
        self.manager, self.builder, self.settings = manager, builder, settings
        self.app, self.env = app, env
        self.host = settings.app_host(app, env)

    @property
    def service_name(self) -> str:
        return self.settings.container(self.app, self.env, "gateway")

    def labels(self) -> dict[str, str]:
        return self.settings.labels(app=self.app, env=self.env, role="gateway")

    @property
    def volume_name(self) -> str:
        """The gateway's own routes (a grey release's split): not the user's data; it goes with the env."""
        return self.settings.volume(self.app, self.env, "gateway")

    # ------------------------------------------------------------------ what nginx reads
    def files(self, routes: dict[str, tuple[str, int]]) -> tuple[dict[str, bytes], dict[str, bytes]]:
        """(configs, secrets): path in the container -> content, for `routes` (HOST or HOST/PATH -> upstream, port).
        Certificates from the local CA."""
        authority = ca.ensure_ca(self.settings.instance_dir() / "ca")  # the local envs' CA: one to trust
        out = self.settings.instance_dir() / "swarm" / f"{self.app}-{self.env}" / "certs"
        gp = self.settings.gateway_port
        dcert, dkey = ca.issue(authority, DEFAULT_CERT_NAME, out)
        configs = {
            f"{CONTAINER_CONF}/default.conf": (
                "server {\n"
                f"    listen {gp} ssl default_server;\n"
                f"    ssl_certificate {CONTAINER_CONF}/certs/{dcert.name};\n"
                f"    ssl_certificate_key {SECRETS_DIR}/{dkey.name};\n"
                "    default_type text/plain;\n"
                '    location / { return 404 "minicloud: no app at $host\\n"; }\n'
                "}\n").encode(),
            f"{CONTAINER_CONF}/generation.conf": b'location = /_minicloud/generation { return 200 "swarm"; }\n',
            f"{CONTAINER_CONF}/{METRICS_LOG_CONF}": f"access_log {ACCESS_LOG} minicloud_json buffer=64k flush=1s;\n".encode(),
            f"{CONTAINER_CONF}/routes.tsv": "".join(f"{host}\t{upstream}\t{port}\t\n"
                                                    for host, (upstream, port) in sorted(routes.items())).encode(),
            f"{CONTAINER_CONF}/certs/{dcert.name}": dcert.read_bytes(),
        }
        secrets = {dkey.name: dkey.read_bytes()}
        for host in hosts_of(routes):
            cert, key = ca.issue(authority, host, out)
            # minicloud's own services under the host (HOST/cloud: the data API) over kept-alive connections
            own = "".join(f"    location {path[len(host):]}/ {{ set $minicloud_route {path}; "
                          "include /etc/nginx/minicloud/pooled.conf; }\n"
                          for path in sorted(routes) if path.startswith(host + "/"))
            configs[f"{CONTAINER_CONF}/hosts/{host}.conf"] = (
                "server {\n"
                f"    listen {gp} ssl;\n"
                f"    server_name {host};\n"
                f"    ssl_certificate {CONTAINER_CONF}/certs/{cert.name};\n"
                f"    ssl_certificate_key {SECRETS_DIR}/{key.name};\n"
                f"    location / {{ set $minicloud_route {host}; include /etc/nginx/minicloud/proxy.conf; }}\n"
                f"{own}"
                "}\n").encode()
            configs[f"{CONTAINER_CONF}/certs/{cert.name}"] = cert.read_bytes()
            secrets[key.name] = key.read_bytes()
        return configs, secrets

    # ------------------------------------------------------------------ the service
    def ensure(self, network, routes: dict[str, tuple[str, int]], route: ImageRoute,
               progress: Progress | None = None) -> None:
        """Run the gateway service with `routes` (host -> upstream, port); update it when a file changed.

        On the env's network the gateway answers to the hosts' names too, so the app's tasks reach the
        env's URLs (the sandbox's, its own) as they do on one machine."""
        progress = progress or NullProgress()
        image = route.push(images.ensure_recipe(self.builder, "gateway", progress), progress)
        configs, secrets = self.files(routes)
        store = SwarmFiles(self.manager, self.service_name, self.labels())
        refs = [store.config(path, data) for path, data in sorted(configs.items())]
        secret_refs = [store.secret(name, data) for name, data in sorted(secrets.items())]
        gp = self.settings.gateway_port
        service = swarm.find_service(self.manager, self.service_name)
        spec = {
            "image": image, "name": self.service_name, "labels": self.labels(), "container_labels": self.labels(),
            "networks": [NetworkAttachmentConfig(network.id, aliases=hosts_of(routes))],
            "configs": refs, "secrets": secret_refs,
            "mounts": [Mount(ROUTES_DIR, self.volume_name, type="volume", labels=self.labels())],
            "endpoint_spec": EndpointSpec(mode="dnsrr", ports={gp: (gp, "tcp", "host")}),
            # one node: its volume holds the routes and the access log the env's collector reads there
            "mode": ServiceMode("replicated", replicas=1),
            "constraints": [f"node.id=={swarm.pinned_node(service) or swarm.own_node(self.manager)}"],
            "sysctls": UPSTREAM_SYSCTLS,
            # one port on the node: the old task frees it before the new one takes it
            "update_config": UpdateConfig(parallelism=1, order="stop-first", failure_action="rollback"),
        }
        if service is None:
            progress.report(f"starting the gateway service on port {gp} of the manager")
            self.manager.services.create(**spec)
        elif (differs(service, image, refs, secret_refs) or self._aliases(service) != hosts_of(routes)
              or not self._has_routes_volume(service) or swarm.pinned_node(service) is None):
            progress.report("updating the gateway service (its image, routes or files changed)")
            service.update(**spec)
        self.wait_up()
        store.remove_unused()

    @staticmethod
    def _has_routes_volume(service) -> bool:
        mounts = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"].get("Mounts") or []
        return any(m.get("Target") == ROUTES_DIR for m in mounts)

    @staticmethod
    def _aliases(service) -> list[str]:
        networks = service.attrs["Spec"]["TaskTemplate"].get("Networks") or []
        return sorted(a for n in networks for a in n.get("Aliases") or [])

    def wait_up(self, timeout: float = 60) -> None:
        """Until the gateway task runs and its nginx answers inside the container; MinicloudError naming why not."""
        deadline = time.monotonic() + timeout
        why = "no task yet"
        while time.monotonic() < deadline:
            service = self.manager.services.get(self.service_name)
            tasks = service.tasks(filters={"desired-state": "running"})
            for t in tasks:
                status = t.get("Status") or {}
                why = f"{status.get('State')}: {status.get('Err') or status.get('Message', '')}"
                if "port" in (status.get("Err") or "") and "use" in (status.get("Err") or ""):
                    raise PortInUse(f"the gateway cannot publish port {self.settings.gateway_port} on the manager: "
                                    f"{status['Err']}",
                                    hint=f"free the port there, or give env {self.env} a port of its own: "
                                         f"gateway_port = N in [env.{self.env}] (each swarm env on a swarm needs one)")
                container_id = (status.get("ContainerStatus") or {}).get("ContainerID")
                if status.get("State") == "running" and container_id:
                    try:
                        code, _ = self.manager.containers.get(container_id).exec_run(
                            ["curl", "-s", "-o", "/dev/null", "-f", f"{ADMIN}/health"])
                    except (NotFound, APIError):
                        return  # the task runs on another manager: its state is what we go by
                    if code == 0:
                        return
            time.sleep(0.25)
        raise MinicloudError(f"the gateway service {self.service_name} did not start within {timeout:.0f} s ({why})",
                             hint=f"docker service ps {self.service_name} --no-trunc (on the manager)")

    # ------------------------------------------------------------------ a grey release's split
    def split(self, host: str, stable: str, canary: str | None, port: int, percent: int = 0) -> None:
        """Send `percent` of the users of `host` to the tasks of service `canary`, the others to `stable`'s
        (sticky by the gateway's cookie), and count each side from zero; `canary` None: everyone to `stable`.
        In force when this returns (the gateway answers the routes it now has)."""
        line = (f"{host}\ttasks.{stable}\t{port}\t\ttasks.{canary}\t{percent}\n" if canary else "")
        for name in (host, stable, canary or ""):  # names minicloud makes; nothing a shell would read
            if not all(c.isalnum() or c in ".-_" for c in name):
                raise MinicloudError(f"not a host or service name: {name!r}")
        resets = " ".join(f"&& curl -sf -o /dev/null -X POST '{ADMIN}/stats?upstream=tasks.{name}:{port}'"
                          for name in (stable, canary) if canary)
        script = (f"mkdir -p {ROUTES_DIR} && printf '{line}' > {ROUTES_DIR}/routes.tsv.new "
                  f"&& mv {ROUTES_DIR}/routes.tsv.new {ROUTES_DIR}/routes.tsv {resets} "
                  f"&& curl -sf -X POST {ADMIN}/routes")
        code, out = self._task_container().exec_run(["sh", "-c", script])
        text = out.decode(errors="replace")
        wanted = f"{host} tasks.{stable}:{port}" + (f"|tasks.{canary}:{port}|{percent}" if canary else "")
        if code != 0 or wanted not in text.splitlines():
            raise MinicloudError(f"the gateway of {self.app}/{self.env} did not take the route {wanted!r}: "
                                 f"{text.strip()[-300:]}", hint=f"minicloud logs {self.env} --role gateway")

    def routes_now(self) -> dict[str, str]:
        """The routes in force: host -> target (`tasks.S:PORT`, or `tasks.A:PORT|tasks.C:PORT|PERCENT`)."""
        code, out = self._task_container().exec_run(["curl", "-sf", f"{ADMIN}/routes"])
        if code != 0:
            raise MinicloudError(f"the gateway of {self.app}/{self.env} did not say its routes: "
                                 f"{out.decode(errors='replace').strip()[-200:]}")
        return dict(line.split(" ", 1) for line in out.decode(errors="replace").splitlines() if " " in line)

    def side(self, upstream: str) -> dict:
        """One side of the split (`upstream`: tasks.SERVICE:PORT) since it began: requests, 5xx, latency bins."""
        code, out = self._task_container().exec_run(["curl", "-sf", f"{ADMIN}/stats?upstream={upstream}"])
        counts = [int(n) for n in out.decode(errors="replace").split() if n.isdigit()] if code == 0 else []
        if len(counts) < 3:
            raise MinicloudError(f"the gateway of {self.app}/{self.env} did not say how {upstream} did: "
                                 f"{out.decode(errors='replace').strip()[-200:]}")
        return {"requests": counts[0], "errors": counts[1], "hist": counts[2:]}

    def inflight(self, upstream: str) -> int:
        """Requests the gateway is proxying to `upstream` (tasks.SERVICE:PORT) right now."""
        code, out = self._task_container().exec_run(["curl", "-sf", f"{ADMIN}/inflight?upstream={upstream}"])
        text = out.decode(errors="replace").strip()
        return int(text) if code == 0 and text.lstrip("-").isdigit() else 0

    def node(self) -> str | None:
        """The node the gateway (and its volume) is pinned to."""
        return swarm.pinned_node(swarm.find_service(self.manager, self.service_name))

    def _task_container(self):
        return swarm.task_container(self.manager, self.service_name, f"the gateway of {self.app}/{self.env}")
