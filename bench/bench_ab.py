"""Two revisions of the package in one process, called in turn: what a change costs per call.

    python bench/bench_ab.py REV_A REV_B [--calls 2000]

A run of ``bench_core.py`` on a shared machine moves by more than a 5 % budget between hours,
and the adapter's overhead does not stay a fraction of the Router's time when the machine
slows down. Here both revisions run in the same process at the same moment: each is exported
(``git archive``) under a package name of its own, and the bare Router, both revisions with
recording off and both with the store and Langfuse on are called in turn, call by call, in a
rotating order. Printed: the main thread's CPU per call of B against A, and of each against
the bare Router, as the mean of the per-call differences ± its standard error.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import bench_core as core  # noqa: E402

# What names the package inside itself: the public classes' module, the recording process.
_RENAMED = (("llm/__init__.py", '__module__ = "adapters.llm"'),
            ("llm/_observability/recording_process.py", '"from adapters.llm._observability'))


def export(rev: str, name: str, into: Path) -> None:
    """``adapters`` of ``rev`` as the package ``name`` under ``into``."""
    archive = subprocess.run(["git", "archive", rev, "adapters"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    package = into / name
    (into / "adapters").rename(package)
    for file, text in _RENAMED:
        path = package / file
        source = path.read_text()
        if text not in source:
            raise SystemExit(f"{rev}: {file} no longer holds {text!r}; update _RENAMED")
        path.write_text(source.replace(text, text.replace("adapters.llm", f"{name}.llm")))


def adapters(module: ModuleType, url: str, directory: Path) -> tuple[Any, Any]:
    """(recording off, store + Langfuse on) adapters of one revision."""
    directory.mkdir()
    off = module.load_config(core.config_file(url, directory, store=False), load_dotenv=False)
    on = module.load_config(core.config_file(url, directory), load_dotenv=False)
    return (module.LiteLLMAdapter(config=off, model="solo"),
            module.LiteLLMAdapter(config=on, model="solo", enable_langfuse=True))


async def alternate(paths: dict[str, Callable[[], Awaitable[object]]], calls: int
                    ) -> dict[str, list[float]]:
    """Main-thread CPU (µs) of each path's calls, the paths called in turn, order rotating."""
    for call in paths.values():
        for _ in range(30):             # lazy imports, connection pools
            await call()
    await asyncio.sleep(1.0)
    names = list(paths)
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for i in range(calls):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            started = time.thread_time_ns()
            await paths[name]()
            cpu[name].append((time.thread_time_ns() - started) / 1e3)
    return cpu


def difference(a: list[float], b: list[float]) -> str:
    """The per-call differences' mean ± its standard error, and their mean with the highest
    and lowest 5 % left out: a collection of the older generations (tens of ms, once every few
    hundred calls, whichever call it lands in) moves the plain mean by more than a change."""
    each = sorted(x - y for x, y in zip(a, b, strict=True))
    cut = len(each) // 20
    trimmed = each[cut:len(each) - cut]
    return (f"{statistics.fmean(each):+7.0f} ± {statistics.stdev(each) / math.sqrt(len(each)):3.0f}"
            f"   trimmed {statistics.fmean(trimmed):+6.0f} ± "
            f"{statistics.stdev(trimmed) / math.sqrt(len(trimmed)):3.0f}")


async def main(rev_a: str, rev_b: str, calls: int) -> None:
    port, langfuse_port = core.free_port(), core.free_port()
    url = f"http://127.0.0.1:{port}"
    simulator, langfuse = core.start_simulator(port), core.start_langfuse(langfuse_port)
    os.environ.update(LANGFUSE_PUBLIC_KEY=core.PUBLIC, LANGFUSE_SECRET_KEY=core.SECRET,
                      LANGFUSE_BASE_URL=f"http://127.0.0.1:{langfuse_port}")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp:
            where = Path(tmp)
            export(rev_a, "adapters_a", where)
            export(rev_b, "adapters_b", where)
            sys.path.insert(0, str(where))
            a = importlib.import_module("adapters_a.llm")
            b = importlib.import_module("adapters_b.llm")
            lt = importlib.import_module("adapters_a.llm._routing.litellm").litellm()
            router = lt.Router(model_list=[{"model_name": "solo", "litellm_params": {
                "model": "openai/gpt-4o", "api_base": f"{url}/s/bench-solo", "api_key": "sk-b"}}])
            a_off, a_on = adapters(a, url, where / "a")
            b_off, b_on = adapters(b, url, where / "b")
            messages = core.MESSAGES
            cpu = await alternate({
                "Router": lambda: router.acompletion(model="solo", messages=messages),
                "A off": lambda: a_off.agenerate(messages=messages),
                "B off": lambda: b_off.agenerate(messages=messages),
                "A on": lambda: a_on.agenerate(messages=messages),
                "B on": lambda: b_on.agenerate(messages=messages)}, calls)
            for adapter in (a_off, a_on, b_off, b_on):
                adapter.close()
    finally:
        simulator.terminate()
        langfuse.terminate()
    print(f"main-thread CPU per call, µs (mean of {calls} differences ± standard error); "
          f"bare Router median {statistics.median(cpu['Router']):.0f} µs")
    print(f"  B - A, recording off:           {difference(cpu['B off'], cpu['A off'])}")
    print(f"  B - A, store + Langfuse:        {difference(cpu['B on'], cpu['A on'])}")
    for name in ("A off", "B off", "A on", "B on"):
        print(f"  {name:6} over the bare Router:   {difference(cpu[name], cpu['Router'])}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev_a")
    parser.add_argument("rev_b")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.rev_a, args.rev_b, args.calls))
