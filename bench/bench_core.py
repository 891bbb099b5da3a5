"""Gateway-core benchmark: what the adapter costs over raw HTTP, litellm and its Router.

    python bench/bench_core.py [--calls 600] [--rounds 10] [--c32-rounds 21]

One run measures everything against the provider simulator (a separate process, zero added
latency), interleaving the paths round by round so machine noise hits them alike, and prints
ratios against raw httpx and against the bare Router measured in the same run (the adapter's
paths route what the bare Router routes, one deployment: see ``config_file``):

- p50/p99 per call at concurrency 1, calls/s at concurrency 1 and 32, for raw httpx,
  ``litellm.acompletion``, ``Router.acompletion`` and ``LiteLLMAdapter.agenerate``;
- ``import adapters.llm`` time (fresh interpreters, best of 5);
- the primary hard down (HTTP 503): first call and later calls, adapter vs the fallback's own
  latency vs a bare Router with litellm's default settings;
- the SIGKILL window: a process making calls (store + Langfuse on) is killed, alone or with
  its recording process (as the end of a container kills both); how many of the calls it had
  answered are not in the store once its recording process ended and the next process opened
  the store, and how long before the kill the oldest of them was answered (early in a run,
  and in steady state at concurrency 1 and 32).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import NamedTuple

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.processes import children_of, wait_ended  # noqa: E402

MESSAGES = [{"role": "user", "content": "Find a therapist for Tuesday"}]
PUBLIC, SECRET = "pk-lf-bench", "sk-lf-bench"
Call = Callable[[], Awaitable[object]]
C32_CALLS = 160             # calls per path and round at concurrency 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _started(args: list[str], health_url: str, what: str) -> subprocess.Popen[bytes]:
    """Start a server process and return once ``health_url`` answers (10 s at most)."""
    proc = subprocess.Popen(args, cwd=Path(__file__).resolve().parent.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            urllib.request.urlopen(health_url, timeout=1)
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{what} did not start")


def start_simulator(port: int) -> subprocess.Popen[bytes]:
    return _started([sys.executable, "-m", "adapters.llm.simulator", "--port", str(port)],
                    f"http://127.0.0.1:{port}/health", "the simulator")


def start_langfuse(port: int) -> subprocess.Popen[bytes]:
    code = textwrap.dedent(f"""
        import time
        from tests.langfuse_server import LangfuseServer
        server = LangfuseServer(public_key={PUBLIC!r}, secret_key={SECRET!r}, port={port}).start()
        while True:
            time.sleep(3600)
    """)
    return _started([sys.executable, "-c", code], f"http://127.0.0.1:{port}/api/public/health",
                    "the loopback Langfuse")


def set_scenario(url: str, name: str, builtin: str) -> None:
    request = urllib.request.Request(f"{url}/control/scenarios/{name}", method="PUT",
                                     data=json.dumps({"use": builtin}).encode(),
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=5)


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1), by the package's one percentile definition."""
    from adapters.llm._percentiles import percentile

    return percentile(sorted(values), q * 100) or 0.0


async def timed(call: Call) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


async def sequential(paths: dict[str, Call], calls: int, rounds: int,
                     drains: Mapping[str, Callable[[], object]] | None = None
                     ) -> tuple[dict[str, list[list[float]]], dict[str, float]]:
    """Per-call wall times by round, and CPU ms per call (steadier than wall time on a busy
    machine). Every other round runs the paths in reverse order, so a drift of the machine's
    speed hits them alike, and a path is compared with the bare Router of the same round.

    A path with a drain (recording: the store's and Langfuse's background threads) is drained at
    the end of each of its rounds, inside its CPU count but outside its call timings: its
    background work lands in its own figures instead of spilling into the next path's round.
    """
    drains = drains or {}
    samples: dict[str, list[list[float]]] = {name: [] for name in paths}
    cpu: dict[str, float] = {name: 0.0 for name in paths}
    for call in paths.values():                 # warm-up: lazy imports, connection pools
        for _ in range(20):
            await call()
    await asyncio.sleep(1.0)                    # litellm's background imports after call 1
    per_round = max(calls // rounds, 1)
    for i in range(rounds):
        order = list(paths.items())
        for name, call in order if i % 2 == 0 else reversed(order):
            started = time.process_time()
            samples[name].append([await timed(call) for _ in range(per_round)])
            if name in drains:
                drains[name]()
            cpu[name] += time.process_time() - started
    return samples, {name: cpu[name] * 1000 / (per_round * rounds) for name in paths}


async def throughputs(paths: dict[str, Call], concurrency: int, total: int,
                      drains: Mapping[str, Callable[[], object]], rounds: int = 11,
                      cpu: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    """Calls/s per path and round: interleaved runs, every other round in reverse order, so a
    drift of the machine's speed during the run hits every path alike. A path's background
    work is drained after its run (untimed), not left to slow the next path's. ``cpu``, when
    given, gets each round's main-thread CPU per call in µs: at c=32 the calls share one
    interpreter, so that CPU is what bounds the calls/s, and it moves less than the rate."""
    runs: dict[str, list[float]] = {name: [] for name in paths}
    for i in range(rounds):
        order = list(paths.items())
        for name, call in order if i % 2 == 0 else reversed(order):
            started = time.thread_time()
            runs[name].append(await throughput(call, concurrency, total))
            if cpu is not None:
                cpu.setdefault(name, []).append((time.thread_time() - started) * 1e6 / total)
            if name in drains:
                drains[name]()
    return runs


class Paired(NamedTuple):
    """A path against the bare Router of the same round, over the rounds."""

    median: float
    lowest: float
    highest: float
    mean: float
    error: float            # standard error of the mean (0 with one round)


def paired(values: list[float], bare: list[float], compare: Callable[[float, float], float]
           ) -> Paired:
    """``compare(path, bare Router)`` round by round."""
    each = sorted(compare(v, b) for v, b in zip(values, bare, strict=True))
    error = statistics.stdev(each) / len(each) ** 0.5 if len(each) > 1 else 0.0
    return Paired(statistics.median(each), each[0], each[-1], statistics.mean(each), error)


async def throughput(call: Call, concurrency: int, total: int) -> float:
    queue = iter(range(total))

    async def worker() -> None:
        for _ in queue:
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - started)


def import_time() -> float:
    best = float("inf")
    for _ in range(5):
        out = subprocess.run([sys.executable, "-c",
                              "import time; t=time.perf_counter(); import adapters.llm; "
                              "print(time.perf_counter()-t)"], capture_output=True, text=True,
                             check=True)
        best = min(best, float(out.stdout.strip()))
    return best


def config_file(url: str, directory: Path, *, store: bool = True,
                routes: bool = True) -> Path:
    """The benchmark's config; ``routes=False``: the one deployment of the bare Router alone.

    The budget's paths take ``routes=False``, so the adapter's Router routes what the bare
    Router routes: a Router that also holds other groups and a fallback chain costs litellm
    ~0.4 ms of CPU a call more at c=32 (and ~0.7 ms of p50 at c=1) than the one-deployment
    Router, for the same call, and that is litellm's cost of the config, not the adapter's.
    The outage and the SIGKILL window use the groups and the fallback chain."""
    name = f"bench_config{'' if store else '_nostore'}{'' if routes else '_solo'}.yaml"
    routed = textwrap.dedent(f"""\
          - model_name: primary
            litellm_params: {{model: openai/gpt-4o, api_base: "{url}/s/bench-primary", api_key: sk-bench-0002}}
            model_info: {{id: bench-primary}}
          - model_name: backup
            litellm_params: {{model: openai/gpt-4o, api_base: "{url}/s/bench-backup", api_key: sk-bench-0003}}
            model_info: {{id: bench-backup}}
        fallbacks: [primary, backup]
    """) if routes else ""
    path = directory / name
    path.write_text(textwrap.dedent(f"""\
        model_list:
          - model_name: solo
            litellm_params: {{model: openai/gpt-4o, api_base: "{url}/s/bench-solo", api_key: sk-bench-0001}}
            model_info: {{id: bench-solo}}
    """) + routed + textwrap.dedent(f"""\
        router_settings: {{routing_strategy: simple-shuffle}}
        store: {{enabled: {str(store).lower()}, path: "{directory / 'calls.sqlite3'}"}}
    """))
    return path


async def outage(url: str, adapter: object, litellm: object) -> dict[str, float | list[float]]:
    """Primary hard down: adapter (our defaults) vs a bare Router with litellm's defaults."""
    set_scenario(url, "bench-primary", "down")
    agenerate = adapter.agenerate
    first = await timed(lambda: agenerate(prompt="x", model="primary"))
    later: list[float] = []
    own: list[float] = []
    for _ in range(200):                      # interleaved, so noise hits both alike
        later.append(await timed(lambda: agenerate(prompt="x", model="primary")))
        own.append(await timed(lambda: agenerate(prompt="x", model="backup")))
    default_router = litellm.Router(model_list=[
        {"model_name": "primary", "litellm_params": {"model": "openai/gpt-4o", "api_key": "sk-b",
                                                     "api_base": f"{url}/s/bench-down-default"}},
        {"model_name": "backup", "litellm_params": {"model": "openai/gpt-4o", "api_key": "sk-b",
                                                    "api_base": f"{url}/s/bench-backup"}}],
        fallbacks=[{"primary": ["backup"]}])
    set_scenario(url, "bench-down-default", "down")
    bare = [await timed(lambda: default_router.acompletion(model="primary", messages=MESSAGES))
            for _ in range(3)]
    return {"first": first, "later_p50": statistics.median(later), "own_p50": statistics.median(own),
            "bare_default": bare}


KILLED = textwrap.dedent("""
    import asyncio, sys, time
    from adapters.llm import LiteLLMAdapter, load_config
    llm = LiteLLMAdapter(config=load_config(sys.argv[1], load_dotenv=False), model="solo",
                         enable_langfuse=True)
    messages = [{"role": "user", "content": "Find a therapist for Tuesday"}]
    async def worker():
        while True:
            response = await llm.agenerate(messages=messages)
            sys.stdout.write(f"{response.call_id} {time.monotonic():.6f}\\n")
            sys.stdout.flush()
    async def run():
        await asyncio.gather(*(worker() for _ in range(int(sys.argv[2]))))
    asyncio.run(run())
""")


def killed_once(url: str, directory: Path, concurrency: int, answers: int,
                both: bool = False) -> tuple[int, float]:
    """Kill a calling process once it has answered ``answers`` calls (plus a random moment),
    with its recording process when ``both`` (the end of a container); returns (answered
    calls missing from its store, ms from the oldest of them to the kill)."""
    directory.mkdir()
    config = config_file(url, directory)
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(config), str(concurrency)],
                            cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    answered: dict[str, float] = {}
    extra = random.uniform(0, 0.05)
    until: float | None = None
    while True:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("the calling process ended before it was killed")
        call_id, at = line.split()
        answered[call_id] = float(at)
        if until is None and len(answered) >= answers:
            until = time.monotonic() + extra
        if until is not None and time.monotonic() >= until:
            break
    recording = children_of(proc.pid)
    killed_at = time.monotonic()
    for pid in recording if both else []:
        os.kill(pid, signal.SIGKILL)
    os.kill(proc.pid, signal.SIGKILL)
    rest, _ = proc.communicate(timeout=30)
    for line in rest.splitlines():
        call_id, at = line.split()
        answered[call_id] = float(at)
    wait_ended(recording)   # what it was handed it commits, then sees its caller gone
    subprocess.run([sys.executable, "-c", RECOVER, str(directory / "calls.sqlite3")],
                   cwd=Path(__file__).resolve().parent.parent, check=True, timeout=60)
    with sqlite3.connect(directory / "calls.sqlite3") as conn:
        stored = {row[0] for row in conn.execute("SELECT call_id FROM calls")}
    lost = [at for call_id, at in answered.items() if call_id not in stored]
    return len(lost), (killed_at - min(lost)) * 1000 if lost else 0.0


# The next process on the store: its writer replays what a killed one left in the journal.
RECOVER = textwrap.dedent("""
    import sys
    from adapters.llm._observability.store import LocalStore
    store = LocalStore(sys.argv[1])
    assert store.recover_pending()
    store.close()
""")


def sigkill_window(url: str, directory: Path, runs: int) -> dict[str, list[tuple[int, float]]]:
    cases = {"early (after 3 answers), c=1": (1, 3, False),
             "steady (after 300), c=1": (1, 300, False),
             "steady (after 600), c=32": (32, 600, False),
             "both, early (after 3), c=1": (1, 3, True),
             "both, steady (after 300), c=1": (1, 300, True),
             "both, steady (after 600), c=32": (32, 600, True)}
    results: dict[str, list[tuple[int, float]]] = {name: [] for name in cases}
    for run in range(runs):
        for name, (concurrency, answers, both) in cases.items():
            where = directory / f"kill-{run}-{concurrency}-{answers}{'-both' if both else ''}"
            results[name].append(killed_once(url, where, concurrency, answers, both))
    return results


async def main(calls: int, rounds: int, kill_runs: int, c32_rounds: int) -> None:
    port, langfuse_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_simulator(port)
    langfuse = start_langfuse(langfuse_port)
    os.environ.update(LANGFUSE_PUBLIC_KEY=PUBLIC, LANGFUSE_SECRET_KEY=SECRET,
                      LANGFUSE_BASE_URL=f"http://127.0.0.1:{langfuse_port}")
    try:
        import httpx

        from adapters.llm import LiteLLMAdapter, load_config
        from adapters.llm._routing.litellm import litellm as load_litellm

        lt = load_litellm()
        # Removed at exit after the adapters' own exit hook (registered later, so run
        # earlier) has drained their store: not under its feet.
        tmp = tempfile.mkdtemp(prefix="bench-core-")
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        config = load_config(config_file(url, Path(tmp), routes=False), load_dotenv=False)
        bare_config = load_config(config_file(url, Path(tmp), store=False, routes=False),
                                  load_dotenv=False)
        unrecorded = LiteLLMAdapter(config=bare_config, model="solo")
        adapter = LiteLLMAdapter(config=config, model="solo")   # local store on
        traced = LiteLLMAdapter(config=config, model="solo", enable_langfuse=True)
        routed = LiteLLMAdapter(config=load_config(config_file(url, Path(tmp)),
                                                   load_dotenv=False), model="solo")
        adapter.gateway  # noqa: B018 - built before measuring
        router = lt.Router(model_list=[{"model_name": "solo", "litellm_params": {
            "model": "openai/gpt-4o", "api_base": f"{url}/s/bench-solo", "api_key": "sk-b"}}])
        client = httpx.AsyncClient()
        body = {"model": "gpt-4o", "messages": MESSAGES}
        headers = {"Authorization": "Bearer sk-b"}
        paths: dict[str, Call] = {
            "raw httpx": lambda: client.post(f"{url}/s/bench-solo/chat/completions",
                                             json=body, headers=headers),
            "litellm.acompletion": lambda: lt.acompletion(
                model="openai/gpt-4o", messages=MESSAGES, api_base=f"{url}/s/bench-solo",
                api_key="sk-b"),
            "Router.acompletion": lambda: router.acompletion(model="solo", messages=MESSAGES),
            "adapter, recording off": lambda: unrecorded.agenerate(messages=MESSAGES),
            "LiteLLMAdapter.agenerate": lambda: adapter.agenerate(messages=MESSAGES),
            "adapter + Langfuse": lambda: traced.agenerate(messages=MESSAGES),
        }
        drains = {"LiteLLMAdapter.agenerate": lambda: adapter.flush_langfuse(timeout=30),
                  "adapter + Langfuse": lambda: traced.flush_langfuse(timeout=30)}
        samples, cpu = await sequential(paths, calls, rounds, drains)
        c1 = await throughputs(paths, 1, 100, drains)
        c32_cpu: dict[str, list[float]] = {}
        c32 = await throughputs(paths, 32, C32_CALLS, drains, c32_rounds, c32_cpu)
        rates = {name: (c1[name], c32[name]) for name in paths}
        for _ in range(20):                         # as warm as the measured paths
            await routed.agenerate(messages=MESSAGES)
        down = await outage(url, routed, lt)
        routed.close()
        traced.flush_langfuse(timeout=30)
        await client.aclose()
        window = sigkill_window(url, Path(tmp), kill_runs)
    finally:
        proc.terminate()
        langfuse.terminate()
        proc.wait()
    report(samples, cpu, rates, c32_cpu, down, import_time())
    report_window(window)


def report(samples: dict[str, list[list[float]]], cpu: dict[str, float],
           rates: dict[str, tuple[list[float], list[float]]], c32_cpu: dict[str, list[float]],
           down: dict[str, float | list[float]], imported: float) -> None:
    """The table (medians over all rounds), then the budget figures, each the path against
    the bare Router of the same round over the rounds: median, range, mean ± its error."""
    every = {name: [v for values in rounds for v in values] for name, rounds in samples.items()}
    raw = statistics.median(every["raw httpx"])
    bare = statistics.median(every["Router.acompletion"])
    print(f"{'path':26} {'p50 ms':>8} {'p99 ms':>8} {'x httpx':>8} {'x Router':>9} "
          f"{'CPU ms/call':>12} {'calls/s c1':>11} {'calls/s c32':>12}")
    for name, values in every.items():
        p50 = statistics.median(values)
        c1, c32 = (statistics.median(r) for r in rates[name])
        print(f"{name:26} {p50:8.2f} {pct(values, 0.99):8.2f} {p50 / raw:8.2f} "
              f"{p50 / bare:9.3f} {cpu[name]:12.2f} {c1:11.0f} {c32:12.0f}")
    rounds = len(samples["Router.acompletion"])
    print(f"\nover the bare Router, the median of {rounds} rounds (p50) and of "
          f"{len(rates['Router.acompletion'][1])} (c=32), each against the Router of its round "
          "[lowest, highest round]:")
    bare_p50 = [statistics.median(r) for r in samples["Router.acompletion"]]
    bare_c32 = rates["Router.acompletion"][1]
    bare_c32_cpu = c32_cpu["Router.acompletion"]
    for name, label in (("adapter, recording off", "recording off"),
                        ("LiteLLMAdapter.agenerate", "local store on"),
                        ("adapter + Langfuse", "store + Langfuse")):
        wall = paired([statistics.median(r) for r in samples[name]], bare_p50, lambda v, b: v - b)
        ratio = paired(rates[name][1], bare_c32, lambda v, b: v / b)
        used = paired(c32_cpu[name], bare_c32_cpu, lambda v, b: v - b)
        target = " (targets <= +0.5 ms, >= 0.95x)" if name == "adapter + Langfuse" else ""
        print(f"  {label:17} p50 {wall.median:+.2f} ms [{wall.lowest:+.2f}, {wall.highest:+.2f}] "
              f"(mean {wall.mean:+.2f} ± {wall.error:.2f}), c=32 {ratio.median:.3f}x "
              f"[{ratio.lowest:.3f}, {ratio.highest:.3f}] (mean {ratio.mean:.3f} ± "
              f"{ratio.error:.3f}), CPU {cpu[name] - cpu['Router.acompletion']:+.2f} ms/call"
              f"{target}")
        print(f"  {'':17} c=32 main-thread CPU {used.mean:+.0f} ± {used.error:.0f} µs/call "
              f"(median {used.median:+.0f}) over the Router's "
              f"{statistics.median(bare_c32_cpu):.0f}")
    print(f"import adapters.llm: {imported:.3f} s (target <= 0.3 s)")
    bare_default = down["bare_default"]
    assert isinstance(bare_default, list)
    later, own = float(down["later_p50"]), float(down["own_p50"])  # type: ignore[arg-type]
    print("\nprimary hard down (HTTP 503), fallback answers:")
    print(f"  adapter, first call:          {float(down['first']):8.1f} ms")  # type: ignore[arg-type]
    print(f"  adapter, later calls p50:     {later:8.2f} ms")
    print(f"  fallback's own latency p50:   {own:8.2f} ms   -> later calls cost {later - own:+.2f} ms "
          f"(target <= +1 ms)")
    print(f"  bare Router, litellm defaults: {', '.join(f'{v:.0f}' for v in bare_default)} ms per call "
          f"({statistics.median(bare_default) / later:.0f}x the adapter's later calls)")


def report_window(window: dict[str, list[tuple[int, float]]]) -> None:
    print("\nSIGKILL (store + Langfuse on) of the calling process, and of it with its "
          "recording process (both): answered calls missing from the store (target <= 5, or "
          "none older than 50 ms)")
    for name, results in window.items():
        lost = [n for n, _ in results]
        ages = [age for _, age in results]
        print(f"  {name:32} lost {', '.join(map(str, lost))} (max {max(lost)}); oldest lost "
              f"answered {max(ages):.0f} ms before the kill (runs: "
              f"{', '.join(f'{a:.0f}' for a in ages)})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--kill-runs", type=int, default=5, help="SIGKILL runs per case")
    parser.add_argument("--c32-rounds", type=int, default=21,
                        help=f"rounds of {C32_CALLS} calls per path at concurrency 32")
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds, args.kill_runs, args.c32_rounds))
