"""Docker Swarm with a real registry, on a lab of real engines (tests/swarm_lab.py): three dockerds in
network namespaces of their own, a manager and two workers; the registry (the `registry` recipe) on the
host engine, which builds and pushes. The lab engines start empty: an image they run can only come from
the registry.
"""

from __future__ import annotations

import re
import socket
import time

import docker
import httpx
import pytest
from docker.types import EndpointSpec, ServiceMode

from deploy_bridge import images, registry, swarm
from deploy_bridge.errors import MinicloudError
from deploy_bridge.progress import NullProgress
from tests.swarm_lab import SwarmLab, swarm_lab

# A 2 MB image: a static busybox on scratch, serving the page written at start (its hostname) on :8000.
HELLO = """FROM {base} AS tools
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends busybox-static
FROM scratch
COPY --from=tools /bin/busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8000 -h /www"]
"""
SECOND = 1_000_000_000  # swarm durations are in nanoseconds


def build_hello(client: docker.DockerClient, lab: SwarmLab) -> str:
    """Build the hello image as LAB/hello:1; it and its intermediate images are removed with the lab."""
    base = images.ensure_base(client)
    before = {i.id.split(":")[-1][:12] for i in client.images.list(all=True)}
    made: list[str] = []

    def on_line(line: str) -> None:
        found = re.match(r"\s*---> ([0-9a-f]{12})\s*$", line)
        if found and found.group(1) not in before:
            made.append(found.group(1))

    tag = f"{lab.name}/hello:1"
    try:
        context = images.tar_context({"Dockerfile": HELLO.replace("{base}", base).encode()})
        images.docker_build(client, context, tag, lab.labels, NullProgress(), "the lab's hello image",
                            on_line=on_line)
    finally:  # removed in reverse order: the tag, then what is left of the intermediate images
        lab.images.extend(made)
        lab.images.append(tag)
    return tag


def wait_for(what: str, probe, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def running_tasks(service, count: int, timeout: float = 60) -> list[dict]:
    seen: dict[str, str] = {}

    def probe():
        tasks = service.tasks(filters={"desired-state": "running"})
        for t in service.tasks():
            if t["Status"].get("Err"):
                seen[t["ID"]] = f"{t['Status']['State']}: {t['Status']['Err']}"
        up = [t for t in tasks if t["Status"]["State"] == "running"]
        return up if len(up) == count else None

    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{service.name}: {count} tasks not running after {timeout:.0f} s; "
                        f"task errors: {seen}")
        time.sleep(0.2)


def task_ip(task: dict, network_id: str) -> str:
    for attachment in task.get("NetworksAttachments") or []:
        if attachment["Network"]["ID"] == network_id:
            return attachment["Addresses"][0].split("/")[0]
    raise AssertionError(f"task {task['ID']} has no address on network {network_id}")


def http_get_in(container, ip: str, port: int) -> str:
    code, out = container.exec_run(["sh", "-c", f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {ip} {port}"])
    text = out.decode(errors="replace")
    assert code == 0 and " 200 " in text.splitlines()[0], f"GET http://{ip}:{port}/ from the probe: {text!r}"
    return text.split("\r\n\r\n", 1)[1].strip()


@pytest.mark.docker
def test_a_service_spreads_over_the_lab_and_its_workers_pull_from_the_registry(docker_engine):
    host = docker_engine
    host_swarm = host.info()["Swarm"].get("LocalNodeState")
    with swarm_lab(workers=2, host=host) as lab:
        manager = lab.manager
        assert host.info()["Swarm"].get("LocalNodeState") == host_swarm, "the host engine stays out of the lab"
        assert swarm.is_manager(manager)
        nodes = swarm.node_table(manager)
        assert {n["id"] for n in nodes} == {lab.manager_node_id, *lab.worker_node_ids}
        assert [n["role"] for n in nodes] == ["manager", "worker", "worker"]
        assert all(n["state"] == "ready" and n["availability"] == "active" for n in nodes)
        worker = lab.worker_clients[0]
        assert not swarm.is_manager(worker)
        with pytest.raises(MinicloudError, match="swarm worker, not a manager") as refused:
            swarm.require_manager(worker)
        assert "docker node promote" in refused.value.hint

        # the registry, on the host engine, on 127.0.0.1 (trusted by every engine) and the lab's bridge
        settings = registry.RegistrySettings(name=f"{lab.name}-registry", port=lab.registry_port,
                                             bind=("127.0.0.1", lab.bridge_address), labels=lab.labels)
        lab.containers.append(settings.name)
        lab.volumes.append(settings.volume_name)
        address = registry.ensure_registry(host, settings)
        assert address == lab.registry_address
        assert registry.ensure_registry(host, settings) == address  # kept as it is
        assert host.containers.get(settings.name).labels[registry.LABEL_REGISTRY] == settings.name

        local = build_hello(host, lab)
        ref = registry.push(host, local, address)
        lab.images.append(ref)
        assert ref == f"{address}/{lab.name}/hello:1"
        assert registry.tags(address, f"{lab.name}/hello") == ["1"]
        assert registry.tags(address, f"{lab.name}/nothing") == []
        digest = registry.manifest_digest(address, f"{lab.name}/hello", "1")
        host.containers.get(settings.name).stop(timeout=5)  # a stopped registry is started again, its
        assert registry.ensure_registry(host, settings) == address  # images kept on the volume
        assert registry.manifest_digest(address, f"{lab.name}/hello", "1") == digest
        for client in [manager, *lab.worker_clients]:  # fresh engines: nothing but what the registry gives
            assert client.images.list(all=True) == []

        network = manager.networks.create(f"{lab.name}-net", driver="overlay", attachable=True,
                                       labels=lab.labels)
        lab.networks.append(network.name)
        name = f"{lab.name}-web"
        lab.services.append(name)
        service = manager.services.create(
            ref, name=name, networks=[network.id], mode=ServiceMode("replicated", replicas=3),
            endpoint_spec=EndpointSpec(mode="dnsrr"), maxreplicas=1, init=True, stop_grace_period=2 * SECOND,
            hostname="{{.Node.Hostname}}-{{.Task.Slot}}", labels=lab.labels, container_labels=lab.labels)
        tasks = running_tasks(service, 3)
        assert {t["NodeID"] for t in tasks} == {lab.manager_node_id, *lab.worker_node_ids}

        # every engine pulled it from the registry, and the registry saw them ask
        for client in [manager, *lab.worker_clients]:
            digests = [d for i in client.images.list() for d in i.attrs.get("RepoDigests") or []]
            assert f"{address}/{lab.name}/hello@{digest}" in digests
        log = host.containers.get(settings.name).logs().decode(errors="replace")
        asked = re.findall(rf'^(\S+) - .*"(?:GET|HEAD) /v2/{lab.name}/hello/manifests/\S+ HTTP', log, re.M)
        assert {w.addr for w in lab.engines} <= set(asked), f"manifest requests in the registry log: {asked}"

        # a container on the manager reaches the workers' tasks over the overlay, by tasks.SERVICE
        probe = manager.containers.run(ref, ["sleep", "300"], name=f"{lab.name}-probe", network=network.name,
                                       labels=lab.labels, detach=True)  # removed with the manager engine
        expected = {task_ip(t, network.id) for t in tasks}

        def resolved() -> set[str] | None:
            _, out = probe.exec_run(["nslookup", f"tasks.{name}", "127.0.0.11"])
            ips = set(re.findall(r"^Address:\s*(\d+\.\d+\.\d+\.\d+)\s*$", out.decode(errors="replace"), re.M))
            return ips if ips == expected else None

        wait_for(f"tasks.{name} to resolve to the 3 task addresses {sorted(expected)}", resolved, 30)
        hostnames = {n["id"]: n["hostname"] for n in nodes}
        answered = 0
        for t in tasks:
            if t["NodeID"] in lab.worker_node_ids:
                body = http_get_in(probe, task_ip(t, network.id), 8000)
                assert body == f"{hostnames[t['NodeID']]}-{t['Slot']}"
                answered += 1
        assert answered == 2
        # and worker to worker, across the lab's bridge (the firewall rule the lab adds lets it through)
        on_worker = {t["NodeID"]: t for t in tasks if t["NodeID"] in lab.worker_node_ids}
        first, second = lab.workers
        of_service = {"label": f"com.docker.swarm.service.name={name}"}
        task_on_first = first.client.containers.list(filters=of_service)[0]
        target = on_worker[second.node_id]
        body = http_get_in(task_on_first, task_ip(target, network.id), 8000)
        assert body == f"{second.name}-{target['Slot']}"

        # pushing to a registry that is not there says which image and which registry
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            dead = f"127.0.0.1:{s.getsockname()[1]}"
        lab.images.append(f"{dead}/{lab.name}/hello:1")
        refusal = re.escape(f"pushing {local} to the registry at {dead} failed")
        with pytest.raises(MinicloudError, match=refusal) as no:
            registry.push(host, local, dead)
        assert "is the registry running" in no.value.hint


@pytest.mark.docker
def test_a_single_node_swarm_serves_an_env_and_an_engine_in_no_swarm_is_refused_then_left_as_found(
        docker_engine, tmp_path):
    """The lab's manager alone is a single-node swarm: a swarm env's app deploys there (every replica on the
    one node, pulled from the registry) and its gateway answers. The other engine is in no swarm: refused
    with the command that makes one, made one by that command, and left as it was found."""
    from bench.load import by_name, trusting
    from bench.swarm import write_app
    from deploy_bridge.cloud import Cloud

    with swarm_lab(workers=1, join=False, host=docker_engine) as lab:
        engine = lab.worker_clients[0]
        assert engine.info()["Swarm"]["LocalNodeState"] == "inactive"
        assert not swarm.is_manager(engine)
        with pytest.raises(MinicloudError, match="not part of a swarm") as refused:
            swarm.require_manager(engine)
        assert "docker swarm init --advertise-addr" in refused.value.hint
        with pytest.raises(MinicloudError, match="not part of a swarm"):
            swarm.node_table(engine)
        assert swarm.is_manager(lab.manager)
        swarm.require_manager(lab.manager)
        assert [n["id"] for n in swarm.node_table(lab.manager)] == [lab.manager_node_id]

        ws, name = tmp_path / "single", f"one{lab.name[-5:]}"
        write_app(ws, name, lab.registry_address, replicas=2)
        lab.start_registry()
        cloud = Cloud(ws)
        env = lab.swarm_env(cloud)
        release, image = env.deploy({"MINICLOUD_ENV": "prod"})
        lab.images.extend([image, cloud.settings.app_image(name, "prod", release)])
        tasks = env.tasks()
        assert [(t.state, t.node, t.release) for t in tasks] == [("running", lab.manager_node.name, release)] * 2
        url = f"https://{lab.manager_address}:{cloud.settings.gateway_port}/"
        with httpx.Client(verify=trusting(cloud.ca_path()), timeout=10) as client:
            seen = {client.get(url, **by_name(cloud.settings.app_host(name, "prod"))).text for _ in range(8)}
        assert len(seen) == 2 and all(a.startswith("v1 ") for a in seen), seen  # both tasks answer

        # what the refusal told the user to do, on the engine in no swarm; then leave it as it was
        engine.swarm.init(advertise_addr="127.0.0.1")
        try:
            swarm.require_manager(engine)
            assert len(swarm.node_table(engine)) == 1
        finally:
            engine.swarm.leave(force=True)
        assert engine.info()["Swarm"]["LocalNodeState"] == "inactive"


class FakeEngine:
    def __init__(self, **swarm_info) -> None:
        self._info = {"Swarm": swarm_info}

    def info(self) -> dict:
        return self._info


@pytest.mark.parametrize(("swarm_info", "message", "hint"), [
    ({"LocalNodeState": "inactive"}, "not part of a swarm", "docker swarm init --advertise-addr"),
    ({"LocalNodeState": "active", "ControlAvailable": False, "NodeID": "n1",
      "RemoteManagers": [{"Addr": "10.1.2.3:2377"}]}, "swarm worker, not a manager", "10.1.2.3:2377"),
    ({"LocalNodeState": "locked"}, "locked", "docker swarm unlock"),
    ({"LocalNodeState": "pending"}, "still joining", "docker swarm leave --force"),
    ({"LocalNodeState": "error", "Error": "raft broke"}, "raft broke", "docker swarm init --advertise-addr"),
])
def test_require_manager_says_why_and_how_to_fix_it(swarm_info, message, hint):
    engine = FakeEngine(**swarm_info)
    assert not swarm.is_manager(engine)
    with pytest.raises(MinicloudError, match=message) as refused:
        swarm.require_manager(engine)
    assert hint in refused.value.hint
    swarm.require_manager(FakeEngine(LocalNodeState="active", ControlAvailable=True))


@pytest.mark.parametrize(("image", "expected"), [
    ("minicloud/sandbox:abc", ("minicloud/sandbox", "abc")),
    ("hello", ("hello", "latest")),
    ("127.0.0.1:5000/lab/hello:1", ("lab/hello", "1")),
    ("registry.example.com/team/app:2", ("team/app", "2")),
    ("localhost/app", ("app", "latest")),
])
def test_push_names_the_image_address_repo_tag(image, expected):
    assert registry._split(image) == expected
