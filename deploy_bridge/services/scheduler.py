"""The functions scheduler of one env: a pool of pre-warmed runtimes, specialised on demand.

    python3 -m deploy_bridge.services.scheduler --config /functions/config.json

It serves `POST /fn/NAME` (the gateway routes `https://APP.ENV.localhost:PORT/fn/` here) and runs each
invocation on an *instance*: a container of the runtime image running minicloud's agent
(services/agents/), with the env's variables and the function's memory limit. An instance is in one
of these states:

    pool         generic, holds no code; `pool` of them are kept per runtime
    specialised  holds one function's code version; up to `concurrency` invocations at once
    reserved     specialised at deploy, `reserved` per function, never reaped, taken first
    recycling    being restarted as a fresh process (back to the pool) or removed

A request takes an idle specialised instance of its function; else a pool instance, specialised
now (the pool refills in the background); else, below `max_instances`, a new container is started
and the request waits in the function's FIFO queue (whichever instance frees first takes its head).
An instance idle for `keep_alive` goes back to the pool as a fresh process, or is removed when the
pool is full. An invocation past `timeout` is answered 504 and its instance replaced; a crash or an
out-of-memory kill fails that invocation alone. Instances carry labels (role=function, runtime,
function for reserved ones); after a restart the scheduler rebuilds its state from the labels and
from each agent's /health. New code versions (config.json, written by `minicloud fn deploy`) take
new requests at once; invocations in flight finish on the old version.

It holds the engine's socket: whoever controls this container controls the engine. It joins only
its env's network and publishes no port.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engine_api import Engine, EngineError

AGENT_PORT = 9000
AGENT_IDLE = 20.0  # seconds a kept connection to an agent is used (the agents keep them 65 s)
QUEUE_LIMIT = 1000  # waiting requests per function past which callers get 429
POOL_CHECK_SECONDS = 2.0  # how often the housekeeping tops up a pool that a failed start left short
AGENT_COMMAND = {"nodejs": ["node", "/opt/minicloud-agent/node_agent.js"],
                 "python": ["python3", "/opt/minicloud-agent/python_agent.py"]}


def log(line: str) -> None:
    print(f"scheduler: {line}", flush=True)


@dataclass
class Instance:
    id: str
    name: str
    runtime: str
    memory: int = 0  # MB: the container's limit now
    address: str = ""
    fn: str | None = None
    version: str | None = None
    reserved: bool = False
    busy: int = 0
    invoked: bool = False
    fresh: bool = False  # specialised for a request that has not run yet: that request is a cold start
    last_used: float = field(default_factory=time.monotonic)
    state: str = "starting"  # starting | pool | specialised | recycling
    connections: list = field(default_factory=list, repr=False)  # idle kept-alive (reader, writer, since)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "runtime": self.runtime, "state": self.state, "fn": self.fn,
                "version": self.version, "reserved": self.reserved, "busy": self.busy}


@dataclass
class Stats:
    invocations: int = 0
    errors: int = 0
    durations: collections.deque = field(default_factory=lambda: collections.deque(maxlen=2000))

    def p95(self) -> float | None:
        recent = [d for t, d in self.durations if time.time() - t < 300]
        if not recent:
            return None
        recent.sort()
        return round(recent[min(len(recent) - 1, int(0.95 * (len(recent) - 1) + 0.5))], 1)


class Reply(Exception):
    """An invocation's answer other than a result: an HTTP status and a stable JSON error."""

    def __init__(self, status: int, kind: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": kind, "message": message, **extra}}


class Scheduler:
    def __init__(self, config_path: Path, engine: Engine) -> None:
        self.config_path = config_path
        self.engine = engine
        self.config: dict[str, Any] = {}
        self.config_stamp: tuple | None = None
        self.instances: dict[str, Instance] = {}
        self.queues: dict[str, collections.deque[asyncio.Future]] = collections.defaultdict(collections.deque)
        self.starting: collections.Counter = collections.Counter()  # function or "pool:RUNTIME" -> starting
        self.stats: dict[str, Stats] = collections.defaultdict(Stats)
        self.generation = 0
        self.pool_checked = 0.0  # when the housekeeping last looked for a pool short of instances

    # ------------------------------------------------------------------ engine calls (threads)
    async def _engine(self, method, *args):
        return await asyncio.to_thread(method, *args)

    def labels(self, runtime: str, **extra: str) -> dict[str, str]:
        c = self.config
        labels = {"minicloud.instance": c["instance"], "minicloud.app": c["app"], "minicloud.env": c["env"],
                  "minicloud.role": "function", "minicloud.fn.runtime": runtime}
        labels.update(extra)
        return labels

    def label_filter(self) -> list[str]:
        c = self.config
        return [f"minicloud.instance={c['instance']}", f"minicloud.app={c['app']}", f"minicloud.env={c['env']}",
                "minicloud.role=function"]

    # ------------------------------------------------------------------ configuration
    def load_config(self) -> bool:
        """Read config.json when it changed; True when it did."""
        try:
            st = self.config_path.stat()
        except OSError:
            return False
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self.config_stamp:
            return False
        self.config = json.loads(self.config_path.read_text())
        self.config_stamp = stamp
        self.generation += 1
        return True

    def function(self, name: str) -> dict[str, Any] | None:
        return self.config.get("functions", {}).get(name)

    def runtimes(self) -> set[str]:
        return {f["runtime"] for f in self.config.get("functions", {}).values()}

    # ------------------------------------------------------------------ instances
    async def start_instance(self, runtime: str, memory_mb: int, reserved_for: str | None = None) -> Instance:
        c = self.config
        name = f"{c['prefix']}-{c['app']}-{c['env']}-fn-{runtime}-{uuid.uuid4().hex[:8]}"
        labels = self.labels(runtime, **({"minicloud.fn": reserved_for, "minicloud.fn.reserved": "true"}
                                         if reserved_for else {}))
        binds = [f"{c['functions_dir']}:/functions:ro", f"{c['agents_dir']}:/opt/minicloud-agent:ro",
                 *([f"{c['sdk_dir']}:/opt/minicloud-sdk:ro"] if c.get("sdk_dir") else []),  # context.cloud
                 *c.get("binds", [])]
        config = {
            "Image": c["images"][runtime], "Cmd": AGENT_COMMAND[runtime], "Labels": labels,
            "Env": [f"{k}={v}" for k, v in c.get("environment", {}).items()] + [f"MINICLOUD_AGENT_PORT={AGENT_PORT}"],
            "WorkingDir": "/functions",
            "HostConfig": {"Memory": memory_mb * 2**20, "MemorySwap": memory_mb * 2**20, "Binds": binds,
                           "NetworkMode": c["network"], "Init": True,
                           "LogConfig": {"Type": "json-file", "Config": {"max-size": "20m", "max-file": "5"}}},
        }
        instance_id = await self._engine(self.engine.create, name, config)
        instance = Instance(instance_id, name, runtime, memory=memory_mb)
        self.instances[instance_id] = instance
        await self._engine(self.engine.start, instance_id)
        await self.wait_ready(instance)
        return instance

    async def wait_ready(self, instance: Instance, timeout: float = 30) -> None:
        info = await self._engine(self.engine.inspect, instance.id)
        networks = (info or {}).get("NetworkSettings", {}).get("Networks", {})
        instance.address = next((n.get("IPAddress") for n in networks.values() if n.get("IPAddress")), instance.name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError, asyncio.TimeoutError):
                status, _ = await self.http(instance, "GET", "/health", None, 2)
                if status == 200:
                    instance.state = "pool"
                    instance.last_used = time.monotonic()
                    return
            await asyncio.sleep(0.02)
        raise RuntimeError(f"instance {instance.name} did not answer within {timeout}s")

    async def http(self, instance: Instance, method: str, path: str, body: Any, timeout: float) -> tuple[int, Any]:
        """One request to an instance's agent, on a kept-alive connection of that instance.

        A connection that failed is closed, never reused; a kept one older than AGENT_IDLE seconds is
        not used (the agent may be closing it), so a failure is the instance's, not a stale socket's.
        """
        async def exchange() -> tuple[int, Any]:
            reader, writer = await self._connection(instance)
            try:
                data = json.dumps(body).encode() if body is not None else b""
                writer.write(f"{method} {path} HTTP/1.1\r\nHost: agent\r\n"
                             f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split(" ", 2)[1])
                length = next((int(v) for k, _, v in (ln.partition(":") for ln in lines[1:])
                               if k.strip().lower() == "content-length"), 0)
                payload = await reader.readexactly(length)
            except BaseException:
                writer.close()
                raise
            instance.connections.append((reader, writer, time.monotonic()))
            return status, json.loads(payload) if payload else None

        try:
            return await asyncio.wait_for(exchange(), timeout)
        except asyncio.IncompleteReadError:
            raise ConnectionError("the instance closed the connection without an answer") from None

    async def _connection(self, instance: Instance):
        while instance.connections:
            reader, writer, since = instance.connections.pop()
            if time.monotonic() - since < AGENT_IDLE and not reader.at_eof():
                return reader, writer
            writer.close()
        return await asyncio.open_connection(instance.address, AGENT_PORT)

    async def specialise(self, instance: Instance, name: str) -> None:
        fn = self.function(name)
        assert fn is not None
        if instance.memory != fn["memory"]:  # the function's own limit, enforced from now on
            await self._engine(self.engine.set_memory, instance.id, fn["memory"])
            instance.memory = fn["memory"]
        status, body = await self.http(instance, "POST", "/specialize",
                                       {"name": name, "version": fn["version"], "dir": f"/functions/code/{name}/{fn['version']}"},
                                       30)
        if status != 200:
            await self.recycle(instance, to_pool=True)
            raise Reply(500, "LoadError", (body or {}).get("error", f"cannot load {name}"))
        instance.fn, instance.version, instance.state = name, fn["version"], "specialised"
        instance.invoked, instance.fresh = False, True

    def retire(self, instance: Instance) -> None:
        """Start sending an idle instance back to the pool. Its state changes now, not when the task runs:
        in between, `acquire` must not hand it a request, and it still counts toward `max_instances`."""
        instance.state = "recycling"
        self.background(self.recycle(instance, to_pool=True))

    async def recycle(self, instance: Instance, to_pool: bool) -> None:
        """Back to the pool as a fresh process (nothing of the old function survives), or removed."""
        instance.state = "recycling"
        name = instance.fn
        pool_now = sum(1 for i in self.instances.values() if i.state == "pool" and i.runtime == instance.runtime)
        if to_pool and instance.runtime in self.runtimes() and pool_now < self.config.get("pool", 0):
            try:
                memory = self.pool_memory(instance.runtime)
                if instance.memory != memory:
                    await self._engine(self.engine.set_memory, instance.id, memory)
                    instance.memory = memory
                self.close_connections(instance)
                await self._engine(self.engine.restart, instance.id)
                instance.fn = instance.version = None
                instance.reserved = False
                await self.wait_ready(instance)
                self.offer(instance)
                return
            except (EngineError, RuntimeError, OSError) as err:
                log(f"{instance.name} could not go back to the pool ({err}); removing it")
        self.instances.pop(instance.id, None)
        self.close_connections(instance)
        with contextlib.suppress(EngineError, OSError):
            await self._engine(self.engine.remove, instance.id)
        self.serve_queue(name)

    def serve_queue(self, name: str | None) -> None:
        """Requests that waited while `name` was at `max_instances` get a new instance once there is room."""
        fn = self.function(name) if name else None
        if fn and self.queues[name] and self.count_of(name) < fn["max_instances"]:
            self.background(self.add_instance(name))

    @staticmethod
    def close_connections(instance: Instance) -> None:
        while instance.connections:
            instance.connections.pop()[1].close()

    # ------------------------------------------------------------------ acquiring
    def idle_of(self, name: str) -> Instance | None:
        fn = self.function(name)
        candidates = [i for i in self.instances.values() if i.state == "specialised" and i.fn == name
                      and i.version == fn["version"] and i.busy < fn["concurrency"]]
        # reserved first, then the least busy
        candidates.sort(key=lambda i: (not i.reserved, i.busy))
        return candidates[0] if candidates else None

    def pool_of(self, runtime: str) -> Instance | None:
        return next((i for i in self.instances.values() if i.state == "pool" and i.runtime == runtime), None)

    def count_of(self, name: str) -> int:
        """On-demand containers of `name`: those being specialised or started for it, and those on their way
        back to the pool (a recycling one may still run a timed-out call), included."""
        return sum(1 for i in self.instances.values() if i.fn == name and not i.reserved
                   and i.state in ("specialised", "starting", "recycling")) + self.starting[name]

    async def acquire(self, name: str) -> tuple[Instance, bool]:
        """An instance running `name` with room for one more invocation; (instance, cold)."""
        fn = self.function(name)
        if (instance := self.idle_of(name)) is not None:
            instance.busy += 1
            return instance, self.first_use(instance)
        if self.count_of(name) < fn["max_instances"] and (pool := self.pool_of(fn["runtime"])) is not None:
            pool.state, pool.fn = "starting", name  # counted as the function's from now: max_instances holds
            pool.busy += 1
            try:
                await self.specialise(pool, name)
            except BaseException:
                pool.busy -= 1
                raise
            self.background(self.refill_pool())
            return pool, self.first_use(pool)
        if len(self.queues[name]) >= QUEUE_LIMIT:
            raise Reply(429, "QueueFull", f"{name}: {QUEUE_LIMIT} requests are already waiting")
        waiter: asyncio.Future = asyncio.get_running_loop().create_future()
        self.queues[name].append(waiter)
        if self.count_of(name) < fn["max_instances"]:
            self.background(self.add_instance(name))
        return await waiter

    @staticmethod
    def first_use(instance: Instance) -> bool:
        """Whether this request waited for the instance's specialisation (a cold start)."""
        cold, instance.fresh = instance.fresh, False
        return cold

    def release(self, instance: Instance) -> None:
        instance.busy -= 1
        instance.last_used = time.monotonic()
        self.offer(instance)

    def offer(self, instance: Instance) -> None:
        """A freed (or new) instance takes the head of its function's queue, if any waits."""
        if instance.state == "pool":
            for name, queue in self.queues.items():
                fn = self.function(name)
                if queue and fn and fn["runtime"] == instance.runtime and self.count_of(name) < fn["max_instances"]:
                    instance.state, instance.fn = "starting", name
                    self.background(self.hand_over(instance, name))
                    return
            return
        if instance.state != "specialised" or instance.fn is None:
            return
        fn = self.function(instance.fn)
        if fn is None or instance.version != fn["version"]:
            if instance.busy == 0:  # an old version: its last invocation is done
                self.retire(instance)
            return
        queue = self.queues[instance.fn]
        while queue and instance.busy < fn["concurrency"]:
            waiter = queue.popleft()
            if not waiter.done():
                instance.busy += 1
                waiter.set_result((instance, self.first_use(instance)))

    async def hand_over(self, instance: Instance, name: str) -> None:
        try:
            await self.specialise(instance, name)
        except Reply as err:
            self.fail_queue(name, err)
            return
        self.offer(instance)

    def fail_queue(self, name: str, err: Reply) -> None:
        queue = self.queues[name]
        while queue:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_exception(err)

    async def add_instance(self, name: str) -> None:
        fn = self.function(name)
        self.starting[name] += 1
        try:
            instance = await self.start_instance(fn["runtime"], fn["memory"])
            instance.state = "starting"
            await self.specialise(instance, name)
        except Reply as err:
            self.fail_queue(name, err)
            return
        except (EngineError, RuntimeError, OSError) as err:
            log(f"could not start an instance of {name}: {err}")
            self.fail_queue(name, Reply(503, "NoInstance", f"could not start an instance of {name}: {err}"))
            return
        finally:
            self.starting[name] -= 1
        self.offer(instance)

    def pool_count(self, runtime: str) -> int:
        """The runtime's instances in the pool, and those starting for it."""
        return sum(1 for i in self.instances.values() if i.runtime == runtime and i.state == "pool") \
            + self.starting[f"pool:{runtime}"]

    def pool_short(self) -> bool:
        return any(self.pool_count(runtime) < self.config.get("pool", 0) for runtime in self.runtimes())

    async def refill_pool(self) -> None:
        """Start pool instances until each runtime has `pool` of them. Counted afresh before each one, so two
        refills at once do not start too many; one that fails stops here, and the housekeeping tries again."""
        for runtime in sorted(self.runtimes()):
            while self.pool_count(runtime) < self.config.get("pool", 0):
                self.starting[f"pool:{runtime}"] += 1
                try:
                    instance = await self.start_instance(runtime, self.pool_memory(runtime))
                    self.offer(instance)
                except (EngineError, RuntimeError, OSError) as err:
                    log(f"could not start a pool instance of {runtime}: {err}")
                    break
                finally:
                    self.starting[f"pool:{runtime}"] -= 1

    def pool_memory(self, runtime: str) -> int:
        """A pool instance's limit: the largest of its runtime's functions (lowered when specialised)."""
        return max((f["memory"] for f in self.config.get("functions", {}).values() if f["runtime"] == runtime),
                   default=256)

    async def ensure_reserved(self) -> None:
        for name, fn in self.config.get("functions", {}).items():
            have = [i for i in self.instances.values() if i.fn == name and i.reserved and i.version == fn["version"]]
            for _ in range(fn["reserved"] - len(have)):
                try:
                    instance = await self.start_instance(fn["runtime"], fn["memory"], reserved_for=name)
                    instance.reserved = True
                    instance.state = "starting"
                    await self.specialise(instance, name)
                    instance.fresh = False  # prepared ahead: its first request is warm
                    self.offer(instance)
                except (Reply, EngineError, RuntimeError, OSError) as err:
                    log(f"could not prepare a reserved instance of {name}: {err}")

    # ------------------------------------------------------------------ invoking
    async def invoke(self, name: str, event: Any) -> tuple[int, Any, dict[str, str]]:
        fn = self.function(name)
        if fn is None:
            known = ", ".join(sorted(self.config.get("functions", {}))) or "none"
            raise Reply(404, "NotFound", f"no function {name!r} (known: {known})")
        started = time.perf_counter()
        instance, cold = await self.acquire(name)
        request_id = uuid.uuid4().hex[:16]
        context = {"requestId": request_id, "functionName": name, "env": self.config["env"],
                   "deadline": int(time.time() * 1000 + fn["timeout"] * 1000), "cold": cold}
        stats = self.stats[name]
        stats.invocations += 1
        headers = {"x-minicloud-instance": instance.name, "x-minicloud-cold": "true" if cold else "false",
                   "x-minicloud-request-id": request_id}
        try:
            status, body = await self.http(instance, "POST", "/invoke", {"event": event, "context": context},
                                           fn["timeout"])
            instance.invoked = True
        except TimeoutError:
            stats.errors += 1
            instance.state = "recycling"  # never reused: it may still run the timed-out call
            self.background(self.replace(instance))
            raise Reply(504, "Timeout", f"{name} did not answer within its timeout of {fn['timeout']}s",
                        requestId=request_id) from None
        except (OSError, ConnectionError, ValueError):
            stats.errors += 1
            instance.state = "recycling"
            why = await self.why_it_died(instance, fn)
            self.background(self.replace(instance))
            raise Reply(500, why[0], why[1], requestId=request_id) from None
        finally:
            if instance.state != "recycling":
                self.release(instance)
        duration = (time.perf_counter() - started) * 1000
        stats.durations.append((time.time(), duration))
        headers["x-minicloud-duration-ms"] = f"{duration:.1f}"
        if status != 200 or not isinstance(body, dict):
            stats.errors += 1
            raise Reply(500, "AgentError", f"the instance answered {status}: {body!r}", requestId=request_id)
        if not body.get("ok"):
            stats.errors += 1
            error = body.get("error") or {}
            return 500, {"error": {**error, "requestId": request_id}}, headers
        return 200, body.get("result"), headers

    async def why_it_died(self, instance: Instance, fn: dict) -> tuple[str, str]:
        for _ in range(50):  # the engine records the exit a moment after the connection drops
            info = await self._engine(self.engine.inspect, instance.id)
            state = (info or {}).get("State", {})
            if not state.get("Running", False) or state.get("OOMKilled"):
                if state.get("OOMKilled") or state.get("ExitCode") == 137:
                    return "OutOfMemory", f"the instance was killed at its memory limit ({fn['memory']} MB)"
                return "Crashed", f"the instance crashed (exit code {state.get('ExitCode')})"
            await asyncio.sleep(0.02)
        return "Crashed", "the instance closed the connection without an answer"

    async def replace(self, instance: Instance) -> None:
        """Remove an instance that timed out or died; the pool and queues are served by others."""
        await self.recycle(instance, to_pool=False)
        self.background(self.refill_pool())
        fn = self.function(instance.fn) if instance.fn else None
        if fn and instance.reserved:
            self.background(self.ensure_reserved())

    # ------------------------------------------------------------------ the background
    def background(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        task.add_done_callback(lambda t: t.cancelled() or not t.exception() or log(f"background: {t.exception()!r}"))

    async def rebuild(self) -> None:
        """After a (re)start: every instance of this env, from the labels and its agent's /health."""
        for c in await self._engine(self.engine.containers, self.label_filter()):
            labels = c.get("Labels") or {}
            instance = Instance(c["Id"], c["Names"][0].lstrip("/"), labels.get("minicloud.fn.runtime", "nodejs"))
            if c.get("State") != "running":
                # an instance the last scheduler left mid-recycle (stopped by a restart it did not see end) is
                # started again and kept, not lost; one that will not start is removed
                try:
                    if c.get("State") != "restarting":
                        await self._engine(self.engine.start, c["Id"])
                except (EngineError, OSError):
                    with contextlib.suppress(EngineError, OSError):
                        await self._engine(self.engine.remove, c["Id"])
                    continue
            self.instances[instance.id] = instance
            try:
                await self.wait_ready(instance, timeout=5)
                _, health = await self.http(instance, "GET", "/health", None, 2)
            except (TimeoutError, RuntimeError, OSError, ValueError):
                await self.recycle(instance, to_pool=False)
                continue
            fn = self.function(health.get("fn") or "")
            if health.get("fn") and fn and health.get("version") == fn["version"]:
                instance.fn, instance.version, instance.state = health["fn"], health["version"], "specialised"
                instance.reserved = labels.get("minicloud.fn.reserved") == "true" and labels.get("minicloud.fn") == instance.fn
            elif health.get("fn"):
                await self.recycle(instance, to_pool=True)
        log(f"rebuilt from labels: {len(self.instances)} instances")

    async def on_new_config(self) -> None:
        """New versions take new requests now; idle instances of old versions go back to the pool."""
        for instance in list(self.instances.values()):
            fn = self.function(instance.fn) if instance.fn else None
            if instance.state == "specialised" and (fn is None or fn["version"] != instance.version) and not instance.busy:
                self.retire(instance)
        await self.refill_pool()
        await self.ensure_reserved()

    async def housekeeping(self) -> None:
        while True:
            await asyncio.sleep(0.05)  # a stat of config.json: a code deploy is live within 50 ms
            try:
                if self.load_config():
                    log(f"configuration {self.generation}: {', '.join(self.config.get('functions', {})) or 'no functions'}")
                    await self.on_new_config()
                now = time.monotonic()
                for instance in list(self.instances.values()):
                    fn = self.function(instance.fn) if instance.fn else None
                    if instance.state == "specialised" and not instance.reserved and not instance.busy and fn \
                            and now - instance.last_used > fn["keep_alive"]:
                        log(f"{instance.name} idle for {fn['keep_alive']}s: back to the pool")
                        self.retire(instance)
                if now - self.pool_checked > POOL_CHECK_SECONDS:  # a pool start that failed is tried again
                    self.pool_checked = now
                    if self.pool_short():
                        self.background(self.refill_pool())
            except Exception as err:  # noqa: BLE001 - the scheduler outlives any one bad step
                log(f"housekeeping: {type(err).__name__}: {err}")

    def status(self) -> dict[str, Any]:
        out = {"generation": self.generation, "functions": {}, "pool": {}}
        for name, fn in self.config.get("functions", {}).items():
            mine = [i for i in self.instances.values() if i.fn == name]
            stats = self.stats[name]
            out["functions"][name] = {
                "version": fn["version"], "runtime": fn["runtime"],
                "reserved": sum(1 for i in mine if i.reserved), "on_demand": sum(1 for i in mine if not i.reserved),
                "busy": sum(1 for i in mine if i.busy), "idle": sum(1 for i in mine if not i.busy),
                "queue": len(self.queues[name]), "invocations": stats.invocations, "errors": stats.errors,
                "p95_ms": stats.p95(), "instances": [i.describe() for i in mine]}
        for runtime in sorted(self.runtimes()):
            out["pool"][runtime] = sum(1 for i in self.instances.values() if i.runtime == runtime and i.state == "pool")
        out["instances"] = [i.describe() for i in self.instances.values()]
        return out


# ---------------------------------------------------------------------- HTTP
async def serve(scheduler: Scheduler, port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                status, answer, extra = await route(scheduler, method, path, body)
                data = json.dumps(answer, default=str).encode()
                keep = headers.get("connection", "").lower() != "close"
                writer.write((f"HTTP/1.1 {status} {'OK' if status < 400 else 'Error'}\r\n"
                              f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                              + "".join(f"{k}: {v}\r\n" for k, v in extra.items())
                              + f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n").encode() + data)
                await writer.drain()
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "0.0.0.0", port)
    async with server:
        await server.serve_forever()


async def route(scheduler: Scheduler, method: str, path: str, body: bytes) -> tuple[int, Any, dict[str, str]]:
    if path == "/_fn/health":
        return 200, {"ok": True, "generation": scheduler.generation}, {}
    if path == "/_fn/status":
        return 200, scheduler.status(), {}
    if path.startswith("/fn/"):
        name = path[len("/fn/"):].split("?", 1)[0].strip("/")
        if method != "POST":
            return 405, {"error": {"type": "MethodNotAllowed", "message": "invoke with POST and a JSON event"}}, {}
        try:
            event = json.loads(body) if body.strip() else {}
        except ValueError as err:
            return 400, {"error": {"type": "BadEvent", "message": f"the event is not JSON: {err}"}}, {}
        try:
            return await scheduler.invoke(name, event)
        except Reply as reply:
            return reply.status, reply.body, {}
    return 404, {"error": {"type": "NotFound", "message": f"no such path {path}"}}, {}


async def main_async(args: argparse.Namespace) -> None:
    scheduler = Scheduler(Path(args.config), Engine(args.socket))
    while not scheduler.load_config():
        log(f"waiting for {args.config}")
        await asyncio.sleep(0.5)
    await scheduler.rebuild()
    await scheduler.on_new_config()
    asyncio.ensure_future(scheduler.housekeeping())
    log(f"serving on :{args.port} (generation {scheduler.generation})")
    await serve(scheduler, args.port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scheduler")
    parser.add_argument("--config", default="/functions/config.json")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--socket", default=os.environ.get("MINICLOUD_ENGINE_SOCKET", "/var/run/docker.sock"))
    asyncio.run(main_async(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
