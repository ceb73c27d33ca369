"""Zero failed requests across deploy, rollback and restart, for every kind of client: new connections,
persistent keep-alive connections (what browsers and HTTP libraries use), and long requests in flight."""

from __future__ import annotations

import uuid

import pytest

from bench.load import LongRequests, RequestLoop
from deploy_bridge.gateway import Edge

from .test_cloud_docker import edit_message, request, wait_until

pytestmark = pytest.mark.docker

SWITCHES = ("deploy", "rollback", "restart")


def switch(cloud_env, verb: str) -> str:
    """Do one switch; returns the release serving before it."""
    cloud = cloud_env.cloud
    before = cloud.status("test", stats=False).release
    if verb == "deploy":
        edit_message(cloud_env.workspace, f"release {uuid.uuid4().hex[:6]}")
        cloud.deploy("test")
    elif verb == "rollback":
        if not [r for r in cloud.releases("test") if r.id < (before or "")]:
            edit_message(cloud_env.workspace, f"release {uuid.uuid4().hex[:6]}")
            cloud.deploy("test")
        cloud.rollback("test")
    else:
        cloud.restart("test")
    return before


@pytest.mark.parametrize("verb", SWITCHES)
def test_keep_alive_and_new_connection_clients_see_no_failure(cloud_env, verb):
    ca = cloud_env.cloud.ca_path()
    url = cloud_env.url + "/products"
    keep_alive = RequestLoop(url, ca, clients=20, keep_alive=True, interval=0.01)
    fresh = RequestLoop(url, ca, clients=2, keep_alive=False)
    with keep_alive, fresh:
        keep_alive.wait_for(100)
        fresh.wait_for(5)
        switch(cloud_env, verb)
        keep_alive.wait_for(len(keep_alive.statuses) + 100)  # and after the switch, on the same connections
    assert keep_alive.failures == [], f"keep-alive: {len(keep_alive.failures)} of {len(keep_alive.statuses)} failed"
    assert fresh.failures == [], f"new connections: {len(fresh.failures)} of {len(fresh.statuses)} failed"


@pytest.mark.parametrize("verb", SWITCHES)
def test_requests_in_flight_at_the_switch_run_to_completion(cloud_env, verb, docker_engine):
    """Requests longer than the whole switch (8 s) are answered by the release that took them."""
    ca = cloud_env.cloud.ca_path()
    with LongRequests(cloud_env.url + "/slow?ms=8000", ca, count=5) as slow:
        assert slow.started.wait(10)
        # the requests reach the app before the switch: count them at the gateway
        edge = Edge(docker_engine, cloud_env.cloud.settings)
        upstream = edge.upstream_of(cloud_env.cloud.settings.app_host("shop", "test"))
        wait_until(lambda: edge.inflight(upstream, 3000) >= 5, 10, "5 requests in flight")
        switch(cloud_env, verb)
    assert slow.results == [200] * 5, slow.results
    assert request(cloud_env.url + "/", ca)[0] == 200
