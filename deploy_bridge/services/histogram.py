"""Latency histograms over fixed bounds: what the collector stores per bucket, and what readers merge
(metrics, the editor's hover on a route). Standard library only, cheap to import."""

from __future__ import annotations

import bisect

# latency histogram upper bounds in ms; includes Prometheus' default buckets (5 ms … 10 s)
BOUNDS_MS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 120, 150, 200, 250, 300, 400, 500,
             600, 800, 1000, 1200, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 8000, 10000, 15000, 20000, 30000,
             60000, 120000)


def bin_of(ms: float) -> int:
    return bisect.bisect_left(BOUNDS_MS, ms)


def hist_quantile(hist: list[int] | dict, q: float) -> float | None:
    """The q-quantile (0..1) in ms of a histogram over BOUNDS_MS, interpolated within its bin."""
    counts = hist if isinstance(hist, list) else [hist.get(str(i), 0) for i in range(len(BOUNDS_MS) + 1)]
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        if n and seen + n >= rank:
            low = BOUNDS_MS[i - 1] if i > 0 else 0.0
            high = BOUNDS_MS[i] if i < len(BOUNDS_MS) else BOUNDS_MS[-1]
            return low + (high - low) * max(0.0, rank - seen) / n
        seen += n
    return float(BOUNDS_MS[-1])
