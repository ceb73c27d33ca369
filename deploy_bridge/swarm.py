"""Docker Swarm as minicloud sees it: is this engine a manager, and which nodes does its swarm have.

Small and docker-py only. On this kind of machine the kernel has no IPVS, so services use endpoint mode
`dnsrr` and host-mode published ports (the virtual IP and the ingress routing mesh do not answer).
"""

from __future__ import annotations

import time

import docker
from docker.errors import APIError, NotFound
from docker.types import EndpointSpec, ServiceMode, UpdateConfig

from .errors import MinicloudError

INIT_COMMAND = "docker swarm init --advertise-addr <an address of this machine that the other nodes reach>"


def _swarm_info(client: docker.DockerClient) -> dict:
    return client.info().get("Swarm") or {}


def is_manager(client: docker.DockerClient) -> bool:
    """True when the engine is an active member of a swarm and a manager (it can create services)."""
    info = _swarm_info(client)
    return info.get("LocalNodeState") == "active" and bool(info.get("ControlAvailable"))


def require_manager(client: docker.DockerClient) -> None:
    """Raise MinicloudError saying why and how to fix it unless the engine is a swarm manager."""
    info = _swarm_info(client)
    state = info.get("LocalNodeState") or "inactive"
    if state == "active" and info.get("ControlAvailable"):
        return
    if state == "active":
        managers = ", ".join(m.get("Addr", "?") for m in info.get("RemoteManagers") or []) or "unknown"
        raise MinicloudError(
            "this Docker engine is a swarm worker, not a manager: it cannot create or list services",
            hint=f"point minicloud at a manager of the swarm (DOCKER_HOST; managers: {managers}), or promote "
                 f"this node from a manager: docker node promote {info.get('NodeID') or '<node>'}")
    if state == "locked":
        raise MinicloudError("this Docker engine's swarm is locked (autolock): it cannot act as a manager",
                             hint="docker swarm unlock (with the swarm's unlock key)")
    if state == "pending":
        raise MinicloudError("this Docker engine is still joining a swarm",
                             hint="wait and retry; `docker info` shows the state, "
                                  "`docker swarm leave --force` gives up")
    if state == "error":
        error = info.get("Error") or "unknown error"
        raise MinicloudError(f"this Docker engine's swarm is in an error state: {error}",
                             hint=f"docker swarm leave --force, then {INIT_COMMAND}")
    raise MinicloudError("this Docker engine is not part of a swarm (Docker Swarm mode is inactive)",
                         hint=f"make this engine a swarm manager: {INIT_COMMAND}")


def gateway_address(client: docker.DockerClient) -> str:
    """Where this machine reaches a swarm env's gateway (published on the manager): the host of a tcp:// or
    ssh:// engine URL (the name the user gave the manager), else the manager's node address (a local
    socket: this machine is the manager, or reaches it as a lab does)."""
    from urllib.parse import urlsplit

    from .engine import engine_url

    host = urlsplit(engine_url()).hostname
    if host and not engine_url().startswith(("unix:", "npipe:")):
        return host
    return _swarm_info(client).get("NodeAddr") or "127.0.0.1"


def env_gateway_address(workspace, env: str) -> str | None:
    """Where this machine connects for `env`'s gateway: None for an env on this machine (its URL's own
    `*.localhost` name resolves here), the manager's address for a swarm env, asked there by the env's host
    name (as `curl --connect-to`). The CLI's data, files and sandbox verbs use it."""
    if workspace.manifest.env(env).engine != "swarm":
        return None
    from .engine import client

    return gateway_address(client())


def connect_to(url: str, address: str | None) -> tuple[str, dict]:
    """(url, httpx request options) that reach `url` at `address` instead of its host, while TLS checks and
    Host carries the URL's own name (as `curl --connect-to`); `url` as it is when `address` is None."""
    if address is None:
        return url, {}
    import httpx

    parts = httpx.URL(url)
    options = {"headers": {"Host": parts.netloc.decode("ascii")}, "extensions": {"sni_hostname": parts.host}}
    return str(parts.copy_with(host=address)), options


def _address(attrs: dict) -> str:
    addr = (attrs.get("Status") or {}).get("Addr") or ""
    manager = (attrs.get("ManagerStatus") or {}).get("Addr") or ""
    if (not addr or addr == "0.0.0.0") and manager:
        addr = manager.rsplit(":", 1)[0]
    return addr


def node_table(client: docker.DockerClient) -> list[dict]:
    """The swarm's nodes, managers first: id, hostname, role, state, availability, address, leader."""
    require_manager(client)
    rows = []
    for node in client.nodes.list():
        attrs = node.attrs
        spec = attrs.get("Spec") or {}
        rows.append({
            "id": attrs["ID"],
            "hostname": (attrs.get("Description") or {}).get("Hostname", ""),
            "role": spec.get("Role", ""),
            "state": (attrs.get("Status") or {}).get("State", ""),
            "availability": spec.get("Availability", ""),
            "address": _address(attrs),
            "leader": bool((attrs.get("ManagerStatus") or {}).get("Leader")),
        })
    rows.sort(key=lambda r: (r["role"] != "manager", r["hostname"], r["id"]))
    return rows


def pinned_node(service) -> str | None:
    """The node id a service is pinned to by a `node.id==ID` constraint (None when it is not)."""
    if service is None:
        return None
    constraints = (service.attrs["Spec"]["TaskTemplate"].get("Placement") or {}).get("Constraints") or []
    for constraint in constraints:
        key, _, value = constraint.replace(" ", "").partition("==")
        if key == "node.id" and value:
            return value
    return None


def own_node(client: docker.DockerClient) -> str:
    """The node id of the engine `client` talks to."""
    return _swarm_info(client).get("NodeID") or ""


def find_service(client: docker.DockerClient, name: str):
    """The service of that name, or None."""
    try:
        return client.services.get(name)
    except NotFound:
        return None


def wait_for_task(client: docker.DockerClient, service_name: str, labels: list[str], probe: list[str],
                  what: str, hint: str, timeout: float = 60) -> None:
    """Until the service's one task runs on this engine (its container found by `labels`) and `probe`, run
    inside it, exits 0; MinicloudError naming the task's state otherwise. During a rolling update the old task
    may still answer: this waits for a single task, running."""
    deadline = time.monotonic() + timeout
    why = "no task yet"
    while time.monotonic() < deadline:
        service = find_service(client, service_name)
        if service is None:
            raise MinicloudError(f"{what}: service {service_name} is gone")
        tasks = service.tasks(filters={"desired-state": "running"})
        for task in tasks:
            status = task.get("Status") or {}
            why = f"{status.get('State')} {status.get('Err') or ''}".strip()
        running = client.containers.list(filters={"label": labels})
        if running and len(tasks) == 1 and why.startswith("running"):
            try:
                code, out = running[0].exec_run(probe)
            except (NotFound, APIError):
                code, out = 1, b""
            if code == 0:
                return
            why = f"it does not answer yet {out.decode(errors='replace')[-200:]}"
        time.sleep(0.25)
    raise MinicloudError(f"{what} did not start within {timeout:.0f} s ({why})", hint=hint)


def task_container(client: docker.DockerClient, service_name: str, what: str):
    """The container of the service's running task, on the engine `client` talks to; MinicloudError saying
    why not (no such service, no task running, or it runs on another node). `what`: the service, for a user."""
    service = find_service(client, service_name)
    if service is None:
        raise MinicloudError(f"{what} is not on this swarm (no service {service_name})",
                             hint="minicloud deploy ENV makes it")
    for task in service.tasks(filters={"desired-state": "running"}):
        status = task.get("Status") or {}
        container_id = (status.get("ContainerStatus") or {}).get("ContainerID")
        if status.get("State") == "running" and container_id:
            try:
                return client.containers.get(container_id)
            except NotFound:
                raise MinicloudError(f"{what} runs on another node than the manager DOCKER_HOST names",
                                     hint=f"set DOCKER_HOST to that node (docker service ps {service_name})") from None
    raise MinicloudError(f"{what} runs no task now", hint=f"docker service ps {service_name} --no-trunc (on the manager)")


def one_pinned_task(service, client: docker.DockerClient) -> dict:
    """The spec of a service of one task whose data is on a volume of one node: pinned to that node (a new
    service: the node of the engine `client` talks to), no virtual IP, the old task stopped before the new
    one starts (one writer of the files at a time)."""
    return {"endpoint_spec": EndpointSpec(mode="dnsrr"), "mode": ServiceMode("replicated", replicas=1),
            "constraints": [f"node.id=={pinned_node(service) or own_node(client)}"],
            "update_config": UpdateConfig(parallelism=1, order="stop-first", failure_action="pause")}


def create_or_update(client: docker.DockerClient, service, spec: dict, progress, starting: str, updating: str) -> None:
    """Create the service from `spec`, or update it when its image, configs or secrets differ from it."""
    from .swarm_files import differs

    if service is None:
        progress.report(starting)
        client.services.create(**spec)
    elif differs(service, spec["image"], spec.get("configs") or [], spec.get("secrets") or []):
        progress.report(updating)
        service.update(**spec)
