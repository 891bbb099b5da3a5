"""What a call that releases the GIL costs concurrent calls: bare Router calls at concurrency 32.

    python bench/bench_gil.py [--each 20] [--rounds 8]

litellm builds each request on an executor thread, so at concurrency 32 a Python thread is
nearly always waiting for the GIL. A system call on the event loop's thread (``os.urandom``,
``os.write``) releases it; the waiting thread takes it, and the loop gets it back only after
that thread lets go. This runs the bare Router at concurrency 32 as it is, with ``--each``
``os.urandom(16)`` before each call, with as many ``random.getrandbits(128)`` (no system call)
and with as many non-blocking 100-byte pipe writes, interleaved round by round, and prints
calls/s against the plain Router of the same round and the cost of one such call in µs of
throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_core as core  # noqa: E402


async def main(each: int, rounds: int) -> None:
    port = core.free_port()
    url = f"http://127.0.0.1:{port}"
    simulator = core.start_simulator(port)
    read, write = os.pipe()
    os.set_blocking(write, False)
    try:
        from adapters.llm._routing.litellm import litellm as load_litellm

        router = load_litellm().Router(model_list=[{"model_name": "solo", "litellm_params": {
            "model": "openai/gpt-4o", "api_base": f"{url}/s/bench-solo", "api_key": "sk-b"}}])

        async def call() -> None:
            await router.acompletion(model="solo", messages=core.MESSAGES)

        async def urandom() -> None:
            for _ in range(each):
                os.urandom(16)
            await call()

        async def getrandbits() -> None:
            for _ in range(each):
                random.getrandbits(128)
            await call()

        async def pipe_write() -> None:
            for _ in range(each):
                os.write(write, b"x" * 100)
            os.read(read, 1 << 16)
            await call()

        paths: dict[str, Callable[[], Awaitable[None]]] = {
            "Router": call, f"+ {each} os.urandom": urandom,
            f"+ {each} getrandbits": getrandbits, f"+ {each} pipe writes": pipe_write}
        for path in paths.values():
            for _ in range(20):
                await path()
        rates = await core.throughputs(paths, 32, 160, {}, rounds)
    finally:
        simulator.terminate()
        simulator.wait()
        os.close(read)
        os.close(write)
    bare = rates["Router"]
    print(f"bare Router at c=32: {statistics.median(bare):.1f} calls/s (median of {rounds} rounds)")
    for name, values in rates.items():
        if name == "Router":
            continue
        ratio = core.paired(values, bare, lambda v, b: v / b).median
        per_call_us = (1 / ratio - 1) * 1e6 / statistics.median(bare)
        print(f"  {name:24} {ratio:.3f}x the Router's calls/s: "
              f"{per_call_us / each:+.0f} µs of throughput each")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--each", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(main(args.each, args.rounds))
