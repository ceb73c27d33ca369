"""routes.tsv, the gateway's one state: each route written and read back, as the Lua side reads it."""

from __future__ import annotations

from pathlib import Path

from deploy_bridge.gateway import Route
from deploy_bridge.services.keeper import routes as keeper_routes


def test_routes_round_trip_and_say_what_the_gateway_applies(tmp_path: Path):
    cases = [
        Route("shop.test.localhost", "mc-shop-test-app-r1", 3000),
        Route("shop.test.localhost", "mc-shop-test-app-r1", 3000, "shop/test is stopped", stopped=True),
        Route("shop.test.localhost", None, None, "stopped", stopped=True),
        Route("shop.test.localhost", "mc-shop-test-app-r1", 3000, canary="mc-shop-test-app-r2", canary_percent=10),
        Route("shop.test.localhost/fn", "mc-shop-test-functions", 8080),
    ]
    for route in cases:
        assert Route.parse(route.line()) == route
    assert cases[0].applied == "mc-shop-test-app-r1:3000"
    assert cases[1].applied == "!shop/test is stopped" and cases[1].serving is None
    assert cases[3].applied == "mc-shop-test-app-r1:3000|mc-shop-test-app-r2:3000|10"
    # the keeper reads the same file: a canary's container is wanted too, a stopped one is not
    file = tmp_path / "routes.tsv"
    file.write_text(cases[3].line() + Route("api.test.localhost", "mc-api", 80, "x", stopped=True).line())
    found = keeper_routes(file)
    assert found["shop.test.localhost"] == ("mc-shop-test-app-r1", False)
    assert found["shop.test.localhost#canary"] == ("mc-shop-test-app-r2", False)
    assert found["api.test.localhost"] == ("mc-api", True)
