"""Which variant of an A/B-tested prompt performs best, from the local store's calls and scores.

Per variant (the A/B label, or ``v<N>`` for calls that used a version outside an experiment):
calls, error rate, latency (mean, p95) and cost of the calls that answered, and the mean
numeric score. The best variant of each metric is tested against the runner-up (Welch's t-test
on latency, cost and score; a two-proportion z-test on the error rate) so the report can say
whether a difference is likely real or could be chance. No scipy: the t distribution is
computed from the regularized incomplete beta function.
"""

from __future__ import annotations

import math
import sqlite3
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .._percentiles import percentile

__all__ = ["Comparison", "VariantStats", "compare", "two_proportion_z_test", "variant_stats",
           "welch_t_test", "winner"]

ALPHA = 0.05


@dataclass(frozen=True)
class VariantStats:
    variant: str
    versions: tuple[int, ...]
    calls: int
    errors: int
    latency_mean_ms: float | None       # calls that answered (errors fail at any speed)
    latency_p95_ms: float | None
    cost_mean: float | None             # calls that answered with a known price
    score_mean: float | None            # numeric scores of the calls or of their traces
    scores: int
    latencies: tuple[float, ...] = field(default=(), repr=False)
    costs: tuple[float, ...] = field(default=(), repr=False)
    score_values: tuple[float, ...] = field(default=(), repr=False)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.calls if self.calls else None

    def as_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "versions": list(self.versions), "calls": self.calls,
                "errors": self.errors, "error_rate": self.error_rate,
                "latency_mean_ms": self.latency_mean_ms, "latency_p95_ms": self.latency_p95_ms,
                "cost_mean": self.cost_mean, "score_mean": self.score_mean,
                "scores": self.scores}


@dataclass(frozen=True)
class Comparison:
    """The best variant of one metric against the runner-up."""

    metric: str                         # "score" | "error rate" | "latency" | "cost"
    best: str
    runner_up: str
    best_value: float
    runner_up_value: float
    p_value: float | None               # None: too little data (or no variance) to test

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA

    @property
    def verdict(self) -> str:
        if self.p_value is None:
            return "not enough data to tell"
        if self.significant:
            return "likely real (p<0.05)"
        return f"could be chance (p={self.p_value:.2f})"

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "best": self.best, "runner_up": self.runner_up,
                "best_value": self.best_value, "runner_up_value": self.runner_up_value,
                "p_value": self.p_value, "verdict": self.verdict}


def variant_stats(conn: sqlite3.Connection, name: str,
                  score_name: str | None = None) -> list[VariantStats]:
    """One row per variant of prompt ``name``, most calls first.

    Scores count for a call when given for it (``call_id``) or for its trace; a trace score is
    counted once per variant however many calls of the trace used the prompt.
    """
    calls: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in conn.execute(
            "SELECT COALESCE(prompt_variant, 'v' || COALESCE(CAST(prompt_version AS TEXT), "
            "'?')), "
            "prompt_version, status, latency_ms, cost FROM calls WHERE prompt_name = ?",
            (name,)):
        calls[row[0]].append(tuple(row[1:]))
    scored: dict[str, list[float]] = defaultdict(list)
    only, args = ("", (name,)) if score_name is None else ("AND s.name = ?", (name, score_name))
    for _, variant, value in conn.execute(
            "SELECT DISTINCT s.id, COALESCE(c.prompt_variant, 'v' || "
            "COALESCE(CAST(c.prompt_version AS TEXT), '?')), s.value_num FROM scores s "
            "JOIN calls c ON (s.call_id = c.call_id OR "
            "(s.call_id IS NULL AND s.trace_id = c.trace_id)) WHERE c.prompt_name = ? AND "
            f"s.value_num IS NOT NULL {only}", args):
        scored[variant].append(float(value))
    out = []
    for variant, rows in calls.items():
        ok = [r for r in rows if r[1] == "ok"]
        latencies = sorted(float(r[2]) for r in ok if r[2] is not None)
        costs = [float(r[3]) for r in ok if r[3] is not None]
        values = scored.get(variant, [])
        out.append(VariantStats(
            variant=variant, versions=tuple(sorted({int(r[0]) for r in rows if r[0] is not None})),
            calls=len(rows), errors=len(rows) - len(ok),
            latency_mean_ms=statistics.fmean(latencies) if latencies else None,
            latency_p95_ms=percentile(latencies, 95),
            cost_mean=statistics.fmean(costs) if costs else None,
            score_mean=statistics.fmean(values) if values else None, scores=len(values),
            latencies=tuple(latencies), costs=tuple(costs), score_values=tuple(values)))
    return sorted(out, key=lambda s: (-s.calls, s.variant))


def compare(stats: Sequence[VariantStats]) -> list[Comparison]:
    """For each metric with data for two variants or more: the best against the runner-up."""
    out: list[Comparison] = []
    metrics: tuple[tuple[str, str, bool], ...] = (
        ("score", "score_values", True), ("error rate", "", False),
        ("latency", "latencies", False), ("cost", "costs", False))
    for metric, samples, higher_is_better in metrics:
        ranked = [(value, s) for s in stats
                  if (value := _value(s, metric)) is not None]
        if len(ranked) < 2:
            continue
        ranked.sort(key=lambda pair: -pair[0] if higher_is_better else pair[0])
        (best_value, best), (other_value, other) = ranked[0], ranked[1]
        if metric == "error rate":
            p = two_proportion_z_test(best.errors, best.calls, other.errors, other.calls)
        else:
            p = welch_t_test(getattr(best, samples), getattr(other, samples))
        out.append(Comparison(metric, best.variant, other.variant, best_value, other_value, p))
    return out


def winner(comparisons: Sequence[Comparison]) -> tuple[str | None, str]:
    """The variant that performs best and why: by score when there are scores, else by error
    rate when that difference is likely real, else by latency."""
    by_metric = {c.metric: c for c in comparisons}
    for metric in ("score", "error rate", "latency"):
        c = by_metric.get(metric)
        if c is None or metric == "error rate" and not c.significant:
            continue
        better = "higher" if metric == "score" else "lower"
        return c.best, (f"{better} {metric} ({_fmt(c.best_value, metric)} vs "
                        f"{_fmt(c.runner_up_value, metric)} for {c.runner_up}): {c.verdict}")
    return None, "not enough data: the variants need calls (and scores) to be compared"


def _value(s: VariantStats, metric: str) -> float | None:
    return {"score": s.score_mean, "error rate": s.error_rate, "latency": s.latency_mean_ms,
            "cost": s.cost_mean}[metric]


def _fmt(value: float, metric: str) -> str:
    if metric == "error rate":
        return f"{100 * value:.1f}%"
    if metric == "latency":
        return f"{value:.0f} ms"
    if metric == "cost":
        return f"${value:.6f}"
    return f"{value:.3f}"


# -- tests of significance -------------------------------------------------------------------
def welch_t_test(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of Welch's t-test (unequal variances); None with < 2 samples each."""
    n1, n2 = len(a), len(b)
    if n1 < 2 or n2 < 2:
        return None
    m1, m2 = statistics.fmean(a), statistics.fmean(b)
    s1, s2 = statistics.variance(a, m1) / n1, statistics.variance(b, m2) / n2
    if s1 + s2 == 0:
        return None if m1 == m2 else 0.0
    t = (m1 - m2) / math.sqrt(s1 + s2)
    df = (s1 + s2) ** 2 / (s1 ** 2 / (n1 - 1) + s2 ** 2 / (n2 - 1))
    return _betainc(df / 2, 0.5, df / (df + t * t))


def two_proportion_z_test(x1: int, n1: int, x2: int, n2: int) -> float | None:
    """Two-sided p-value that two rates (x/n) differ; None when it cannot be tested."""
    if not n1 or not n2:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    if pooled in (0.0, 1.0):
        return None
    z = (x1 / n1 - x2 / n2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return math.erfc(abs(z) / math.sqrt(2))


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (Numerical Recipes, 6.4)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) +
                     a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h
