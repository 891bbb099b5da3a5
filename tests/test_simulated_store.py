"""Simulated calls (the demo's, environment ``simulation``) are recorded like any other, and the
reports leave their made-up spend out unless asked for: ``--simulated`` shows them."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from adapters.llm import load_config
from adapters.llm._cli.main import main
from adapters.llm._observability.telemetry import store_path

from .conftest import sim_deployment, unique

ROOT = Path(__file__).resolve().parent.parent

SIMULATED_CALLS = """\
from adapters.llm import LiteLLMAdapter

llm = LiteLLMAdapter(environment="simulation")
for text in ("Hello", "Who is free on Tuesday?"):
    print("CALL", llm.generate(prompt=text, system=llm.get_prompt("smart-scheduling-system-v1")
                               ).call_id)
llm.flush_langfuse()
"""


def real_config(name: str) -> dict:
    """A development config, not the simulation profile: group ``main`` on the simulator."""
    return {"model_list": [sim_deployment("main", name, key="sk-test-real-01", with_id=False)]}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("LLM_ADAPTER_HOME", str(home))
    return home


def cli(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it (a fresh process), for the demo."""
    env = {**os.environ, "LLM_ADAPTER_HOME": str(home)}
    env.pop("ENVIRONMENT", None)
    return subprocess.run([sys.executable, "-m", "adapters.llm", *args], capture_output=True,
                          text=True, timeout=120, env=env, cwd=cwd)


def report(home: Path, *args: str) -> Result:
    """A report command, in this process (reports read the store and import no litellm)."""
    assert os.environ["LLM_ADAPTER_HOME"] == str(home)
    return CliRunner().invoke(main, list(args))


def costs(home: Path, *args: str) -> dict:
    done = report(home, "costs", "--by", "provider", "--json", *args)
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def test_simulated_calls_stay_out_of_the_reports_of_real_ones(home: Path, tmp_path: Path,
                                                              make_adapter) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "LLM_ADAPTER_HOME": str(home), "ENVIRONMENT": "simulation"}
    done = subprocess.run([sys.executable, "-c", SIMULATED_CALLS], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    simulated_ids = [line.split()[1] for line in done.stdout.splitlines()
                     if line.startswith("CALL ")]
    assert len(simulated_ids) == 2
    with closing(sqlite3.connect(home / "calls.sqlite3")) as conn:
        assert {r[0] for r in conn.execute("SELECT call_id FROM calls")} == set(simulated_ids)
    assert costs(home)["total"]["calls"] == 0, "simulated spend is left out by default"

    real = make_adapter(real_config(unique("real")))     # a development call
    answer = real.generate(prompt="A real question")
    assert real.flush_langfuse() and answer.cost

    real_costs = costs(home)
    assert real_costs["total"]["calls"] == 1
    assert real_costs["total"]["cost"] == pytest.approx(answer.cost)
    assert [r["key"] for r in real_costs["rows"]] == ["openai"]
    for args in (("--simulated",), ("--env", "simulation")):
        simulated = costs(home, *args)
        assert simulated["total"]["calls"] == 2, args
        assert simulated["total"]["cost"] and simulated["total"]["cost"] != answer.cost
    stats = report(home, "stats", "--json")
    assert json.loads(stats.stdout)["calls"] == 1
    assert json.loads(report(home, "stats", "--json", "--simulated").stdout)["calls"] == 2

    listed = report(home, "traces", "--json")
    assert simulated_ids[0] not in listed.stdout and answer.call_id in listed.stdout
    assert simulated_ids[0] in report(home, "traces", "--json", "--simulated").stdout
    shown = report(home, "traces", "show", simulated_ids[1], "--json")   # asked for by its id
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["calls"][0]["environment"] == "simulation"


def test_where_each_profile_records(home: Path, tmp_path: Path) -> None:
    shipped = ROOT / "config" / "litellm_config.yaml"
    assert store_path(load_config(shipped, environment="simulation", load_dotenv=False)) == \
        home / "calls.sqlite3"
    assert store_path(load_config(shipped, environment="development", load_dotenv=False)) == \
        home / "calls.sqlite3"
    own = tmp_path / "own.yaml"
    own.write_text(shipped.read_text() + f"store: {{path: {tmp_path / 'mine.sqlite3'}}}\n")
    assert store_path(load_config(own, environment="simulation", load_dotenv=False)) == \
        tmp_path / "mine.sqlite3"


def test_the_demo_says_where_its_calls_went(home: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    done = cli(home, "demo", "--fast", cwd=work)
    assert done.returncode == 0, done.stdout + done.stderr
    where = home / "calls.sqlite3"
    assert str(where) in done.stdout.replace("\n", "")
    assert "--simulated" in done.stdout
    assert costs(home)["total"]["calls"] == 0, "the demo's spend is not reported as real"
    with closing(sqlite3.connect(where)) as conn:
        recorded = conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    assert f"{recorded} calls" in done.stdout
    assert costs(home, "--simulated")["total"]["calls"] == recorded
