"""Latency statistics: one definition for every number the bench publishes.

Medians (p50) are the headline because a shared machine or a Pi's thermal governor produces long tails that
would drag a mean; p90/p99 show that tail, std/min/mean are kept for completeness. Percentiles are numpy's
linear interpolation and std is the population one, exactly as ``runner.summarize`` computes them on the
device (a test keeps the two equal), so device and host figures are comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    n: int
    mean: float
    std: float
    min: float
    p50: float
    p90: float
    p99: float
    max: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def summarize(samples_ms: Sequence[float]) -> LatencyStats:
    """Summary of per-call wall times in milliseconds; raises ValueError on an empty sequence."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no latency samples to summarize")
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return LatencyStats(
        int(a.size),
        float(a.mean()),
        float(a.std()),
        float(a.min()),
        float(p50),
        float(p90),
        float(p99),
        float(a.max()),
    )


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either side is missing (a runtime that did not run)."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator
