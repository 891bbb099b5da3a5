"""Redis-outage benchmark: budgeted calls while Redis is healthy, hung (SIGSTOP) and gone.

    python bench/bench_outage.py [--seconds 5]

A private ``redis-server`` and the provider simulator; one adapter with a budget. Each phase
makes sequential ``agenerate`` calls for ``--seconds`` on one event loop while a ticker task on
the same loop ticks every 10 ms, and prints calls/s (answered or refused) and the ticks seen
as a share of those due: a loop that is never stalled sees ~100 %. While Redis is away every
budgeted call is refused (fail closed), so calls/s there is how fast refusal is.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from adapters.llm import LiteLLMAdapter, LLMAdapterError, load_config  # noqa: E402
from adapters.llm._traffic.policies import PolicyPool  # noqa: E402
from adapters.llm.simulator import Simulator  # noqa: E402


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    import redis

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    binary = shutil.which("redis-server")
    assert binary, "redis-server is needed"
    proc = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.RedisError:
            time.sleep(0.025)
    client.close()
    return proc, f"redis://127.0.0.1:{port}/0"


async def phase(llm: LiteLLMAdapter, seconds: float) -> tuple[float, float, int]:
    """(calls/s, share of ticks seen, calls refused)."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    calls = refused = 0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            await llm.agenerate(prompt="hello", metadata={"user_id": "bench"})
        except LLMAdapterError:         # BackendUnavailable while Redis is away
            refused += 1
        calls += 1
        await asyncio.sleep(0)
    elapsed = time.monotonic() - started
    task.cancel()
    return calls / elapsed, ticks / (elapsed / 0.01), refused


async def main(seconds: float) -> None:
    logging.disable(logging.WARNING)        # one warning per outage; not the measurement
    proc, url = start_redis()
    os.environ["REDIS_URL"] = url
    os.environ["LLM_ADAPTER_HOME"] = tempfile.mkdtemp(prefix="bench-outage-")
    try:
        with Simulator() as sim:
            path = Path(tempfile.mkdtemp()) / "config.yaml"
            path.write_text(textwrap.dedent(f"""
                model_list:
                  - model_name: main
                    litellm_params: {{model: openai/gpt-4o, api_base: "{sim.url}/s/bench", api_key: sk-bench-0001}}
                budgets:
                  limits:
                    - {{scope: user, limit: 1000000, period: day}}
                """))
            llm = LiteLLMAdapter(config=load_config(path, load_dotenv=False),
                                 policies=PolicyPool())
            await llm.agenerate(prompt="warm up", metadata={"user_id": "bench"})
            results = {"healthy": await phase(llm, seconds)}
            proc.send_signal(signal.SIGSTOP)
            results["hung (SIGSTOP)"] = await phase(llm, seconds)
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait()
            results["gone (killed)"] = await phase(llm, seconds)
    finally:
        if proc.poll() is None:
            proc.kill()
    healthy = results["healthy"][0]
    print(f"{'Redis':<16} {'calls/s':>9} {'× healthy':>10} {'refused':>8} {'loop ticks':>11}")
    for name, (rate, ticks, refused) in results.items():
        print(f"{name:<16} {rate:>9.0f} {rate / healthy:>10.2f} {refused:>8} {ticks:>10.0%}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    asyncio.run(main(parser.parse_args().seconds))
