"""Observability benchmark: what recording costs the calling path.

    python bench/bench_tracing.py [--calls 400] [--rounds 8]

Four adapters on one simulated provider, measured round by round in one run:
recording off (the baseline), local store only, store + Langfuse reachable (a loopback
Langfuse in its own process), store + Langfuse down (nothing listening). Prints p50 and CPU per
call and what each adds over the baseline. Targets: ≤ 0.3 ms with Langfuse reachable, nothing
more when it is down. Each adapter is drained (store written, generations delivered or kept
in the outbox) at the end of its rounds, inside its CPU count and outside its call timings, so
its background work is not billed to the adapter measured next.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_core import PUBLIC, SECRET, free_port, start_langfuse, start_simulator, timed  # noqa: E402

DOWN_PUBLIC = "pk-lf-bench-down"  # the SDK keeps one client per public key


def config(url: str, directory: Path, *, store: bool) -> Path:
    path = directory / f"config-{'store' if store else 'nostore'}.yaml"
    path.write_text(textwrap.dedent(f"""
        model_list:
          - model_name: solo
            litellm_params: {{model: openai/gpt-4o, api_base: "{url}/s/bench", api_key: sk-bench-0001}}
        store: {{enabled: {str(store).lower()}, path: "{directory / 'calls.sqlite3'}"}}
    """))
    return path


async def main(calls: int, rounds: int) -> None:
    sim_port, lf_port, dead_port = free_port(), free_port(), free_port()
    sim = start_simulator(sim_port)
    langfuse = start_langfuse(lf_port)
    try:
        from adapters.llm import LiteLLMAdapter, load_config
        from adapters.llm._observability.telemetry import TelemetryPool

        url = f"http://127.0.0.1:{sim_port}"
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            plain = load_config(config(url, base, store=False), load_dotenv=False)
            stored = load_config(config(url, base, store=True), load_dotenv=False)
            os.environ.update(LANGFUSE_PUBLIC_KEY=PUBLIC, LANGFUSE_SECRET_KEY=SECRET)
            adapters = {}
            for name, cfg, langfuse_on, base_url in (
                    ("recording off", plain, False, None),
                    ("local store", stored, False, None),
                    ("store + Langfuse up", stored, True, f"http://127.0.0.1:{lf_port}"),
                    ("store + Langfuse down", stored, True, f"http://127.0.0.1:{dead_port}")):
                if base_url:
                    os.environ["LANGFUSE_BASE_URL"] = base_url
                    os.environ["LANGFUSE_PUBLIC_KEY"] = DOWN_PUBLIC if "down" in name else PUBLIC
                adapter = LiteLLMAdapter(config=cfg, enable_langfuse=langfuse_on,
                                         telemetry=TelemetryPool())
                for _ in range(20):                      # builds sinks, warms everything
                    await adapter.agenerate(prompt="warm-up")
                adapters[name] = adapter
            await asyncio.sleep(1.0)
            samples: dict[str, list[float]] = {n: [] for n in adapters}
            cpu = {n: 0.0 for n in adapters}
            for _ in range(rounds):
                for name, adapter in adapters.items():
                    started = time.process_time()
                    for _ in range(calls // rounds):
                        samples[name].append(await timed(
                            lambda a=adapter: a.agenerate(prompt="Find a therapist for Tuesday",
                                                          metadata={"session_id": "S1"})))
                    adapter.flush_langfuse(timeout=30)   # its background work, in its own CPU
                    cpu[name] += time.process_time() - started
            for adapter in adapters.values():
                adapter.flush_langfuse(timeout=30)
            down = adapters["store + Langfuse down"].telemetry
            kept = down.langfuse.state().pending if down.langfuse else 0
    finally:
        sim.terminate()
        langfuse.terminate()
    base_p50 = statistics.median(samples["recording off"])
    base_cpu = cpu["recording off"]
    per_call = calls // rounds * rounds
    print(f"{'recording':24} {'p50 ms':>8} {'added p50':>10} {'CPU ms/call':>12} {'added CPU':>10}")
    for name, values in samples.items():
        p50 = statistics.median(values)
        c = cpu[name] * 1000 / per_call
        print(f"{name:24} {p50:8.2f} {p50 - base_p50:+10.2f} {c:12.2f} "
              f"{c - base_cpu * 1000 / per_call:+10.2f}")
    print(f"\nwhile Langfuse was down {kept} call(s) waited in the store's outbox "
          "(delivered when it is back)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds))
