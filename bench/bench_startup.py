"""Start-up benchmark: a fresh process's first answer, adapter against bare litellm, same run.

    python bench/bench_startup.py [--runs 7]

Each run starts fresh interpreters, in an order that alternates from run to run, against the
provider simulator (its own process, zero added latency):

- bare litellm: ``import litellm`` + the first ``litellm.completion`` answer (the baseline);
- the adapter: ``LiteLLMAdapter(config_path=...)`` + the first ``generate`` answer (store on,
  Langfuse off), timed from before construction and, separately, from before
  ``import adapters.llm``;
- the adapter built at an application's start-up, its first call made ``--idle`` seconds later:
  that call's own latency (the background import had the idle time).

Prints the median of each and the median of the per-run ratios adapter / bare (goal: ≤ 1.0),
and the CPU seconds of each (all threads; steadier than wall time on a busy machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_core import free_port, start_simulator  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

BARE = """
import json, sys, time
t0, c0 = time.perf_counter(), time.process_time()
import litellm
litellm.completion(model="openai/gpt-4o", api_base=sys.argv[1] + "/s/bench-bare",
                   api_key="sk-bench-0001", messages=[{"role": "user", "content": "Hello"}])
print(json.dumps({"first_answer": time.perf_counter() - t0, "cpu": time.process_time() - c0}))
"""

ADAPTER = """
import json, sys, time
t0 = time.perf_counter()
from adapters.llm import LiteLLMAdapter
t1, c1 = time.perf_counter(), time.process_time()
llm = LiteLLMAdapter(config_path=sys.argv[1], enable_langfuse=False)
idle = float(sys.argv[2])
if idle:
    time.sleep(idle)                      # the application's own start-up, then traffic
t2 = time.perf_counter()
llm.generate(prompt="Hello", timeout=120)
t3 = time.perf_counter()
print(json.dumps({"first_answer": t3 - t1, "with_package_import": t3 - t0, "first_call": t3 - t2,
                  "cpu": time.process_time() - c1}))
"""


def config_file(url: str, directory: Path) -> Path:
    path = directory / "startup_config.yaml"
    path.write_text(textwrap.dedent(f"""
        model_list:
          - model_name: primary
            litellm_params: {{model: openai/gpt-4o, api_base: "{url}/s/bench-primary", api_key: sk-bench-0002}}
            model_info: {{id: bench-primary}}
          - model_name: backup
            litellm_params: {{model: openai/gpt-4o, api_base: "{url}/s/bench-backup", api_key: sk-bench-0003}}
            model_info: {{id: bench-backup}}
        fallbacks: [primary, backup]
        store: {{enabled: true, path: "{directory / 'calls.sqlite3'}"}}
    """))
    return path


def fresh(code: str, *args: str, home: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LLM_ADAPTER_HOME": str(home),
           "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=300, cwd=home)
    if done.returncode != 0:
        raise SystemExit(f"a benchmark process failed:\n{done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--idle", type=float, default=10.0,
                        help="seconds between construction and the first call (last row)")
    args = parser.parse_args()
    port = free_port()
    simulator = start_simulator(port)
    url = f"http://127.0.0.1:{port}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            config = str(config_file(url, home))
            rows: dict[str, list[float]] = {k: [] for k in (
                "bare", "adapter", "adapter_pkg", "idle_first_call", "bare_cpu",
                "adapter_cpu")}
            ratios: list[float] = []
            for run in range(args.runs):
                paths = [("bare", lambda: fresh(BARE, url, home=home)),
                         ("adapter", lambda: fresh(ADAPTER, config, "0", home=home))]
                got: dict[str, dict[str, float]] = {}
                for name, measure in (paths if run % 2 == 0 else paths[::-1]):
                    got[name] = measure()
                idle = fresh(ADAPTER, config, str(args.idle), home=home)
                rows["bare"].append(got["bare"]["first_answer"])
                rows["adapter"].append(got["adapter"]["first_answer"])
                rows["adapter_pkg"].append(got["adapter"]["with_package_import"])
                rows["idle_first_call"].append(idle["first_call"])
                rows["bare_cpu"].append(got["bare"]["cpu"])
                rows["adapter_cpu"].append(got["adapter"]["cpu"])
                ratios.append(got["adapter"]["first_answer"] / got["bare"]["first_answer"])
                print(f"run {run + 1}: bare {got['bare']['first_answer']:.2f} s, adapter "
                      f"{got['adapter']['first_answer']:.2f} s "
                      f"({got['adapter']['with_package_import']:.2f} s with the package "
                      f"import), first call {args.idle:g} s after construction "
                      f"{idle['first_call']:.3f} s", flush=True)
    finally:
        simulator.kill()
        simulator.wait()
    med = {k: statistics.median(v) for k, v in rows.items()}
    pkg_ratio = statistics.median(a / b for a, b in zip(rows["adapter_pkg"], rows["bare"]))
    print(f"\n| fresh process, first answer ({args.runs} runs) | median s | × bare litellm |")
    print("|---|---|---|")
    print(f"| bare: `import litellm` + first `litellm.completion` | {med['bare']:.2f} | 1.00 |")
    print(f"| adapter: construct + first `generate` | {med['adapter']:.2f} | "
          f"{statistics.median(ratios):.2f} |")
    print(f"| adapter: `import adapters.llm` + construct + first `generate` | "
          f"{med['adapter_pkg']:.2f} | {pkg_ratio:.2f} |")
    print(f"| adapter built {args.idle:g} s earlier: the first call alone | "
          f"{med['idle_first_call']:.3f} | "
          f"{med['idle_first_call'] / med['bare']:.3f} |")
    cpu_ratio = statistics.median(a / b for a, b in zip(rows["adapter_cpu"], rows["bare_cpu"]))
    print(f"| CPU seconds (all threads): bare {med['bare_cpu']:.2f}, adapter construct + "
          f"first `generate` {med['adapter_cpu']:.2f} | | {cpu_ratio:.2f} |")
    print(f"\nper-run ratios adapter / bare: {', '.join(f'{r:.2f}' for r in ratios)}")


if __name__ == "__main__":
    main()
