"""Traffic-control benchmark: what a rate-limit or budget check costs a call.

    python bench/bench_limits.py [--calls 2000] [--rounds 8] [--redis redis://127.0.0.1:6379/0]

Measured round by round in one run, against a bare Redis ``PING`` of the same kind (sync or
asyncio) as the baseline: ``RateLimiter.acquire`` (global rpm+tpm and the first of two limited
deployments: six counters, one script), ``settle``, ``capacity``, and a budget
``check_and_reserve`` + ``settle`` (three rules; sync, and the async path calls take), each
with Redis and in memory; and a budget check refused while the breaker is open (Redis away).
Limits are high enough never to refuse. Target: acquire p50 ≤ 1 ms with Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.llm._traffic.counters import Backend, BackendUnavailable, MemoryBackend  # noqa: E402
from adapters.llm._traffic.counters_redis import RedisBackend  # noqa: E402
from adapters.llm._traffic.budgets import BudgetRule, Budgets  # noqa: E402
from adapters.llm._traffic.limits import Limits, RateLimiter  # noqa: E402

Call = Callable[[], Awaitable[object]]
CALL = {"user": "alice", "session": "s1", "agent": "matching", "tags": ["urgent"],
        "environment": "bench"}


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1), by the package's one percentile definition."""
    from adapters.llm._percentiles import percentile

    return percentile(sorted(values), q * 100) or 0.0


def paths(url: str, prefix: str) -> tuple[dict[str, Call], dict[str, str]]:
    """Every measured path, and the baseline each is compared with."""
    import redis
    import redis.asyncio

    sync_client = redis.Redis.from_url(url)
    async_client = redis.asyncio.Redis.from_url(url)
    limits = Limits(rpm=10**9, tpm=10**12, per_deployment={"a": (10**9, 10**12),
                                                           "b": (10**9, 10**12)})
    rules = [BudgetRule("user", 1e6, "day"), BudgetRule("agent", 1e6, "month", "matching"),
             BudgetRule("environment", 1e6, "total")]
    out: dict[str, Call] = {}
    base: dict[str, str] = {}

    async def ping_sync() -> object:
        return sync_client.ping()

    out["bare PING (sync redis.Redis)"] = ping_sync
    out["bare PING (redis.asyncio)"] = lambda: async_client.ping()
    for name, backend in (("Redis", RedisBackend(url, prefix=prefix)),
                          ("memory", MemoryBackend())):
        add_backend(out, base, name, backend, limits, rules)
    away = Budgets(rules, RedisBackend("redis://127.0.0.1:1/0", prefix=prefix), namespace="b")

    async def refused() -> object:
        try:
            await away.acheck_and_reserve(**CALL, estimated_cost=0.01)
        except BackendUnavailable:
            return None
        raise AssertionError("a budget check with Redis away must be refused")

    out["budget refused, breaker open (Redis away)"] = refused
    base["budget refused, breaker open (Redis away)"] = "bare PING (redis.asyncio)"
    return out, base


def add_backend(out: dict[str, Call], base: dict[str, str], name: str, backend: Backend,
                limits: Limits, rules: list[BudgetRule]) -> None:
    limiter = RateLimiter(limits, backend, namespace="bench")
    budgets = Budgets(rules, backend, namespace="bench")
    deadline = time.monotonic() + 3600

    async def acquire() -> object:
        return await limiter.acquire(["a", "b"], 500, deadline=deadline)

    async def acquire_settle() -> object:
        await limiter.settle(await limiter.acquire(["a", "b"], 500, deadline=deadline), 300)
        return None

    async def capacity() -> object:
        return limiter.capacity("a")

    async def budget() -> object:
        return budgets.settle(budgets.check_and_reserve(**CALL, estimated_cost=0.01), 0.005)

    async def abudget() -> object:
        return await budgets.asettle(
            await budgets.acheck_and_reserve(**CALL, estimated_cost=0.01), 0.005)

    async_ping, sync_ping = "bare PING (redis.asyncio)", "bare PING (sync redis.Redis)"
    for label, call, ping in ((f"acquire ({name})", acquire, async_ping),
                              (f"acquire + settle ({name})", acquire_settle, async_ping),
                              (f"capacity, sync ({name})", capacity, sync_ping),
                              (f"budget reserve + settle, sync ({name})", budget, sync_ping),
                              (f"budget reserve + settle, async ({name})", abudget, async_ping)):
        out[label], base[label] = call, ping


async def run(calls: Callable[[], dict[str, Call]], n: int, rounds: int
              ) -> dict[str, list[float]]:
    measured = calls()
    samples: dict[str, list[float]] = {k: [] for k in measured}
    for call in measured.values():        # warm up: connections, script loading
        for _ in range(20):
            await call()
    for _ in range(rounds):
        for name, call in measured.items():
            for _ in range(n // rounds or 1):
                started = time.perf_counter()
                await call()
                samples[name].append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    prefix = f"bench-limits-{uuid.uuid4().hex[:8]}"
    bases: dict[str, str] = {}

    def build() -> dict[str, Call]:
        measured, base = paths(args.redis, prefix)
        bases.update(base)
        return measured

    try:
        samples = asyncio.run(run(build, args.calls, args.rounds))
    finally:
        import redis
        client = redis.Redis.from_url(args.redis)
        for key in client.scan_iter(f"{prefix}:*", count=1000):
            client.delete(key)
    p50 = {k: statistics.median(v) for k, v in samples.items()}
    print(f"{'path':<44} {'p50 ms':>8} {'p99 ms':>8} {'× PING':>8}")
    for name, values in samples.items():
        ratio = p50[name] / p50[bases[name]] if name in bases else 1.0
        print(f"{name:<44} {p50[name]:>8.3f} {pct(values, 0.99):>8.3f} {ratio:>8.2f}")
    redis_acquire = p50["acquire (Redis)"]
    print(f"\nacquire with Redis: {redis_acquire:.3f} ms p50 "
          f"({'within' if redis_acquire <= 1.0 else 'OVER'} the 1 ms target)")


if __name__ == "__main__":
    main()
