"""Route handlers found in code, their patterns matched against the paths the gateway saw, and the
merged numbers (pure logic; the real traffic is in test_lsp_metrics.py)."""

from __future__ import annotations

import pytest

from deploy_bridge.services.histogram import BOUNDS_MS, bin_of
from lsp_server.features.routes import declared_route, path_regex, route_stats


@pytest.mark.parametrize(("line", "methods", "pattern"), [
    ("router.get('/orders/:id', handler)", {"GET", "HEAD"}, "/orders/:id"),
    ('app.post("/orders", async (req, res) => {', {"POST"}, "/orders"),
    ("app.all(`/any`, h)", set(), "/any"),
    ("@app.route('/orders', methods=['POST', 'PUT'])", {"POST", "PUT"}, "/orders"),
    ("@app.route('/orders/<int:id>')", {"GET", "HEAD"}, "/orders/<int:id>"),
    ("@router.delete(\"/orders/{order_id}\")", {"DELETE"}, "/orders/{order_id}"),
    ('@GetMapping("/orders/{id}")', {"GET", "HEAD"}, "/orders/{id}"),
    ('@RequestMapping(value = "/pay", method = RequestMethod.POST)', {"POST"}, "/pay"),
])
def test_declarations_of_each_framework(line, methods, pattern):
    assert declared_route(line, 3) == (methods, pattern)


def test_no_route_away_from_the_declaration_or_in_other_calls():
    assert declared_route("const x = cache.get('/orders'); router.get('/a', h)", 5) is None  # the cursor is off it
    assert declared_route("map.get(key)", 3) is None
    line = "foo(); router.get('/a', h)"
    assert declared_route(line, 2) is None and declared_route(line, 12) == ({"GET", "HEAD"}, "/a")


@pytest.mark.parametrize(("pattern", "matches", "misses"), [
    ("/orders/:id", ["/orders/7", "/orders/abc/"], ["/orders", "/orders/7/items"]),
    ("/orders/:id?", ["/orders", "/orders/7"], ["/orders/7/x"]),
    ("/files/*", ["/files/a/b/c"], ["/other"]),
    ("/orders/<int:id>", ["/orders/7"], ["/orders/7/x"]),
    ("/static/<path:p>", ["/static/a/b.css"], ["/static"]),
    ("/orders/{id}", ["/orders/7"], ["/orders/"]),
    ("/a.b", ["/a.b"], ["/aXb"]),  # dots are literal
    ("/", ["/"], ["/x"]),
])
def test_patterns(pattern, matches, misses):
    regex = path_regex(pattern)
    assert all(regex.fullmatch(p) for p in matches), matches
    assert not any(regex.fullmatch(p) for p in misses), misses


def row(method: str, path: str, times_ms: list[float], s5xx: int = 0) -> dict:
    hist: dict[str, int] = {}
    for ms in times_ms:
        hist[str(bin_of(ms))] = hist.get(str(bin_of(ms)), 0) + 1
    return {"method": method, "path": path, "requests": len(times_ms), "s4xx": 0, "s5xx": s5xx, "hist": hist}


def test_stats_merge_the_paths_a_pattern_serves_and_only_its_methods():
    rows = [row("GET", "/orders/1", [3] * 10), row("GET", "/orders/2", [400] * 10, s5xx=2),
            row("POST", "/orders/3", [1] * 50), row("GET", "/users/1", [1] * 99)]
    stats = route_stats(rows, {"GET", "HEAD"}, "/orders/:id")
    assert stats["requests"] == 20 and stats["s5xx"] == 2
    assert [p for p, _ in stats["paths"]] == ["/orders/1", "/orders/2"]
    assert BOUNDS_MS[bin_of(400) - 1] < stats["p95_ms"] <= BOUNDS_MS[bin_of(400)]
    assert route_stats(rows, {"DELETE"}, "/orders/:id") is None
    assert route_stats(rows, set(), "/orders/:id")["requests"] == 70  # app.all: every method


def test_a_router_mounted_under_a_prefix_matches_by_its_tail():
    rows = [row("GET", "/api/v1/orders/9", [2] * 3)]
    assert route_stats(rows, {"GET"}, "/orders/:id")["requests"] == 3
    assert route_stats([row("GET", "/x/y", [2])], {"GET"}, "/") is None  # "/" is not everybody's tail
