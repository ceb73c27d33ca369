"""The alert rule grammar of `[alerts]` in minicloud.toml, shared by the manifest (validation) and the
collector (evaluation). Standard library only.

    RULE     = METRIC OP VALUE [ "for" DURATION ]
    METRIC   = "5xx" | "4xx"            share of the env's requests, VALUE in %        e.g. 5xx > 1%
             | "p50" | "p95" | "p99"    request latency at the gateway, VALUE in ms|s   e.g. p95 > 500ms
             | "rps"                    requests per second                             e.g. rps < 1
             | "cpu"                    CPU of an app container, % of one core          e.g. cpu > 80%
             | "memory"                 memory of an app container, VALUE in KB|MB|GB (or KiB|MiB|GiB)
             | "restarts"               restarts of an app container in the last minute e.g. restarts > 0
    OP       = ">" | ">=" | "<" | "<="
    DURATION = a number and s|m|h, e.g. 30s, 1m, 2h

Each metric has an *instant value*, measured every second: the request metrics over the env's
requests of the last 10 s (no request in that time: the condition does not hold), cpu and memory from
the latest sample of each app container, restarts as the count in the last minute. A rule *fires* when
its condition has held at every measurement for DURATION (at once without `for`), and *resolves* at the
first measurement where it no longer holds.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

HTTP_METRICS = ("5xx", "4xx", "p50", "p95", "p99", "rps")
CONTAINER_METRICS = ("cpu", "memory", "restarts")
METRICS = HTTP_METRICS + CONTAINER_METRICS
OPS = (">=", "<=", ">", "<")
LOOKBACK_SECONDS = 10  # request metrics: the last 10 s of requests
RESTART_LOOKBACK_SECONDS = 60
MAX_FOR_SECONDS = 24 * 3600

_UNITS = {  # metric -> {unit: factor to the stored base unit}; "" = a bare number is allowed
    "5xx": {"%": 1.0}, "4xx": {"%": 1.0}, "cpu": {"%": 1.0},
    "p50": {"ms": 1.0, "s": 1000.0}, "p95": {"ms": 1.0, "s": 1000.0}, "p99": {"ms": 1.0, "s": 1000.0},
    "rps": {"": 1.0, "/s": 1.0},
    "memory": {"b": 1.0, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 2.0**10, "mib": 2.0**20, "gib": 2.0**30},
    "restarts": {"": 1.0},
}
_DURATION = {"s": 1, "m": 60, "h": 3600}
_RULE = re.compile(r"^\s*(?P<metric>[a-z0-9]+)\s*(?P<op>>=|<=|>|<)\s*(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>[a-zA-Z%/]*)"
                   r"(?:\s+for\s+(?P<for>\d+)\s*(?P<for_unit>[a-z]+))?\s*$")
WEBHOOK_RE = re.compile(r"^https?://[^\s/?#]+(?:[/?#]\S*)?$")
SYNTAX = 'METRIC OP VALUE [for DURATION], e.g. "5xx > 1% for 1m", "p95 > 500ms for 2m", "cpu > 80% for 5m", ' \
         '"restarts > 0"'


class RuleError(ValueError):
    pass


@dataclass(frozen=True)
class Rule:
    name: str
    text: str
    metric: str
    op: str
    value: float  # in the metric's base unit: %, ms, bytes, requests/s, restarts
    for_seconds: int = 0

    @property
    def per_container(self) -> bool:
        return self.metric in CONTAINER_METRICS

    def holds(self, measured: float | None) -> bool:
        if measured is None:
            return False
        return {">": measured > self.value, ">=": measured >= self.value,
                "<": measured < self.value, "<=": measured <= self.value}[self.op]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Rule:
        return cls(**{k: data[k] for k in ("name", "text", "metric", "op", "value", "for_seconds")})


def parse_rule(text: str, name: str = "") -> Rule:
    """The rule of `text`; RuleError says what is wrong and how it should read."""
    if not isinstance(text, str):
        raise RuleError(f"expected a rule string ({SYNTAX})")
    m = _RULE.match(text)
    if m is None:
        lead = re.match(r"\s*([A-Za-z0-9]*)", text)
        metric = lead.group(1) if lead else ""
        if metric and metric not in METRICS:
            raise RuleError(f"unknown metric {metric!r}; one of {', '.join(METRICS)} ({SYNTAX})")
        raise RuleError(f"{text!r} is not a rule: {SYNTAX}")
    metric, op, unit = m["metric"], m["op"], m["unit"]
    if metric not in METRICS:
        raise RuleError(f"unknown metric {metric!r}; one of {', '.join(METRICS)}")
    units = _UNITS[metric]
    factor = units.get(unit.lower() if metric == "memory" else unit)
    if factor is None:
        allowed = ", ".join(repr(u) if u else "none" for u in units)
        raise RuleError(f"{metric} takes the unit {allowed}; got {unit!r}" if unit else
                        f"{metric} needs a unit: {allowed} (e.g. {_example(metric)})")
    value = float(m["value"]) * factor
    if metric in ("5xx", "4xx") and value > 100:
        raise RuleError(f"{metric} is a share of the requests: at most 100%")
    seconds = 0
    if m["for"] is not None:
        per = _DURATION.get(m["for_unit"])
        if per is None:
            raise RuleError(f"duration unit {m['for_unit']!r}: use s, m or h (e.g. for 1m)")
        seconds = int(m["for"]) * per
        if seconds > MAX_FOR_SECONDS:
            raise RuleError("for: at most 24h (metrics are kept 24 h)")
    return Rule(name, text.strip(), metric, op, value, seconds)


def _example(metric: str) -> str:
    return {"5xx": "5xx > 1%", "4xx": "4xx > 10%", "cpu": "cpu > 80%", "memory": "memory > 400MB",
            "p50": "p50 > 200ms", "p95": "p95 > 500ms", "p99": "p99 > 1s"}.get(metric, f"{metric} > 0")


def check_rule(text: object) -> str | None:
    """The manifest's validation hook: None when `text` is a valid rule, else the problem."""
    try:
        parse_rule(text)  # type: ignore[arg-type]
    except RuleError as err:
        return str(err)
    return None


def check_webhook(text: object) -> str | None:
    if not isinstance(text, str) or not WEBHOOK_RE.match(text):
        return f"{text!r} is not an http:// or https:// URL (any URL taking a JSON POST)"
    return None


def format_value(metric: str, value: float | None) -> str:
    """A measured value in the unit users write (for listings and webhooks)."""
    if value is None:
        return "-"
    if metric in ("5xx", "4xx", "cpu"):
        return f"{value:.1f}%"
    if metric.startswith("p"):
        return f"{value:.0f}ms"
    if metric == "memory":
        return f"{value / 2**20:.1f}MiB"
    if metric == "rps":
        return f"{value:.1f}/s"
    return f"{value:g}"
