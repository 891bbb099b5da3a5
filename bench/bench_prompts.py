"""Prompt registry benchmark: what ``get_prompt`` costs on the calling path, and its share of a call.

    python bench/bench_prompts.py [--iterations 20000] [--adapter-p50-ms 8.7]

Measured in one run:

- warm ``registry.get(name).compile(**variables)`` (what ``llm.get_prompt`` does) per call, p50
  and p99 in µs, for a local prompt, a Langfuse-sourced one (a loopback Langfuse played by
  ``tests/langfuse_server.py``, real HTTP), and one under a 50/50 A/B test (sticky key hashed
  on every call); target p50 <= 20 µs. Requests made to Langfuse while warm are counted (0).
- cold loads: the local file parsed; a Langfuse fetch (the first one imports the SDK's REST
  client); Langfuse down (the first miss tries it, later ones go straight to the local copy).
- the share of a typical call: against ``--adapter-p50-ms``, else ``LiteLLMAdapter.agenerate``
  against the provider simulator measured here with bench_core's helpers.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))            # tests.langfuse_server

from bench_core import MESSAGES, config_file, free_port, start_simulator, timed  # noqa: E402

from adapters.llm._prompts.sources import LangfuseSource  # noqa: E402
from adapters.llm._prompts.registry import PromptRegistry  # noqa: E402
from adapters.llm._observability.tracing import Credentials  # noqa: E402

VARIABLES = {"required_skills": "orthopedic, post-surgical"}


def per_call_us(action: Callable[[], object], iterations: int) -> list[float]:
    for _ in range(1000):                    # warm-up
        action()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(iterations):
        started = clock()
        action()
        samples.append((clock() - started) / 1000)
    return samples


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1), by the package's one percentile definition."""
    from adapters.llm._percentiles import percentile

    return percentile(sorted(values), q * 100) or 0.0


def adapter_p50_ms(calls: int) -> float:
    """``LiteLLMAdapter.agenerate`` p50 against the simulator (as bench_core measures it)."""
    from adapters.llm import LiteLLMAdapter, load_config

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_simulator(port)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            adapter = LiteLLMAdapter(config=load_config(config_file(url, Path(tmp)),
                                                        load_dotenv=False), model="solo")

            async def run() -> list[float]:
                for _ in range(30):
                    await adapter.agenerate(messages=MESSAGES)
                await asyncio.sleep(1.0)
                return [await timed(lambda: adapter.agenerate(messages=MESSAGES))
                        for _ in range(calls)]

            return statistics.median(asyncio.run(run()))
    finally:
        proc.terminate()
        proc.wait()


def main(iterations: int, adapter_ms: float | None) -> None:
    from tests.langfuse_server import LangfuseServer

    rows: dict[str, list[float]] = {}
    cold: dict[str, float] = {}
    local_dir = ROOT / "prompts"
    experiments = {"smart-scheduling-matching": {"variants": {"prod-a": 50, "prod-b": 50}}}
    with LangfuseServer() as server:
        for version, labels in ((1, ["production", "prod-a"]), (2, ["prod-b"])):
            server.add_prompt("smart-scheduling-matching", f"v{version} {{{{required_skills}}}}",
                              labels=labels)
        server.add_prompt("smart-scheduling-matching-v1", "Rank for {{required_skills}}.",
                          labels=["production"])
        creds = Credentials("pk-lf-test", "sk-lf-test", server.url)

        local = PromptRegistry(local_dir)
        started = time.perf_counter()
        local.get("smart-scheduling-matching-v1")
        cold["local file parsed"] = (time.perf_counter() - started) * 1000
        remote = PromptRegistry(local_dir, langfuse=LangfuseSource(creds),
                                experiments=experiments)
        started = time.perf_counter()
        remote.get("smart-scheduling-matching-v1")
        cold["Langfuse, first fetch (imports)"] = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        remote.get("smart-scheduling-matching-v1", version=1)
        cold["Langfuse, later cold fetch"] = (time.perf_counter() - started) * 1000
        remote.prefetch(["smart-scheduling-matching"])
        remote.wait_idle()

        before = server.request_count()
        rows["local"] = per_call_us(
            lambda: local.get("smart-scheduling-matching-v1").compile(**VARIABLES), iterations)
        rows["langfuse"] = per_call_us(
            lambda: remote.get("smart-scheduling-matching-v1").compile(**VARIABLES), iterations)
        keys = iter(range(10**9))
        rows["langfuse + A/B (sticky key)"] = per_call_us(
            lambda: remote.get("smart-scheduling-matching", sticky_key=f"user-{next(keys)}")
            .compile(**VARIABLES), iterations)
        rows["get only (langfuse)"] = per_call_us(
            lambda: remote.get("smart-scheduling-matching-v1"), iterations)
        warm_requests = server.request_count() - before

        server.set_down(True)
        down = PromptRegistry(local_dir, langfuse=LangfuseSource(creds), fetch_timeout=2)
        started = time.perf_counter()
        source = down.get("smart-scheduling-matching-v1").source
        cold[f"Langfuse down, first ({source})"] = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        down.get("smart-scheduling-matching-v1", version=1)
        cold["Langfuse down, later cold get"] = (time.perf_counter() - started) * 1000

    if adapter_ms is None:
        adapter_ms = adapter_p50_ms(300)
        where = "measured: LiteLLMAdapter.agenerate against the simulator"
    else:
        where = "given"
    print(f"{'warm get_prompt':30} {'p50 µs':>8} {'p99 µs':>8} {'share of a call':>16}")
    for name, values in rows.items():
        p50 = statistics.median(values)
        print(f"{name:30} {p50:8.2f} {pct(values, 0.99):8.2f} "
              f"{p50 / (adapter_ms * 1000):16.3%}")
    print(f"(target p50 <= 20 µs; adapter call p50 {adapter_ms:.2f} ms, {where})")
    print(f"requests to Langfuse while warm: {warm_requests}")
    print("\ncold loads:")
    for name, ms in cold.items():
        print(f"  {name:30} {ms:8.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--adapter-p50-ms", type=float, default=None,
                        help="skip measuring the adapter; use this p50 (ms) for the share")
    args = parser.parse_args()
    main(args.iterations, args.adapter_p50_ms)
