"""The command line, the offline demo and the examples, as a user runs them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from adapters.llm._cli.main import main

from .waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
KEYS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY")


@pytest.fixture
def no_keys(monkeypatch):
    for var in KEYS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(ROOT)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_help_and_models_do_not_import_litellm():
    code = ("import sys; from adapters.llm._cli.main import main\n"
            "try: main(['models', '--json'])\n"
            "except SystemExit: pass\n"
            "print('litellm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True)
    assert out.stdout.strip().endswith("False")


def test_models_json_shows_which_keys_are_missing(no_keys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-openai-000111")
    code, out = run("models", "--json", "--env", "production")
    assert code == 0
    rows = {r["group"]: r for r in json.loads(out)}
    assert rows["claude-sonnet"]["key_env"] == "ANTHROPIC_API_KEY"
    assert rows["claude-sonnet"]["key_present"] is False
    assert rows["gpt-4-fallback"]["key_present"] is True
    assert rows["claude-sonnet"]["fallbacks"] == ["gpt-4-fallback", "gemini-fallback"]
    assert "sk-test-openai-000111" not in out


def test_doctor_fails_without_keys_and_names_the_fix(no_keys):
    code, out = run("doctor", "--json", "--env", "production")
    assert code == 1
    failed = [c for c in json.loads(out) if not c["ok"]]
    assert {c["check"] for c in failed} == {"key for claude-sonnet-primary",
                                            "key for gpt-4-fallback-1", "key for gemini-fallback-1"}
    assert all("export" in c["fix"] for c in failed)


def test_doctor_reports_a_bad_config(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list: []\n")
    code, out = run("doctor", "--json", "--config", str(bad))
    assert code == 1 and "model_list" in json.loads(out)[0]["detail"]


def test_doctor_checks_the_hedging_config(tmp_path):
    def hedging(value: str) -> tuple[int, dict]:
        path = tmp_path / "hedged.yaml"
        path.write_text("model_list:\n  - model_name: m\n    litellm_params: {model: "
                        f"ollama/llama3}}\nrouter_settings:\n  hedging: {value}\n")
        code, out = run("doctor", "--json", "--config", str(path))
        checks = {c["check"]: c for c in json.loads(out)}
        return code, checks.get("hedging", checks["config"])

    _, check = hedging("{after_percentile: p95}")
    assert check["ok"], check
    assert check["detail"] == ("after the group's p95 (2000 ms until 20 answers are seen), "
                               "at most 1 extra per call")
    code, check = hedging("{after_ms: 500, after_percentile: 95}")     # the config fails to load
    assert code == 1 and not check["ok"] and check["check"] == "config"
    assert "router_settings.hedging: set one of after_ms and after_percentile" in check["detail"]
    assert hedging("null")[1]["detail"] == "off"


def test_doctor_ping_in_simulation(no_keys):
    # --json is for a pipe: stdout alone (a log line litellm writes to stderr is not in it).
    result = CliRunner().invoke(main, ["doctor", "--ping", "--json", "--env", "simulation"])
    code, out = result.exit_code, result.stdout
    checks = json.loads(out)
    pings = [c for c in checks if c["check"].startswith("ping ")]
    assert code == 0, out
    assert len(pings) == 3 and all(c["ok"] for c in pings)
    assert {c["check"] for c in pings} == {"ping claude-sonnet-primary", "ping gpt-4-fallback-1",
                                           "ping gemini-fallback-1"}, "the profile's chain"
    unused = [c for c in checks if c["check"] == "ping"]
    assert unused[0]["level"] == "info" and "ollama-local-1" in unused[0]["detail"]


def test_chat_json_and_stream(no_keys):
    code, out = run("chat", "Hello there", "--json", "--env", "simulation")
    assert code == 0, out
    answer = json.loads(out)
    assert "Hello there" in answer["content"] and answer["model"] == "claude-sonnet"
    assert answer["attempts"][-1]["outcome"] == "ok" and answer["cost"] > 0
    code, out = run("chat", "Stream this", "--stream", "--env", "simulation")
    assert code == 0 and "Stream this" in out and "latency" in out


def test_chat_with_unknown_model_is_a_clear_error(no_keys):
    code, out = run("chat", "x", "--model", "gpt-5", "--env", "simulation")
    assert code != 0 and "claude-sonnet" in out


def test_demo_runs_offline(no_keys):
    code, out = run("demo", "--fast")
    assert code == 0, out
    assert "goes down" in out and "gpt-4-fallback" in out and "cooldown" in out
    assert "One request stalls" in out and "hedge_lost" in out and "A hedge answered" in out
    assert ", 1 hedged," in out
    assert "tool" in out and "book_appointment" in out


def test_simulate_serves_until_stopped():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "adapters.llm", "simulate", "--port", str(port),
                             "--scenario", "primary=down"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def health() -> dict | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    return json.loads(r.read())
            except OSError:
                return None

        wait_until(health, timeout=10, interval=0.1,
                   what=f"`llm-adapter simulate` serving /health on port {port}")
        assert (health() or {}).get("status") == "ok"
        scenarios = json.loads(urllib.request.urlopen(
            f"http://127.0.0.1:{port}/control/scenarios", timeout=1).read())
        assert scenarios["primary"]["faults"][0]["status"] == 503
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_examples_run_in_simulation(no_keys):
    scripts = sorted(str(p) for p in (ROOT / "examples").glob("*.py"))
    code = "import runpy, sys\nfor path in sys.argv[1:]: runpy.run_path(path, run_name='__main__')"
    out = subprocess.run([sys.executable, "-c", code, *scripts], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "ENVIRONMENT": "simulation"}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "answered by claude-sonnet-primary" in out.stdout
    assert "tool call: book_appointment" in out.stdout
    assert "refused before sending" in out.stdout


def test_status_shows_cooldowns_limits_cache_and_budgets(no_keys, tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_ADAPTER_HOME", str(tmp_path / "home"))   # no other test's calls
    config = tmp_path / "status.yaml"
    config.write_text(
        (ROOT / "config" / "litellm_config.yaml").read_text() +
        "\nbudgets:\n  limits:\n    - {scope: user, limit: 5, period: day}\n")
    code, out = run("status", "--json", "--config", str(config), "--env", "simulation")
    assert code == 0, out
    current = json.loads(out)
    assert {d["deployment"] for d in current["deployments"]} >= {"claude-sonnet-primary"}
    assert all(d["state"] == "ok" for d in current["deployments"])
    assert current["limits"]["global"]["rpm"]["limit"] == 500
    assert current["cache"]["type"] == "local"
    assert current["budgets"][0]["limit"] == 5
