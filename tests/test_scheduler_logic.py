"""The scheduler's bookkeeping without an engine: `max_instances` holds while an instance goes back to the pool.

The real engine proves the scheduler in test_functions.py; this pins one race that a module-long run there
met now and then: an instance whose keep_alive ran out, picked by a request in the moment between the
decision to recycle it and the recycling itself.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from deploy_bridge.services.scheduler import Instance, Scheduler


class NoEngine:
    """Every engine call is a no-op here: the scheduler's `_engine` below never runs them."""

    def __getattr__(self, name: str):
        return lambda *args: None


class SlowRestartScheduler(Scheduler):
    """Agents that answer at once; a restart that takes a while, as a real one does."""

    def __init__(self, config_path: Path) -> None:
        super().__init__(config_path, engine=NoEngine())  # type: ignore[arg-type]
        self.restarts = 0
        self.created = 0

    async def _engine(self, method, *args):
        await asyncio.sleep(0.05)  # an engine call takes a while, a restart most of all

    async def specialise(self, instance: Instance, name: str) -> None:
        holding = [i.name for i in self.instances.values() if i.fn == name and i is not instance]
        assert len(holding) < self.function(name)["max_instances"], f"{instance.name} joins {holding}"
        await super().specialise(instance, name)

    async def start_instance(self, runtime: str, memory_mb: int, reserved_for: str | None = None) -> Instance:
        self.created += 1
        instance = Instance(f"id{self.created}", f"inst{self.created}", runtime, memory=memory_mb, state="pool")
        self.instances[instance.id] = instance
        return instance

    async def wait_ready(self, instance: Instance, timeout: float = 30) -> None:
        self.restarts += 1
        instance.state = "pool"

    async def http(self, instance: Instance, method: str, path: str, body: Any, timeout: float) -> tuple[int, Any]:
        return 200, {"ok": True, "result": {}}


def scheduler_with(tmp_path: Path, make=None, **fn: Any) -> SlowRestartScheduler:
    config = {"env": "test", "pool": 1, "functions": {"single": {
        "runtime": "nodejs", "memory": 128, "version": "v1", "concurrency": 1, "reserved": 0,
        "max_instances": 1, "keep_alive": 1, "timeout": 3, **fn}}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    scheduler = (make or SlowRestartScheduler)(tmp_path / "config.json")
    assert scheduler.load_config()
    return scheduler


def test_an_instance_on_its_way_back_to_the_pool_takes_no_request_and_still_counts(tmp_path):
    async def scenario() -> None:
        scheduler = scheduler_with(tmp_path)
        scheduler.config["pool"] = 2  # room in the pool: the old instance restarts into it (50 ms here)
        old = Instance("old", "old", "nodejs", memory=128, fn="single", version="v1", state="specialised")
        spare = Instance("spare", "spare", "nodejs", memory=128, state="pool")
        scheduler.instances.update({old.id: old, spare.id: spare})

        scheduler.retire(old)  # keep_alive ran out; the restart has not begun yet
        assert scheduler.idle_of("single") is None, "a recycling instance is handed no request"
        assert scheduler.count_of("single") == 1, "it still holds the function's only slot"

        reply = asyncio.ensure_future(scheduler.invoke("single", {}))
        assert not reply.done()
        for _ in range(100):  # a few turns of the event loop, not a time: until the request has taken its place
            if scheduler.queues["single"] or spare.state != "pool":
                break
            await asyncio.sleep(0)
        assert scheduler.queues["single"], "the request waits for the function's one slot"
        assert old.state == "recycling" and spare.state == "pool", \
            "max_instances = 1: no pool instance is taken while the old one still runs `single`"
        status, _, headers = await asyncio.wait_for(reply, 5)
        assert status == 200
        # the request waited for the slot (specialise above checks it was free) and ran on one instance
        running = [i.name for i in scheduler.instances.values() if i.fn == "single"]
        assert running == [headers["x-minicloud-instance"]]

    asyncio.run(scenario())


def test_the_queue_is_served_when_the_recycled_instance_is_removed_instead(tmp_path):
    async def scenario() -> None:
        scheduler = scheduler_with(tmp_path)
        scheduler.config["pool"] = 0  # no room in the pool: the recycled instance is removed
        old = Instance("old", "old", "nodejs", memory=128, fn="single", version="v1", state="specialised")
        scheduler.instances[old.id] = old
        scheduler.retire(old)
        status, _, _ = await asyncio.wait_for(scheduler.invoke("single", {}), 5)
        assert status == 200 and "old" not in scheduler.instances

    asyncio.run(scenario())


class FlakyStartScheduler(SlowRestartScheduler):
    """An engine whose next `failures` container starts fail, as a loaded one's may (a start that times out)."""

    def __init__(self, config_path: Path, failures: int = 1) -> None:
        super().__init__(config_path)
        self.failures = failures

    async def start_instance(self, runtime: str, memory_mb: int, reserved_for: str | None = None) -> Instance:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the agent did not answer within 30 s")
        return await super().start_instance(runtime, memory_mb, reserved_for)


def test_a_pool_left_short_by_a_failed_start_is_topped_up_by_the_housekeeping(tmp_path, monkeypatch):
    from deploy_bridge.services import scheduler as module

    monkeypatch.setattr(module, "POOL_CHECK_SECONDS", 0.0)  # look at every turn of the housekeeping

    async def scenario() -> None:
        scheduler = scheduler_with(tmp_path, make=FlakyStartScheduler)  # its first start fails
        scheduler.config["pool"] = 2
        await scheduler.refill_pool()  # the first start fails: the refill stops, one short
        assert scheduler.pool_count("nodejs") == 0 and scheduler.pool_short()
        housekeeping = asyncio.ensure_future(scheduler.housekeeping())
        try:
            for _ in range(200):  # turns of its loop (50 ms each): until the pool is whole
                if scheduler.pool_count("nodejs") == 2:
                    break
                await asyncio.sleep(0.05)
            assert scheduler.pool_count("nodejs") == 2 and not scheduler.pool_short()
            assert scheduler.created == 2, "exactly the pool's size: the checks did not start too many"
        finally:
            housekeeping.cancel()

    asyncio.run(scenario())


class LeftoverEngine:
    """What a scheduler killed mid-work leaves: a running pool instance, one stopped by a recycle whose restart
    it did not see end, and one that will not start again."""

    def __init__(self) -> None:
        self.listing = [
            {"Id": "running", "Names": ["/fn-running"], "State": "running", "Labels": {}},
            {"Id": "stopped", "Names": ["/fn-stopped"], "State": "exited", "Labels": {}},
            {"Id": "broken", "Names": ["/fn-broken"], "State": "exited", "Labels": {}},
        ]
        self.started: list[str] = []
        self.removed: list[str] = []

    def containers(self, labels: list[str], all: bool = True) -> list[dict]:
        return self.listing

    def start(self, container: str) -> None:
        from deploy_bridge.services.engine_api import EngineError

        if container == "broken":
            raise EngineError(500, {"message": "cannot start"})
        self.started.append(container)

    def remove(self, container: str) -> None:
        self.removed.append(container)


class LeftoverScheduler(SlowRestartScheduler):
    def __init__(self, config_path: Path) -> None:
        super().__init__(config_path)
        self.engine = LeftoverEngine()  # type: ignore[assignment]

    async def _engine(self, method, *args):
        return method(*args)

    async def http(self, instance: Instance, method: str, path: str, body: Any, timeout: float) -> tuple[int, Any]:
        return 200, {"ok": True}  # a pool instance's /health: no function yet


def test_a_restarted_scheduler_keeps_an_instance_left_stopped_mid_recycle(tmp_path):
    async def scenario() -> LeftoverScheduler:
        scheduler = scheduler_with(tmp_path, LeftoverScheduler)
        scheduler.config.update(instance="t", app="a")
        await scheduler.rebuild()
        return scheduler

    scheduler = asyncio.run(scenario())
    engine = scheduler.engine
    assert engine.started == ["stopped"]  # type: ignore[attr-defined]
    assert engine.removed == ["broken"]  # type: ignore[attr-defined]
    assert sorted(scheduler.instances) == ["running", "stopped"]
