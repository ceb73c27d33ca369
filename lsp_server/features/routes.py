"""Route handlers and what they served: a hover on `router.get('/orders/:id', …)`, `@app.route('/orders')`,
`@app.get('/orders/{id}')` or `@GetMapping("/orders")` shows that route's requests, errors and p95 over
the last 15 minutes of the env in view.

The numbers come from the collector's per-route series (method and path, minute buckets), which the
engine reader sends with its pulses (`Snapshot.pulse["routes"]`); the hover only matches the route's
pattern against the paths seen and merges their histograms: no engine, no database on the request path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from lsprotocol import types

from deploy_bridge.services.histogram import BOUNDS_MS, hist_quantile

from .base import CODE_LANGUAGES, Context, Feature

WINDOW_MINUTES = 15
HTTP_METHODS = ("get", "post", "put", "patch", "delete", "head", "options", "all")
# Express, Koa and friends: router.get('/orders/:id', …)
JS_ROUTE = re.compile(r"\b\w+\.(?P<method>get|post|put|patch|delete|head|options|all)\(\s*(?P<q>['\"`])"
                      r"(?P<path>/[^'\"`]*)(?P=q)")
# Flask and FastAPI: @app.route('/orders', methods=['POST']) / @router.post("/orders/{id}")
PY_ROUTE = re.compile(r"@\w+(?:\.\w+)*\.(?P<method>route|get|post|put|patch|delete|head|options)\(\s*"
                      r"(?P<q>['\"])(?P<path>/[^'\"]*)(?P=q)(?P<rest>[^)]*)")
# Spring: @GetMapping("/orders") / @RequestMapping(value = "/orders", method = RequestMethod.POST)
JAVA_ROUTE = re.compile(r"@(?P<method>Get|Post|Put|Patch|Delete|Request)Mapping\(\s*(?:(?:value|path)\s*=\s*)?"
                        r"\"(?P<path>/[^\"]*)\"(?P<rest>[^)]*)")
PY_METHODS = re.compile(r"methods\s*=\s*[\[(]([^\])]*)")
JAVA_METHOD = re.compile(r"RequestMethod\.(\w+)")


def declared_route(line: str, column: int) -> tuple[set[str], str] | None:
    """(the HTTP methods, the path pattern) of a route declared on `line`, when `column` is on it."""
    for pattern in (JS_ROUTE, PY_ROUTE, JAVA_ROUTE):
        for m in pattern.finditer(line):
            if not m.start() <= column <= m.end():
                continue
            method = m.group("method").lower()
            rest = m.groupdict().get("rest") or ""
            if method in ("route", "request"):
                listed = PY_METHODS.search(rest) if method == "route" else None
                named = re.findall(r"\w+", listed.group(1)) if listed else JAVA_METHOD.findall(rest)
                methods = {n.upper() for n in named} or ({"GET"} if method == "route" else set())
            elif method == "all":
                methods = set()
            else:
                methods = {method.upper()}
            if "GET" in methods:
                methods.add("HEAD")
            return methods, m.group("path")
    return None


def path_regex(pattern: str) -> re.Pattern[str]:
    """The paths a route pattern serves: `:id`, `:id?`, `*` (Express), `<id>`, `<int:id>`, `<path:p>`
    (Flask), `{id}`, `{p:path}` (FastAPI, Spring)."""
    out = []
    for token in re.split(r"(/:\w+\??|<(?:\w+:)?\w+>|\{\w+(?::[^}]*)?\}|\*)", pattern.rstrip("/") or "/"):
        if not token:
            continue
        if token.startswith("/:"):
            out.append(r"(?:/[^/]+)?" if token.endswith("?") else r"/[^/]+")
        elif token.startswith("<"):
            out.append(r".+" if token.startswith("<path:") else r"[^/]+")
        elif token.startswith("{"):
            out.append(r".+" if token.endswith(":path}") or ":.*" in token else r"[^/]+")
        elif token == "*":
            out.append(r".*")
        else:
            out.append(re.escape(token))
    return re.compile("".join(out) + r"/?")


def route_stats(rows: Iterable[dict], methods: set[str], pattern: str) -> dict | None:
    """The merged numbers of the rows (collector.routes) a route serves; None when it served none. A
    route mounted under a prefix (app.use('/api', router)) is matched by its tail when nothing matches whole."""
    regex = path_regex(pattern)
    rows = [r for r in rows if not methods or r["method"] in methods]
    for match in (regex.fullmatch, lambda path: pattern != "/" and re.fullmatch(r"(?:/[^/]+)+?" + regex.pattern, path)):
        hits = [r for r in rows if match(r["path"])]
        if hits:
            break
    else:
        return None
    hist = [0] * (len(BOUNDS_MS) + 1)
    for r in hits:
        for key, n in r["hist"].items():
            hist[int(key)] += n
    requests = sum(r["requests"] for r in hits)
    return {"requests": requests, "s4xx": sum(r["s4xx"] for r in hits), "s5xx": sum(r["s5xx"] for r in hits),
            "p95_ms": hist_quantile(hist, 0.95),
            "paths": sorted(((r["path"], r["requests"]) for r in hits), key=lambda p: -p[1])}


class RoutesFeature(Feature):
    name = "routes"

    def accepts(self, uri: str, language: str) -> bool:
        return language in CODE_LANGUAGES

    def hover(self, ctx: Context) -> types.Hover | None:
        found = declared_route(ctx.line_text, ctx.column)
        if found is None:
            return None
        methods, pattern = found
        shown = "/".join(sorted(methods - {"HEAD"})) or "ANY"
        where = f"{ctx.snapshot.app or 'the app'}/{ctx.snapshot.env}"
        pulse = ctx.snapshot.pulse
        if not pulse or pulse.get("live") is None:
            text = f"**{shown} {pattern}** — no metrics for {where} (the env is not built, or no engine answers)"
            return types.Hover(types.MarkupContent(types.MarkupKind.Markdown, text))
        stats = route_stats(pulse.get("routes") or [], methods, pattern)
        head = f"**{shown} {pattern}** — last {WINDOW_MINUTES} minutes in {where}"
        if stats is None:
            return types.Hover(types.MarkupContent(types.MarkupKind.Markdown, f"{head}\n\nno request yet"))
        n = stats["requests"]
        p95 = f"{stats['p95_ms']:.0f} ms" if stats["p95_ms"] is not None else "-"
        lines = [head, "", "| requests | 5xx | 4xx | p95 |", "|---:|---:|---:|---:|",
                 f"| {n:,} ({n / (WINDOW_MINUTES * 60):.2f}/s) | {stats['s5xx']} ({100 * stats['s5xx'] / n:.1f}%) "
                 f"| {stats['s4xx']} | {p95} |"]
        if len(stats["paths"]) > 1 or stats["paths"][0][0] != pattern:
            lines += ["", "paths: " + ", ".join(f"`{p}` ({c:,})" for p, c in stats["paths"][:5])
                      + (" …" if len(stats["paths"]) > 5 else "")]
        return types.Hover(types.MarkupContent(types.MarkupKind.Markdown, "\n".join(lines)))
