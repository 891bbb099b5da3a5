"""Response cache benchmark: a cache hit against a bare call, local and Redis, same run.

    python bench/bench_cache.py [--calls 300]

Prints p50/p99 of a cache hit through ``LiteLLMAdapter.agenerate`` (local LRU and Redis on
127.0.0.1:6379, or $REDIS_URL) and of an uncached call to the simulator, with the ratios.
Targets: local hit ≤ 0.3 ms, Redis hit ≤ 1.5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_core import free_port, pct, start_simulator, timed  # noqa: E402


def config(url: str, directory: Path, cache: str) -> Path:
    path = directory / f"config-{cache}.yaml"
    path.write_text(textwrap.dedent(f"""
        model_list:
          - model_name: solo
            litellm_params: {{model: openai/gpt-4o, api_base: "{url}/s/bench", api_key: sk-bench-0001}}
        router_settings:
          cache: {{type: {cache}, ttl: 600, namespace: bench-{uuid.uuid4().hex[:8]}}}
        store: {{enabled: false}}
    """))
    return path


async def main(calls: int) -> None:
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    port = free_port()
    sim = start_simulator(port)
    try:
        from adapters.llm import LiteLLMAdapter, load_config

        url = f"http://127.0.0.1:{port}"
        with tempfile.TemporaryDirectory() as tmp:
            adapters = {kind: LiteLLMAdapter(config=load_config(config(url, Path(tmp), kind),
                                                                load_dotenv=False))
                        for kind in ("local", "redis")}
            for adapter in adapters.values():
                for _ in range(20):
                    await adapter.agenerate(prompt="warm-up", cache={"no-cache": True})
                await adapter.agenerate(prompt="cached question")
            samples: dict[str, list[float]] = {"uncached call": [], "local hit": [],
                                               "redis hit": []}
            for _ in range(calls):
                samples["uncached call"].append(await timed(lambda: adapters["local"].agenerate(
                    prompt="cached question", cache={"no-cache": True, "no-store": True})))
                samples["local hit"].append(await timed(
                    lambda: adapters["local"].agenerate(prompt="cached question")))
                samples["redis hit"].append(await timed(
                    lambda: adapters["redis"].agenerate(prompt="cached question")))
            assert adapters["redis"].policies.cache is not None
            assert adapters["redis"].policies.cache.hits >= calls, "redis hits were not hits"
    finally:
        sim.terminate()
    bare = statistics.median(samples["uncached call"])
    print(f"{'path':16} {'p50 ms':>8} {'p99 ms':>8} {'x uncached call':>16}")
    for name, values in samples.items():
        p50 = statistics.median(values)
        print(f"{name:16} {p50:8.3f} {pct(values, 0.99):8.3f} {p50 / bare:16.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    asyncio.run(main(parser.parse_args().calls))
