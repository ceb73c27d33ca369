"""Grey releases on the real engine: the split and its stickiness, promote, manual and automatic abort —
each with keep-alive clients and zero failed requests."""

from __future__ import annotations

import threading
import uuid

import httpx
import pytest

from bench.load import RequestLoop, trusting

from .conftest import copy_example, with_slow_route
from .test_cloud_docker import edit_message, minicloud, wait_until

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def grey(docker_engine, tmp_path_factory):
    from deploy_bridge.cloud import Cloud

    ws = with_slow_route(copy_example("node-shop", tmp_path_factory.mktemp("grey")))
    manifest = ws / "minicloud.toml"
    manifest.write_text(manifest.read_text().replace('name = "shop"', 'name = "grey"'))
    cloud = Cloud(ws)
    cloud.build_env("test")
    yield cloud
    cloud.destroy_env("test", with_data=True)


def release_of(client: httpx.Client, url: str) -> str:
    reply = client.get(url + "/")
    assert reply.status_code == 200, reply.text
    return reply.json()["release"]


def new_user(cloud) -> httpx.Client:
    return httpx.Client(verify=trusting(cloud.ca_path()), timeout=10)


def app_containers(cloud) -> list:
    return cloud.containers("test", role="app", running_only=True)


def changed_and_loaded(cloud) -> tuple[str, RequestLoop]:
    """The serving release, after the workspace changed; and 10 keep-alive clients on the env."""
    stable = cloud.status("test", stats=False).release
    edit_message(cloud.workspace, f"grey {uuid.uuid4().hex[:6]}")
    return stable, RequestLoop(cloud.url("test") + "/products", cloud.ca_path(), clients=10, keep_alive=True,
                               interval=0.01)


def test_a_canary_takes_its_share_sticky_and_is_promoted_with_no_failed_request(grey):
    url = grey.url("test")
    stable, loop = changed_and_loaded(grey)
    with loop:
        loop.wait_for(50)
        result = grey.deploy("test", canary=20)
        assert result.canary == {"percent": 20, "state": "running"} and result.previous == stable
        canary = result.release
        # distinct users (no cookie yet): about a fifth reach the canary
        seen = []
        for _ in range(600):
            with new_user(grey) as user:
                seen.append(release_of(user, url))
        share = 100 * seen.count(canary) / len(seen)
        assert set(seen) == {stable, canary} and 13 <= share <= 27, share
        # a user stays where the first answer put them
        with new_user(grey) as user:
            first = user.get(url + "/")
            assert "minicloud_canary=" in first.headers.get("set-cookie", "")
            assert {release_of(user, url) for _ in range(30)} == {first.json()["release"]}
        view = grey.canary_status("test")
        assert view["canary"]["release"] == canary and view["baseline"]["release"] == stable
        # what the editor's status bar shows (the engine reader's pulse)
        assert grey.canary_split("test") == {"percent": 20, "serving": stable, "canary": canary}
        grey.promote("test")
        count = len(loop.statuses)
        loop.wait_for(count + 100)
    assert loop.failures == [], f"{len(loop.failures)} of {len(loop.statuses)} failed"
    with new_user(grey) as user:
        assert {release_of(user, url) for _ in range(20)} == {canary}
    assert [c.labels["minicloud.release"] for c in app_containers(grey)] == [canary]
    assert grey.canary_split("test") is None


def test_rolling_back_a_canary_removes_it_with_no_failed_request(grey):
    url = grey.url("test")
    stable, loop = changed_and_loaded(grey)
    with loop:
        loop.wait_for(50)
        canary = grey.deploy("test", canary=50).release

        def some_user_reaches_the_canary() -> bool:
            with new_user(grey) as user:
                return release_of(user, url) == canary

        wait_until(some_user_reaches_the_canary, 30, "a user reaches the canary")
        out = minicloud("rollback", "test", workspace=grey.workspace)
        assert out.returncode == 0, out.stderr
        loop.wait_for(len(loop.statuses) + 100)
    assert loop.failures == []
    with new_user(grey) as user:
        assert {release_of(user, url) for _ in range(20)} == {stable}
    assert [c.labels["minicloud.release"] for c in app_containers(grey)] == [stable]


@pytest.mark.parametrize("healthy", [False, True])
def test_an_automatic_canary_is_judged_by_its_errors(grey, healthy):
    """A release that fails a route is aborted (and says why); a healthy one is promoted. The healthy one
    is asked for by the manifest (`[deploy] canary`), the other by the arguments (`--canary --judge`)."""
    stable = grey.status("test", stats=False).release
    server, manifest = grey.workspace / "server.js", grey.workspace / "minicloud.toml"
    good, manifest_text = server.read_text(), manifest.read_text()
    if healthy:
        manifest.write_text(manifest_text + '\n[deploy]\ncanary = { percent = 50, judge = "20s" }\n')
    if not healthy:
        server.write_text(good.replace("if (req.url === '/products') {",
                                       "if (req.url === '/products') { return send(res, 500, { error: 'broken' });", 1))
    edit_message(grey.workspace, f"judged {uuid.uuid4().hex[:6]}")
    statuses: list[int | str] = []
    stop = threading.Event()

    def users() -> None:  # a new user each request: the split sends about half to the canary
        while not stop.is_set():
            try:
                with new_user(grey) as user:
                    statuses.append(user.get(grey.url("test") + "/products").status_code)
            except httpx.HTTPError as err:
                statuses.append(type(err).__name__)

    threads = [threading.Thread(target=users, daemon=True) for _ in range(3)]
    try:
        for t in threads:
            t.start()
        wait_until(lambda: len(statuses) >= 20, 30, "traffic flows")
        result = grey.deploy("test") if healthy else grey.deploy("test", canary=50, judge_seconds=20)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        server.write_text(good)
        manifest.write_text(manifest_text)
    failures = [s for s in statuses if s != 200]
    assert result.canary["state"] == ("promoted" if healthy else "aborted"), result.canary
    if healthy:
        assert grey.status("test", stats=False).release == result.release
        assert failures == []
    else:
        assert "error rate" in result.canary["reason"]
        assert grey.status("test", stats=False).release == stable
        # only the canary's share failed (its answers of 500), never a connection
        assert failures and set(failures) == {500} and len(failures) < len(statuses)
    assert len(app_containers(grey)) == 1
