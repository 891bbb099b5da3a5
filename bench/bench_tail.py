"""Tail-latency benchmark: hedging against a provider that now and then stalls.

    python bench/bench_tail.py [--calls 300] [--concurrency 8] [--stall 10] [--latency 300]
                               [--sigma 0.4] [--hedging "{...}"]

A two-group chain (primary → backup) on the provider simulator in its own process. Each answers
after a log-normal latency (median ``--latency`` ms, spread ``--sigma``: 0.4 puts p99 near 2.5 ×
the median, the long tail real LLM latencies have); ``--sigma 0`` makes it constant.
Three scenarios for the primary: healthy; hard down (HTTP 503); 10 % of its requests stalling
``--stall`` seconds (seeded, so every path meets the same stalls in the same order). Three paths
each: the adapter with hedging on (default ``after_percentile: 95``), the adapter with hedging off, and a
bare litellm Router with its default settings (fallbacks configured, ``timeout: 30``). Printed:
p50/p95/p99 per cell, p99 against the same path's healthy p99 (target with stalls and hedging
on: ≤ 2×), how many calls sent a hedge, and the hedges' share of the cost (a lost hedge is billed
its input tokens). The bare Router retries a dead primary with backoff (≈ 4 s a call), so that
cell runs fewer calls; everything else runs ``--calls``. One-time costs (litellm's lazy imports
on its first success and first failure) are paid by a warm-up before the first cell.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from bench_core import MESSAGES, free_port, pct, start_simulator  # noqa: E402

SCENARIOS = ("healthy", "primary down (503)", "10% primary stalls")
PATHS = ("adapter, hedging on", "adapter, hedging off", "bare Router, defaults")
HEDGING = "{after_percentile: 95, min_samples: 20, default_after_ms: 1000}"


@dataclass
class Cell:
    latencies: list[float]
    hedged: int = 0
    cost: float = 0.0
    hedge_cost: float = 0.0
    requests: int = 0               # requests the simulator saw (primary + backup)


def put_scenario(url: str, name: str, scenario: dict[str, Any]) -> None:
    request = urllib.request.Request(f"{url}/control/scenarios/{name}", method="PUT",
                                     data=json.dumps(scenario).encode(),
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=5)


def sim_requests(url: str, *names: str) -> int:
    with urllib.request.urlopen(f"{url}/control/stats", timeout=5) as answer:
        stats = json.load(answer)
    return sum(int(stats.get(n, {}).get("requests", 0)) for n in names)


@dataclass(frozen=True)
class Provider:
    latency_ms: float
    sigma: float
    stall_s: float

    def scenario(self, kind: str, seed: int) -> dict[str, Any]:
        faults = {"healthy": [],
                  "primary down (503)": [{"kind": "status", "status": 503}],
                  "10% primary stalls": [{"kind": "stall", "stall_s": self.stall_s,
                                          "rate": 0.1}]}[kind]
        return {"latency_ms": self.latency_ms, "latency_sigma": self.sigma, "faults": faults,
                "seed": seed}


def adapter_for(url: str, directory: Path, p: str, b: str, hedging: str | None) -> Any:
    from adapters.llm import LiteLLMAdapter, load_config

    path = directory / f"{p}.yaml"
    path.write_text(textwrap.dedent(f"""
        model_list:
          - model_name: primary
            litellm_params: {{model: openai/gpt-4o, api_base: "{url}/s/{p}", api_key: sk-bench-0001}}
            model_info: {{id: {p}}}
          - model_name: backup
            litellm_params: {{model: openai/gpt-4o, api_base: "{url}/s/{b}", api_key: sk-bench-0002}}
            model_info: {{id: {b}}}
        fallbacks: [primary, backup]
        router_settings: {{routing_strategy: simple-shuffle, timeout: 30{', hedging: ' + hedging if hedging else ''}}}
    """))
    return LiteLLMAdapter(config=load_config(path, load_dotenv=False), model="primary")


def bare_router(url: str, p: str, b: str) -> Any:
    from adapters.llm._routing.litellm import litellm

    return litellm().Router(model_list=[
        {"model_name": "primary", "litellm_params": {"model": "openai/gpt-4o", "api_key": "sk-b",
                                                     "api_base": f"{url}/s/{p}"}},
        {"model_name": "backup", "litellm_params": {"model": "openai/gpt-4o", "api_key": "sk-b",
                                                    "api_base": f"{url}/s/{b}"}}],
        fallbacks=[{"primary": ["backup"]}], timeout=30)


async def drive(call: Callable[[int], Awaitable[Any]], calls: int, concurrency: int
                ) -> tuple[list[float], list[Any]]:
    queue = iter(range(calls))
    latencies: list[float] = []
    answers: list[Any] = []

    async def worker() -> None:
        for i in queue:
            started = time.perf_counter()
            answers.append(await call(i))
            latencies.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, answers


async def warm_up(url: str, directory: Path, hedging: str) -> None:
    """litellm's one-time lazy imports (first success, first failure) before any cell."""
    llm = adapter_for(url, directory, "tail-warm-p", "tail-warm-b", hedging)
    put_scenario(url, "tail-warm-p", {"faults": [{"kind": "status", "status": 503}]})
    for _ in range(3):
        await llm.agenerate(messages=MESSAGES)
    router = bare_router(url, "tail-warm-b", "tail-warm-b")
    for _ in range(20):
        await llm.agenerate(messages=MESSAGES, model="backup")
        await router.acompletion(model="primary", messages=MESSAGES)
    await asyncio.sleep(1.0)


async def measure(url: str, directory: Path, scenario: str, path: str, calls: int,
                  concurrency: int, provider: Provider, hedging: str) -> Cell:
    tag = f"{SCENARIOS.index(scenario)}{PATHS.index(path)}-{os.getpid()}"
    p, b = f"tail-p{tag}", f"tail-b{tag}"
    put_scenario(url, p, provider.scenario("healthy", seed=7))
    put_scenario(url, b, provider.scenario("healthy", seed=8))
    if path == PATHS[2]:
        router = bare_router(url, p, b)

        async def call(i: int) -> Any:
            return await router.acompletion(model="primary", messages=MESSAGES)
    else:
        llm = adapter_for(url, directory, p, b, hedging if path == PATHS[0] else None)

        async def call(i: int) -> Any:
            return await llm.agenerate(messages=[{"role": "user", "content": f"{i}: Find a "
                                                  "therapist for Tuesday"}])
    # Warm-up on a healthy primary: connections, and the hedger's latency window (the cell's
    # scenario is then set afresh, so its seeded stalls start from the same point for each path).
    await drive(call, 40, concurrency)
    await asyncio.sleep(0.5)
    put_scenario(url, p, provider.scenario(scenario, seed=7))
    before = sim_requests(url, p, b)
    latencies, answers = await drive(call, calls, concurrency)
    cell = Cell(latencies, requests=sim_requests(url, p, b) - before)
    for answer in answers:
        if path != PATHS[2]:
            cell.hedged += bool(answer.hedged)
            cell.cost += answer.cost or 0.0
            cell.hedge_cost += (answer.cost_details or {}).get("hedge", 0.0)
    return cell


async def main(calls: int, concurrency: int, provider: Provider, hedging: str) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_simulator(port)
    started = time.monotonic()
    results: dict[tuple[str, str], Cell] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["LLM_ADAPTER_HOME"] = tmp        # the bench's records stay out of yours
            await warm_up(url, Path(tmp), hedging)
            for scenario in SCENARIOS:
                for path in PATHS:
                    n = max(calls // 5, concurrency) if (scenario, path) == \
                        (SCENARIOS[1], PATHS[2]) else calls
                    results[scenario, path] = await measure(url, Path(tmp), scenario, path, n,
                                                            concurrency, provider, hedging)
                    print(f"  measured: {scenario} / {path} ({n} calls, "
                          f"{time.monotonic() - started:.0f} s so far)", file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait()
    report(results, concurrency, provider, hedging, time.monotonic() - started)


def report(results: dict[tuple[str, str], Cell], concurrency: int, provider: Provider, hedging: str,
           took: float) -> None:
    shape = f"log-normal, median {provider.latency_ms:g} ms, sigma {provider.sigma:g}" \
        if provider.sigma else f"{provider.latency_ms:g} ms each"
    print(f"\nprimary → backup, {shape}, concurrency {concurrency}, stalls "
          f"{provider.stall_s:g} s; hedging: {hedging} (run took {took:.0f} s)\n")
    print("| scenario | path | calls | p50 ms | p95 ms | p99 ms | p99 × healthy p99 | "
          "hedged calls | requests / call | hedge cost share |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (scenario, path), cell in results.items():
        values = cell.latencies
        base = pct(results[SCENARIOS[0], path].latencies, 0.99)
        p99 = pct(values, 0.99)
        share = f"{cell.hedge_cost / cell.cost * 100:.2f} %" if cell.cost else "—"
        hedged = f"{cell.hedged / len(values) * 100:.1f} %" if path != PATHS[2] else "—"
        print(f"| {scenario} | {path} | {len(values)} | {statistics.median(values):.0f} | "
              f"{pct(values, 0.95):.0f} | {p99:.0f} | {p99 / base:.2f} | {hedged} | "
              f"{cell.requests / len(values):.2f} | {share} |")
    stalled = pct(results[SCENARIOS[2], PATHS[0]].latencies, 0.99)
    healthy = {path: pct(results[SCENARIOS[0], path].latencies, 0.99) for path in PATHS[:2]}
    print(f"\nwith stalls, hedging on: p99 = {stalled / healthy[PATHS[0]]:.2f} × its healthy p99, "
          f"{stalled / healthy[PATHS[1]]:.2f} × the healthy p99 without hedging (target ≤ 2)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--stall", type=float, default=10.0)
    parser.add_argument("--latency", type=float, default=300.0, help="median, ms")
    parser.add_argument("--sigma", type=float, default=0.4, help="log-normal spread; 0: constant")
    parser.add_argument("--hedging", default=HEDGING, help="router_settings.hedging (YAML)")
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.concurrency,
                     Provider(args.latency, args.sigma, args.stall), args.hedging))
