"""One definition of a percentile, for the reports, the alerts, hedging and the benchmarks.

The p-th percentile of n ascending samples is the sample of rank ⌈p·(n + 1) / 100⌉, kept within
1..n. The k-th of n sorted samples sits at the k/(n + 1) quantile on average, so this is where
``statistics.quantiles`` (its default, "exclusive" method) places the percentile, taken at a
value some sample really had rather than interpolated: never beyond the largest, never a latency
no call had. From a short window it does not understate the tail, which a hedge threshold or an
alert on a handful of calls cannot afford: the nearest rank ⌈p·n / 100⌉ of 40 samples puts a
p95 at the 38th, which 7 % of later values exceed on average; this one at the 39th (5 %).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["percentile"]


def percentile(ordered: Sequence[float], p: float) -> float | None:
    """The ``p``-th percentile (0..100) of ascending ``ordered``; None when it is empty."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 100:
        raise ValueError(f"a percentile is a number from 0 to 100 (95 for p95), got {p!r}")
    if not ordered:
        return None
    rank = math.ceil(p / 100 * (len(ordered) + 1))
    return ordered[min(max(rank, 1), len(ordered)) - 1]
