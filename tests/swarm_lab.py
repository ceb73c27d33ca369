"""A Docker Swarm on one machine, for tests: extra `dockerd`s in network namespaces of their own, one the
manager, the others workers. The host engine builds images and runs the registry; it never joins the swarm.

Why the manager is not the host engine: making the host engine a swarm manager and leaving again empties
the embedded DNS of the containers already running on it (an env built before answered 502 after; seen in
session 6). A lab engine is thrown away with everything on it.

    with swarm_lab(workers=2) as lab:
        lab.host                 # docker.DockerClient of the host engine (builds, the registry container)
        lab.manager              # docker.DockerClient of the manager engine: services, nodes, networks
        lab.manager_node_id, lab.worker_node_ids
        lab.worker_clients       # one docker.DockerClient per worker engine
        lab.manager_address      # the manager's node address (its eth0)
        lab.bridge_address       # the host's address on the lab's bridge (the registry is published there)
        lab.registry_port        # a free port, forwarded from 127.0.0.1 inside every lab engine (see below)
        lab.containers/volumes/images.append(name)  # on the host engine, removed on exit
        (containers on a lab engine labelled with `lab.labels` are removed on exit too)
        lab.services/networks.append(name)          # on the manager, removed on exit

What it does, and what was tried on this machine (Debian bookworm, docker.io 20.10 with cgroup v1, no
IPVS, privileged containers refused so no Docker-in-Docker; measured 2026-11-27):

- Each lab engine is a `dockerd` in a network namespace of its own (`ip netns add mc-lab-XXXXX-m` for the
  manager, `…-wN` for the workers), joined to the root namespace by a veth pair: `mc-lab-XXXXXhm`/`…hN`
  (root side, a port of the lab's bridge `mc-lab-XXXXX`, which has 198.18.B.1/24) and `eth0` (inside: the
  manager .2, worker N .N+3, default route via .1).
  B is a random free /24 of 198.18.0.0/15 (RFC 2544's benchmarking range: never one of Docker's default
  pools, so the lab cannot collide with the host engine's bridge or overlay subnets).
  First tried: one routed /30 per worker (host side .4N+1, inside .4N+2). The swarm formed, but the
  overlay carried traffic between the host and the FIRST worker only: the host sends VXLAN from the
  address of the outgoing interface, so the second worker got it from .5, not from the address the
  manager advertises (.1); it was counted arriving on UDP 4789 and never decapsulated. With one bridge,
  the host speaks to every worker from the single address it advertises.
  The host engine's firewall drops forwarded packets (FORWARD policy DROP, and br_netfilter makes bridged
  frames go through it): while the lab lives, DOCKER-USER gets one rule `-s BLOCK -d BLOCK -j ACCEPT`
  with the comment `mc-lab-XXXXX` (worker to worker traffic).
- dockerd is started as `nsenter --net=/var/run/netns/NS unshare --uts -- sh -c 'hostname NAME && exec
  dockerd …'` (the node gets its own hostname in `docker node ls`). `ip netns exec` does NOT work: it
  remounts /sys, and dockerd then fails with "Devices cgroup isn't mounted". The flags that work:
      --config-file ROOT/daemon.json ({}: /etc/docker/daemon.json of the host is not read)
      --data-root /var/lib/mc-lab-XXXXX/wN/data  --exec-root /run/mc-lab-XXXXX-wN
      --pidfile /run/mc-lab-XXXXX-wN.pid  -H unix:///run/mc-lab-XXXXX-wN.sock
      --bridge=none  --iptables=true (the rules live in the worker's namespace only)
      --default-address-pool base=198.18.P.0/24,size=26 (docker_gwbridge of the worker, inside its namespace)
      --insecure-registry BLOCK (the lab's /24: a registry on the host's bridge address or on a node)
      --cgroup-parent /mc-lab-XXXXX-wN (so every process of its
      containers is found, and killed, by cgroup)
  It answers in about a second (polled with a deadline); it shares /etc/docker/key.json with the host.
- Swarm: `swarm init` on the manager engine advertising its `eth0` address, `swarm.join` from each
  worker with `advertise_addr`, `listen_addr` and `data_path_addr` = its `eth0` address. (Tried before:
  the host engine as the manager, advertising the bridge's address; it works, but see above.) Overlay networks carry traffic between the engines (VXLAN
  on the veths). There is no IPVS here: a service's virtual IP and the ingress routing mesh do not
  answer; endpoint mode `dnsrr`, `tasks.SERVICE` names and host-mode published ports do.
- The registry: plain HTTP. Every engine trusts 127.0.0.0/8 as an insecure registry, the host engine too
  (it cannot be given `--insecure-registry` without a restart), so images are named
  127.0.0.1:PORT/REPO:TAG on every node, the way Docker's own swarm tutorial does with a published
  registry service. Inside each lab engine's namespace, 127.0.0.1:`registry_port` is forwarded to
  BRIDGE_ADDRESS:`registry_port` (iptables nat OUTPUT DNAT + POSTROUTING SNAT, `route_localnet=1`; the
  rules die with the namespace); the registry container (host engine) publishes its port on 127.0.0.1
  and on BRIDGE_ADDRESS. Lab engines also trust BRIDGE_ADDRESS as insecure, so that form works too.
- Teardown, in order (every step runs even when an earlier one failed; the body's exception wins, the
  problems are added to it as notes; without one, problems raise LabError): the services (waiting until
  their tasks are gone) and networks on the manager; tracked containers, volumes, images of the host
  engine; each worker, then the manager, leaves the swarm (its containers go with it); the lab dockerds
  get SIGTERM (SIGKILL after 20 s); any process left in a lab namespace, lab cgroup or naming the lab is killed
  (containerd, shims, docker-proxy, container processes); mounts under the lab's roots are lazily
  unmounted; cgroup folders removed; roots removed (only once nothing is mounted under them); the
  firewall rule removed; the root-side veths and the bridge deleted (deleting the namespace alone leaves
  the veth for a moment: the kernel destroys a namespace asynchronously); the namespaces deleted. Then
  it checks that no namespace, link, process or mount named after the lab is left.
- Whatever swarm the host engine is in (or none) is not the lab's business and is left alone.
- Labs on one machine run one at a time (an abstract unix socket `@mc-lab.lock` is the lock, released
  by the kernel if the process dies), so their bridges, ports and forwarding rules never meet.
- A lab killed with SIGKILL leaves its pieces behind, all named `mc-lab-XXXXX` (namespaces, links,
  processes, folders under /var/lib and /run, the DOCKER-USER rule).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
from docker.errors import APIError, NotFound

PREFIX = "mc-lab"
LAB_LABEL = "mc-lab"  # label key on what a test makes for the lab; value: the lab's name
LAB_RANGE = ipaddress.ip_network("198.18.0.0/15")
LOCK_ADDRESS = b"\0mc-lab.lock"
STATE_ROOT = Path("/var/lib")
RUN_ROOT = Path("/run")
NETNS_DIR = Path("/var/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")
STOP_DEADLINE = 20.0


class LabError(RuntimeError):
    pass


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(cmd)} failed ({done.returncode}): {(done.stderr or done.stdout).strip()}")
    return done


def _in_netns(netns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return _run("nsenter", f"--net={NETNS_DIR / netns}", *cmd, check=check)


def _wait_for(what: str, probe: Callable[[], object], timeout: float, interval: float = 0.1):
    """Poll `probe` until it returns something truthy; LabError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except LabError:
            raise
        except Exception as err:  # noqa: BLE001 - remembered, reported at the deadline
            last = err
        if time.monotonic() > deadline:
            because = f" ({last})" if last else ""
            raise LabError(f"timed out after {timeout:.0f} s waiting for {what}{because}")
        time.sleep(interval)


@contextlib.contextmanager
def _host_lock(timeout: float) -> Iterator[None]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    def take() -> bool:
        try:
            sock.bind(LOCK_ADDRESS)
            return True
        except OSError as err:
            if err.errno != errno.EADDRINUSE:
                raise
            return False

    try:
        _wait_for("another swarm lab on this machine to finish", take, timeout, interval=0.5)
        yield
    finally:
        sock.close()


def _used_networks() -> list[ipaddress.IPv4Network]:
    used = []
    routes = json.loads(_run("ip", "-j", "-4", "route", "show", "table", "all").stdout or "[]")
    for route in routes:
        dst = route.get("dst", "")
        if dst and dst != "default":
            with contextlib.suppress(ValueError):
                used.append(ipaddress.ip_network(dst, strict=False))
    for link in json.loads(_run("ip", "-j", "-4", "addr").stdout or "[]"):
        for addr in link.get("addr_info", []):
            used.append(ipaddress.ip_network(f"{addr['local']}/{addr['prefixlen']}", strict=False))
    return used


def _free_blocks(count: int) -> list[ipaddress.IPv4Network]:
    used = _used_networks()
    candidates = list(LAB_RANGE.subnets(new_prefix=24))
    random.shuffle(candidates)
    free = [c for c in candidates if not any(c.overlaps(u) for u in used)]
    if len(free) < count:
        raise LabError(f"no free /24 left in {LAB_RANGE} for a swarm lab")
    return free[:count]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


@dataclass
class Worker:
    """One lab engine: the manager (index -1, `mc-lab-XXXXX-m`) or a worker."""

    index: int
    name: str  # mc-lab-XXXXX-m or -wN: namespace, hostname, cgroup parent, exec root
    host_if: str  # the root side of its veth, a port of the lab's bridge
    host_addr: str  # the bridge's address: the engine's gateway, where the registry is published
    addr: str  # its eth0 address: its node address
    root: Path
    exec_root: Path
    sock: Path
    pidfile: Path
    process: subprocess.Popen | None = None
    client: docker.DockerClient | None = None
    node_id: str | None = None
    netns_inode: int | None = None
    joined: bool = False
    killed: bool = False  # by `SwarmLab.kill`: a node lost at once (teardown does not ask it anything)

    @property
    def netns(self) -> str:
        return self.name

    @property
    def log(self) -> Path:
        return self.root / "dockerd.log"

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class SwarmLab:
    name: str  # mc-lab-XXXXX
    host: docker.DockerClient
    workers: list[Worker] = field(default_factory=list)
    manager_node: Worker | None = None
    bridge_address: str = ""
    registry_port: int = 0
    block: ipaddress.IPv4Network | None = None
    pool: ipaddress.IPv4Network | None = None
    # on the manager, removed on exit (in this order)
    services: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    # on the host engine, removed on exit (in this order)
    containers: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    forward_rule: tuple[str, ...] | None = None
    made_netns: list[str] = field(default_factory=list)
    made_links: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per teardown step (for tuning)
    sshd: subprocess.Popen | None = None

    @property
    def labels(self) -> dict[str, str]:
        return {LAB_LABEL: self.name}

    @property
    def engines(self) -> list[Worker]:
        """Every lab engine: the manager first."""
        return [e for e in (self.manager_node, *self.workers) if e is not None]

    @property
    def manager(self) -> docker.DockerClient:
        assert self.manager_node is not None and self.manager_node.client is not None
        return self.manager_node.client

    @property
    def manager_address(self) -> str:
        return self.manager_node.addr if self.manager_node else ""

    @property
    def manager_node_id(self) -> str:
        return self.manager_node.node_id if self.manager_node else ""

    @property
    def worker_clients(self) -> list[docker.DockerClient]:
        return [w.client for w in self.workers if w.client is not None]

    @property
    def worker_node_ids(self) -> list[str]:
        return [w.node_id for w in self.workers if w.node_id]

    @property
    def registry_address(self) -> str:
        """The registry's address as every node of the lab names it (forwarded inside the workers)."""
        return f"127.0.0.1:{self.registry_port}"

    @property
    def root(self) -> Path:
        return STATE_ROOT / self.name

    def start_registry(self) -> str:
        """The registry on the host engine, published on 127.0.0.1 and the lab's bridge (every lab engine
        trusts it); removed with the lab. Returns its address as the nodes name it."""
        from deploy_bridge import registry

        settings = registry.RegistrySettings(name=f"{self.name}-registry", port=self.registry_port,
                                             bind=("127.0.0.1", self.bridge_address), labels=self.labels)
        self.containers.append(settings.name)
        self.volumes.append(settings.volume_name)
        return registry.ensure_registry(self.host, settings)

    def swarm_env(self, cloud, env: str = "prod"):
        """The SwarmEnv of `cloud`'s `env` on the lab's manager, built on the host engine; its services and
        network removed with the lab."""
        from deploy_bridge.swarm_env import SwarmEnv

        made = SwarmEnv(self.manager, cloud.settings, cloud.manifest, env, builder=self.host,
                        engine_socket=str(self.manager_node.sock))
        self.services.extend([made.service_name, made.gateway().service_name])
        self.networks.append(made.network_name)
        return made

    def forward_loopback(self, port: int, target: str | None = None) -> None:
        """Make 127.0.0.1:PORT inside every lab engine's namespace reach TARGET:PORT (default: the host)."""
        target = target or self.bridge_address
        for w in self.engines:
            _in_netns(w.netns, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet && "
                      "echo 1 > /proc/sys/net/ipv4/conf/eth0/route_localnet")
            _in_netns(w.netns, "iptables", "-t", "nat", "-A", "OUTPUT", "-d", "127.0.0.1/32", "-p", "tcp",
                      "--dport", str(port), "-j", "DNAT", "--to-destination", f"{target}:{port}")
            rule = ("-s", "127.0.0.1/32", "-o", "eth0", "-j", "SNAT", "--to-source", w.addr)
            present = _in_netns(w.netns, "iptables", "-t", "nat", "-C", "POSTROUTING", *rule, check=False)
            if present.returncode != 0:
                _in_netns(w.netns, "iptables", "-t", "nat", "-A", "POSTROUTING", *rule)

    # ------------------------------------------------------------------------------------ set-up

    def _setup(self, count: int, join: bool, timeout: float) -> None:
        self.block, self.pool = _free_blocks(2)
        hosts = list(self.block.hosts())  # .1: the bridge (the host), .2: the manager, .3 and on: the workers
        if count > len(hosts) - 2:
            raise LabError(f"at most {len(hosts) - 2} workers")
        self.bridge_address = str(hosts[0])

        def engine(index: int, suffix: str, addr: str) -> Worker:
            name = f"{self.name}-{suffix}"
            return Worker(index=index, name=name, host_if=f"{self.name}h{suffix.lstrip('w')}",
                          host_addr=self.bridge_address, addr=addr, root=self.root / suffix,
                          exec_root=RUN_ROOT / name, sock=RUN_ROOT / f"{name}.sock", pidfile=RUN_ROOT / f"{name}.pid")

        self.manager_node = engine(-1, "m", str(hosts[1]))
        self.workers = [engine(i, f"w{i}", str(hosts[i + 2])) for i in range(count)]
        self._make_bridge(self.bridge_address)
        for w in self.engines:
            self._make_namespace(w)
        self._allow_forwarding()  # engine to engine across the bridge (the manager and a worker, too)
        self.registry_port = _free_port()
        self.forward_loopback(self.registry_port)
        for w in self.engines:
            self._start_engine(w)
        for w in self.engines:
            self._wait_engine(w, timeout)
        m = self.manager_node
        m.joined = True  # before the call: a half-done init is left too
        m.client.swarm.init(advertise_addr=m.addr, listen_addr=f"{m.addr}:2377", data_path_addr=m.addr)
        m.node_id = m.client.info()["Swarm"]["NodeID"]
        if join:
            for w in self.workers:
                self.join(w, timeout)

    @property
    def bridge(self) -> str:
        return self.name

    def _make_bridge(self, address: str) -> None:
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        self.made_links.append(self.bridge)
        _run("ip", "addr", "add", f"{address}/{self.block.prefixlen}", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")

    def _make_namespace(self, w: Worker) -> None:
        _run("ip", "netns", "add", w.netns)
        self.made_netns.append(w.netns)
        w.netns_inode = os.stat(NETNS_DIR / w.netns).st_ino
        _run("ip", "link", "add", w.host_if, "type", "veth", "peer", "name", "eth0", "netns", w.netns)
        self.made_links.insert(0, w.host_if)  # deleted before the bridge
        _run("ip", "link", "set", w.host_if, "master", self.bridge)
        _run("ip", "link", "set", w.host_if, "up")
        _run("ip", "-n", w.netns, "addr", "add", f"{w.addr}/{self.block.prefixlen}", "dev", "eth0")
        _run("ip", "-n", w.netns, "link", "set", "lo", "up")
        _run("ip", "-n", w.netns, "link", "set", "eth0", "up")
        _run("ip", "-n", w.netns, "route", "add", "default", "via", w.host_addr)

    def _allow_forwarding(self) -> None:
        has_user_chain = _run("iptables", "-S", "DOCKER-USER", check=False).returncode == 0
        chain = "DOCKER-USER" if has_user_chain else "FORWARD"
        rule = (chain, "-s", str(self.block), "-d", str(self.block), "-m", "comment", "--comment", self.name,
                "-j", "ACCEPT")
        _run("iptables", "-I", chain, "1", *rule[1:])
        self.forward_rule = rule

    def dockerd_args(self, w: Worker) -> list[str]:
        return ["dockerd", "--config-file", str(w.root / "daemon.json"), "--data-root", str(w.root / "data"),
                "--exec-root", str(w.exec_root), "--pidfile", str(w.pidfile), "-H", f"unix://{w.sock}",
                "--bridge=none", "--iptables=true", f"--default-address-pool=base={self.pool},size=26",
                f"--insecure-registry={self.block}", f"--cgroup-parent=/{w.name}",
                "--log-level=info"]

    def start_sshd(self, port: int = 2222) -> tuple[str, dict[str, str]]:
        """The manager as a remote machine is reached: an ssh server in its namespace, at its address, whose
        one key (made here, known to this lab only) may run nothing but `docker system dial-stdio` on the
        manager's engine. Returns (the DOCKER_HOST URL, the environment that makes `ssh` use that key: PATH
        with a wrapper first, as a user's ~/.ssh/config would)."""
        node = self.manager_node
        assert node is not None
        folder = self.root / "ssh"
        (folder / "bin").mkdir(parents=True, exist_ok=True)
        for key in ("host_key", "user_key"):
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / key))
        dial = f"DOCKER_HOST=unix://{node.sock} exec docker system dial-stdio"
        authorized = folder / "authorized_keys"
        authorized.write_text(f'command="{dial}",restrict {(folder / "user_key.pub").read_text()}')
        authorized.chmod(0o600)
        config = folder / "sshd_config"
        config.write_text(f"ListenAddress {node.addr}\nPort {port}\nHostKey {folder / 'host_key'}\n"
                          f"AuthorizedKeysFile {authorized}\nPidFile {folder / 'sshd.pid'}\nStrictModes no\n"
                          "UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                          "PermitRootLogin prohibit-password\n")
        Path("/run/sshd").mkdir(exist_ok=True)  # its privilege separation folder
        with open(folder / "sshd.log", "ab") as log:
            self.sshd = subprocess.Popen(["nsenter", f"--net={NETNS_DIR / node.netns}", "/usr/sbin/sshd", "-D", "-e",
                                          "-f", str(config)], stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

        def listens() -> bool:
            if self.sshd.poll() is not None:
                raise LabError(f"sshd exited with {self.sshd.returncode}: {(folder / 'sshd.log').read_text()[-500:]}")
            with contextlib.suppress(OSError), socket.create_connection((node.addr, port), timeout=1):
                return True
            return False

        _wait_for(f"sshd on {node.addr}:{port}", listens, 15)
        wrapper = folder / "bin" / "ssh"
        wrapper.write_text(f"#!/bin/sh\nexec /usr/bin/ssh -i {folder / 'user_key'} -o IdentitiesOnly=yes "
                           "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \"$@\"\n")
        wrapper.chmod(0o755)
        return f"ssh://root@{node.addr}:{port}", {"PATH": f"{folder / 'bin'}:{os.environ.get('PATH', '')}"}

    def _stop_sshd(self) -> None:
        if self.sshd is not None and self.sshd.poll() is None:
            self.sshd.terminate()
            self.sshd.wait(timeout=10)

    def _start_engine(self, w: Worker) -> None:
        w.root.mkdir(parents=True, exist_ok=True)
        (w.root / "daemon.json").write_text("{}\n")
        cmd = ["nsenter", f"--net={NETNS_DIR / w.netns}", "unshare", "--uts", "--",
               "sh", "-c", 'hostname "$0" && exec "$@"', w.name, *self.dockerd_args(w)]
        with open(w.log, "ab") as log:
            # nsenter, unshare (without --fork) and sh all exec: the pid is dockerd's
            w.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def _wait_engine(self, w: Worker, timeout: float) -> None:
        def answers() -> bool:
            if w.process.poll() is not None:
                raise LabError(f"dockerd of {w.name} exited with {w.process.returncode}")
            if not w.sock.exists():
                return False
            client = docker.DockerClient(base_url=f"unix://{w.sock}", timeout=60)
            try:
                client.ping()
            except Exception:
                client.close()
                raise
            w.client = client
            return True

        try:
            _wait_for(f"dockerd of {w.name} to answer on {w.sock}", answers, timeout)
        except LabError as err:
            raise LabError(f"{err}; the end of its log:\n{w.log_tail()}") from None

    def kill(self, w: Worker) -> None:
        """Lose node `w` at once, as a machine that loses power: SIGKILL to its dockerd, containerd, shims
        and containers (everything in its namespace or cgroup). Its tasks are not stopped, they vanish."""
        w.killed = True
        if w.client is not None:
            w.client.close()
        pids = self._pids_of([w])
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait_for(f"the processes of {w.name} to die", lambda: not self._pids_of([w]), 10)
        if w.process is not None:
            w.process.wait(timeout=10)

    def join(self, w: Worker, timeout: float = 60.0) -> str:
        """Join worker `w` to the swarm (as a worker); its node id once the manager sees it ready."""
        self.manager.swarm.reload()
        token = self.manager.swarm.attrs["JoinTokens"]["Worker"]
        w.joined = True  # before the call: a failed join may still leave a node to remove
        w.client.swarm.join(remote_addrs=[f"{self.manager_address}:2377"], join_token=token,
                            listen_addr=f"{w.addr}:2377", advertise_addr=w.addr, data_path_addr=w.addr)
        w.node_id = w.client.info()["Swarm"]["NodeID"]
        _wait_for(f"node {w.name} to be ready",
                  lambda: self.manager.nodes.get(w.node_id).attrs["Status"]["State"] == "ready", timeout)
        return w.node_id

    # ---------------------------------------------------------------------------------- teardown

    def _teardown(self) -> list[str]:
        problems: list[str] = []

        def step(what: str, fn: Callable[[], None]) -> None:
            started = time.monotonic()
            try:
                fn()
            except Exception as err:  # noqa: BLE001 - every step runs; the problems are reported together
                problems.append(f"{what}: {err}")
            self.timings[what] = time.monotonic() - started

        step("stopping the lab's ssh server", self._stop_sshd)
        step("removing labelled containers on the lab engines", self._remove_engine_containers)
        if self.manager_node and self.manager_node.client:
            step("removing the lab's services", self._remove_services)
            step("removing the lab's networks", self._remove_networks)
        step("removing the lab's containers", self._remove_containers)
        step("removing the lab's volumes", self._remove_volumes)
        step("removing the lab's images", self._remove_images)
        for w in [*self.workers, *self.engines[:1]]:  # the manager last
            step(f"{w.name} leaving the swarm", lambda w=w: self._leave(w))
        step("stopping the lab engines", self._stop_engines)
        step("killing what is left of the lab engines", self._kill_leftovers)
        step("unmounting the lab engines' mounts", self._unmount)
        step("removing the lab engines' cgroups", self._remove_cgroups)
        step("removing the lab engines' folders", self._remove_folders)
        if self.forward_rule:
            step("removing the forwarding rule", lambda: _run("iptables", "-D", *self.forward_rule))
        step("removing the veths and namespaces", self._remove_network_namespaces)
        step("checking that nothing is left", self._check_clean)
        return problems

    def _remove_engine_containers(self) -> None:
        """Containers a test ran on a lab engine with the lab's label (a probe on an attachable network
        holds the network until it goes)."""
        for w in self.engines:
            if w.client is not None and not w.killed:
                for container in w.client.containers.list(all=True, filters={"label": f"{LAB_LABEL}={self.name}"}):
                    with contextlib.suppress(NotFound):
                        container.remove(force=True)

    def _remove_containers(self) -> None:
        for name in reversed(self.containers):
            with contextlib.suppress(NotFound):
                self.host.containers.get(name).remove(force=True)

    def _remove_services(self) -> None:
        ids = []
        # the manager is the lab's own: every service on it goes, the tracked ones first
        names = [*reversed(self.services), *(s.name for s in self.manager.services.list())]
        for name in dict.fromkeys(names):
            with contextlib.suppress(NotFound):
                service = self.manager.services.get(name)
                ids.append(service.id)
                service.remove()
        if not ids:
            return
        engines = [w.client for w in self.engines if w.client is not None and not w.killed]

        def tasks_gone() -> bool:
            return not any(e.containers.list(all=True, filters={"label": f"com.docker.swarm.service.id={i}"})
                           for e in engines for i in ids)

        _wait_for("the services' task containers to go", tasks_gone, 30)

    def _remove_networks(self) -> None:
        for name in reversed(self.networks):
            def removed(name: str = name) -> bool:
                try:
                    self.manager.networks.get(name).remove()
                except NotFound:
                    return True
                return False  # APIError (still in use) is retried by _wait_for

            _wait_for(f"network {name} to be removable", removed, 20, interval=0.25)

    def _remove_volumes(self) -> None:
        for name in reversed(self.volumes):
            with contextlib.suppress(NotFound):
                self.host.volumes.get(name).remove(force=True)

    def _remove_images(self) -> None:
        # what was pushed to the lab's registry, or to a registry on a lab node, is tagged with that address on
        # the host engine too
        def lab_address(tag: str) -> bool:
            host = tag.split("/", 1)[0].rsplit(":", 1)[0] if "/" in tag else ""
            with contextlib.suppress(ValueError):
                return ipaddress.ip_address(host) in self.block
            return False

        pushed = [t for i in self.host.images.list() for t in i.tags
                  if t.startswith(f"{self.registry_address}/") or lab_address(t)]
        for name in [*reversed(self.images), *pushed]:
            with contextlib.suppress(NotFound):
                self.host.images.remove(name, force=True, noprune=False)

    def _leave(self, w: Worker) -> None:
        if w.client is None or w.killed:
            return
        if w.joined:
            with contextlib.suppress(APIError):  # not in a swarm (a failed join): nothing to leave
                w.client.swarm.leave(force=True)
        for container in w.client.containers.list(all=True):
            try:
                container.remove(force=True)
            except NotFound:
                pass
            except APIError as err:  # leaving the swarm, the engine removes its task containers itself
                if "already in progress" not in str(err):
                    raise

    def _stop_engines(self) -> None:
        for w in self.engines:
            if w.client is not None:
                w.client.close()
            if w.process is not None and w.process.poll() is None:
                w.process.send_signal(signal.SIGTERM)
        slow = []
        deadline = time.monotonic() + STOP_DEADLINE
        for w in self.engines:
            if w.process is None:
                continue
            try:
                w.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                slow.append(w.name)
                w.process.kill()
                w.process.wait(timeout=10)
        if slow:
            raise LabError(f"dockerd of {', '.join(slow)} did not stop within {STOP_DEADLINE:.0f} s (killed)")

    def _leftover_pids(self) -> list[int]:
        return self._pids_of(self.engines, match_lab_name=True)

    def _pids_of(self, engines: list[Worker], match_lab_name: bool = False) -> list[int]:
        """Processes in the namespaces or cgroups of `engines` (or, with match_lab_name, naming the lab)."""
        inodes = {w.netns_inode for w in engines if w.netns_inode}
        cgroups = tuple(f"/{w.name}" for w in engines)
        me = os.getpid()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                ours = os.stat(entry / "ns" / "net").st_ino in inodes  # dockerd, containerd, the shims
                if not ours and match_lab_name:
                    ours = self.name.encode() in (entry / "cmdline").read_bytes()
                if not ours:  # the containers: in their own namespaces, under the engine's cgroup parent
                    paths = [line.split(":", 2)[-1] for line in (entry / "cgroup").read_text().splitlines()]
                    ours = any(p == c or p.startswith(c + "/") for p in paths for c in cgroups)
            except OSError:  # gone meanwhile, or a kernel thread
                continue
            if ours:
                pids.append(int(entry.name))
        return pids

    def _kill_leftovers(self) -> None:
        pids = self._leftover_pids()
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait_for("the lab's leftover processes to die", lambda: not self._leftover_pids(), 10)

    def _mounts(self) -> list[str]:
        prefixes = (f"{self.root}/", f"{RUN_ROOT}/{self.name}-")
        found = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point.startswith(prefixes) or point == str(self.root):
                found.append(point)
        return found

    def _unmount(self) -> None:
        for point in sorted(self._mounts(), key=lambda p: p.count("/"), reverse=True):
            _run("umount", "--lazy", point, check=False)
        left = self._mounts()
        if left:
            raise LabError(f"still mounted: {', '.join(left[:5])}")

    def _remove_cgroups(self) -> None:
        for w in self.engines:
            for top in [CGROUP_ROOT / w.name, *CGROUP_ROOT.glob(f"*/{w.name}")]:
                if not top.is_dir():
                    continue
                for folder in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                                     reverse=True):
                    folder.rmdir()
                top.rmdir()

    def _remove_folders(self) -> None:
        if self._mounts():
            raise LabError("not removing the lab's folders: something is still mounted under them")
        if self.root.exists():
            shutil.rmtree(self.root)
        for w in self.engines:
            if w.exec_root.exists():
                shutil.rmtree(w.exec_root)
            for path in (w.sock, w.pidfile):
                path.unlink(missing_ok=True)

    def _remove_network_namespaces(self) -> None:
        for link in self.made_links:
            if Path(f"/sys/class/net/{link}").exists():
                _run("ip", "link", "del", link)
        for netns in self.made_netns:
            if (NETNS_DIR / netns).exists():
                _run("ip", "netns", "del", netns)

    def _check_clean(self) -> None:
        left = []
        left += [f"netns {n}" for n in _run("ip", "netns", "list").stdout.split() if n.startswith(self.name)]
        left += [f"link {p.name}" for p in Path("/sys/class/net").iterdir() if p.name.startswith(self.name)]
        left += [f"process {pid}" for pid in self._leftover_pids()]
        left += [f"mount {m}" for m in self._mounts()]
        if self.root.exists():
            left.append(f"folder {self.root}")
        if left:
            raise LabError("left behind: " + ", ".join(left))


@contextlib.contextmanager
def swarm_lab(workers: int = 2, *, join: bool = True, host: docker.DockerClient | None = None,
              timeout: float = 60.0, lock_timeout: float = 600.0) -> Iterator[SwarmLab]:
    """A manager engine and `workers` worker engines in namespaces of their own (see the module).

    With `join=False` the worker engines run but stay out of the swarm (`lab.join(worker)` joins one).
    """
    if os.geteuid() != 0:
        raise LabError("a swarm lab needs root (network namespaces, dockerd)")
    host = host or docker.from_env(timeout=120)
    with _host_lock(lock_timeout):
        lab = SwarmLab(name=f"{PREFIX}-{secrets.token_hex(3)[:5]}", host=host)
        try:
            lab._setup(workers, join, timeout)
            yield lab
        except BaseException as err:
            problems = lab._teardown()
            for problem in problems:
                err.add_note(f"swarm lab teardown: {problem}")
            raise
        problems = lab._teardown()
        if problems:
            raise LabError("the swarm lab's teardown failed:\n" + "\n".join(problems))
