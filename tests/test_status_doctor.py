"""``status`` says whose state it shows and fills in what the store knows; ``doctor`` judges
what the active profile uses; ``models`` and ``prompts promote`` tell the truth."""

from __future__ import annotations

import json
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from adapters.llm._cli.main import main
from adapters.llm._observability.records import Attempt, CallRecord, Usage
from adapters.llm._observability.store import LocalStore

ROOT = Path(__file__).resolve().parent.parent
KEYS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY")
CONFIG = textwrap.dedent("""\
    model_list:
      - model_name: claude-sonnet
        litellm_params: {model: anthropic/claude-sonnet-4-5-20250929,
                         api_key: os.environ/ANTHROPIC_API_KEY}
        model_info: {id: primary}
      - model_name: gpt-4-fallback
        litellm_params: {model: openai/gpt-4o, api_key: os.environ/OPENAI_API_KEY}
        model_info: {id: secondary}
    fallbacks: [claude-sonnet, gpt-4-fallback]
    router_settings: {cooldown_time: 600, allowed_fails: 0, rpm: 500}
    budgets:
      limits:
        - {scope: user, limit: 5, period: day}
        - {scope: agent, id: matching, limit: 50, period: month}
        - {scope: tag, limit: 20, period: week}
        - {scope: environment, limit: 100, period: total}
    alerts:
      rules:
        - {name: errors, metric: error_rate, above: 0.2, window: 1h, min_calls: 3}
        - {name: spend, metric: cost, above: 0.5, window: day}
    environments:
      simulation: {default_model: claude-sonnet, simulator: true, langfuse: {enabled: false}}
    """)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLM_ADAPTER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REDIS_URL", raising=False)
    for key in KEYS:
        monkeypatch.delenv(key, raising=False)
    # its own store path: adapters of one config share their telemetry within a process
    (tmp_path / "config.yaml").write_text(
        CONFIG + f"store: {{path: {tmp_path / 'home' / 'calls.sqlite3'}}}\n")
    return tmp_path


def run(*args: str, width: int = 120) -> tuple[int, str]:
    result = CliRunner(env={"COLUMNS": str(width)}).invoke(main, list(args))
    return result.exit_code, result.output


def call(n: int, *, ago: float, ok: bool, cost: float | None, user: str, agent: str | None,
         tags: tuple[str, ...] = (), env: str = "simulation") -> CallRecord:
    started = time.time() - ago
    failed = Attempt("primary", "claude-sonnet", "anthropic", "error", "ServiceUnavailable", 503,
                     15.0, "overloaded")
    answer = Attempt("secondary", "gpt-4-fallback", "openai", "ok", None, None, 800.0)
    return CallRecord(
        call_id=f"a{n:031x}", trace_id=f"b{n:031x}", span_id=f"{n:016x}", parent_span_id=None,
        started_at=started, ended_at=started + 1, environment=env, model_group="claude-sonnet",
        status="ok" if ok else "error", latency_ms=1000, deployment="secondary" if ok else
        "primary", provider="openai", provider_model="gpt-4o", error_kind=None if ok else
        "ServiceUnavailable", error_message=None, usage=Usage(input_tokens=100, output_tokens=10),
        cost=cost, user_id=user, agent=agent, tags=tags,
        attempts=[failed, answer] if ok else [failed])


def seed(home: Path, calls: list[CallRecord]) -> None:
    store = LocalStore(home / "home" / "calls.sqlite3")
    for c in calls:
        store.write(c)
    store.close()
    assert store.written == len(calls)


def test_a_fresh_status_process_says_its_state_is_per_process_and_reads_the_store(home: Path):
    seed(home, [
        call(1, ago=20, ok=True, cost=0.25, user="alice", agent="matching", tags=("urgent",)),
        call(2, ago=30, ok=True, cost=0.125, user="alice", agent="triage"),
        call(3, ago=40, ok=False, cost=None, user="bob", agent="matching"),
        call(4, ago=86400 * 40, ok=True, cost=7.0, user="alice", agent="matching"),  # long ago
        call(5, ago=50, ok=True, cost=1.0, user="carol", agent=None, env="production"),
    ])
    config = str(home / "config.yaml")
    code, out = run("status", "--config", config, "--env", "simulation")
    assert code == 0, out
    assert "per process (no Redis)" in out.splitlines()[0]
    code, out = run("status", "--json", "--config", config, "--env", "simulation")
    assert code == 0, out
    status = json.loads(out)
    assert status["shared_state"] == "this process only"

    deployments = {d["deployment"]: d for d in status["deployments"]}
    assert deployments["primary"]["recent_failures"] == 3        # calls 1, 2 and 3
    assert deployments["primary"]["state"] == "cooling (per the store)"
    assert 500 < deployments["primary"]["expires_in_s"] <= 600 - 19
    assert deployments["secondary"] == {**deployments["secondary"], "state": "ok",
                                        "recent_failures": 0}

    assert status["limits"]["global"]["rpm"] == {"used": 3, "limit": 500}, "the last minute"

    budgets = {(b["scope"], b["id"]): b for b in status["budgets"]}
    assert budgets[("user", "alice")]["spent"] == pytest.approx(0.375)      # not call 4's $7
    assert budgets[("user", "bob")]["spent"] == 0
    assert budgets[("agent", "matching")]["spent"] == pytest.approx(0.25)
    assert budgets[("tag", "urgent")]["spent"] == pytest.approx(0.25)
    assert budgets[("environment", "simulation")]["spent"] == pytest.approx(7.375)  # total
    assert ("user", "carol") not in budgets, "another environment's spend"
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    month = (today.replace(day=1) + timedelta(days=32)).replace(day=1)
    monday = today + timedelta(days=7 - today.weekday())
    assert budgets[("user", "alice")]["resets_at"] == (today + timedelta(days=1)).isoformat()
    assert budgets[("agent", "matching")]["resets_at"] == month.isoformat()
    assert budgets[("tag", "urgent")]["resets_at"] == monday.isoformat()
    assert budgets[("environment", "simulation")]["resets_at"] is None
    code, table = run("status", "--config", config, "--env", "simulation")
    assert "never (total)" in table and (today + timedelta(days=1)).strftime("%Y-%m-%d 00:00") \
        in table and "never " not in table.replace("never (total)", "")


def test_status_alerts_are_the_alerts_check_evaluation(home: Path):
    # 6 calls in the last hour, 2 failed (33 % > 20 %), $1.20 today (> $0.50): both fire
    seed(home, [call(n, ago=60 + n, ok=n % 3 != 0, cost=0.2, user="u", agent=None)
                for n in range(1, 7)])
    args = ("--config", str(home / "config.yaml"), "--env", "simulation")
    code, out = run("alerts", "check", "--json", *args)
    checked = json.loads(out)
    assert code == 1 and set(checked["firing"]) == {"errors", "spend"}
    code, out = run("status", "--json", *args)
    shown = {a["rule"]: a for a in json.loads(out)["alerts"]}
    assert {r for r, a in shown.items() if a["firing"]} == set(checked["firing"])
    assert [shown[r["rule"]]["value"] for r in checked["rules"]] == \
        [r["value"] for r in checked["rules"]]
    code, out = run("status", *args)
    assert code == 0 and out.count("FIRING") == 2


def test_doctor_in_development_informs_about_unused_groups(home: Path, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, out = run("doctor", "--json", "--env", "development")
    checks = {c["check"]: c for c in json.loads(out)}
    assert code == 0, out
    for dep in ("claude-sonnet-primary", "gpt-4-fallback-1", "gemini-fallback-1"):
        assert checks[f"key for {dep}"]["level"] == "info"
        assert "not used by the development profile" in checks[f"key for {dep}"]["detail"]
    assert checks["fallbacks"]["level"] == "info"
    assert "ollama-local has no fallback" in checks["fallbacks"]["detail"]
    code, out = run("doctor", "--json", "--env", "production")
    checks = {c["check"]: c for c in json.loads(out)}
    assert code == 1 and checks["key for claude-sonnet-primary"]["level"] == "fail"


def test_doctor_ping_calls_what_the_profile_uses(home: Path, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, out = run("doctor", "--ping", "--json", "--env", "production")
    pings = {c["check"]: c for c in json.loads(out) if c["check"].startswith("ping")}
    assert code == 1
    for dep, var in (("claude-sonnet-primary", "ANTHROPIC_API_KEY"),
                     ("gpt-4-fallback-1", "OPENAI_API_KEY"), ("gemini-fallback-1",
                                                              "GEMINI_API_KEY")):
        assert pings[f"ping {dep}"]["level"] == "fail"
        assert f"{var} is not set" in pings[f"ping {dep}"]["detail"]
    assert "ping ollama-local-1" not in pings
    assert pings["ping"]["level"] == "info" and "ollama-local-1" in pings["ping"]["detail"]


def test_doctor_production_checks_every_ab_variant_the_same_way_each_run(home: Path,
                                                                          monkeypatch):
    monkeypatch.chdir(ROOT)
    reports = []
    for _ in range(4):
        code, out = run("doctor", "--production", "--json")
        reports.append([c for c in json.loads(out) if c["check"].startswith("prompt ")])
    assert all(r == reports[0] for r in reports), "the A/B draw does not change the report"
    names = [c["check"] for c in reports[0]]
    assert "prompt smart-scheduling-matching [prod-a] in Langfuse" in names
    assert "prompt smart-scheduling-matching [prod-b] in Langfuse" in names
    assert "prompt smart-scheduling-system-v1 in Langfuse" in names


def test_models_in_simulation_needs_no_key(home: Path, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, out = run("models", "--env", "simulation", width=200)
    assert code == 0 and "not needed (simulated)" in out and " set" not in out
    rows = json.loads(run("models", "--json", "--env", "simulation")[1])
    claude = next(r for r in rows if r["group"] == "claude-sonnet")
    assert claude["key_present"] is False and claude["key_needed"] is False


def test_a_promote_that_changes_nothing_leaves_the_file_alone(tmp_path: Path):
    (tmp_path / "prompts").mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(f"model_list: [{{model_name: m, litellm_params: {{model: openai/gpt-4o}}}}]"
                      f"\nprompts: {{dir: {tmp_path / 'prompts'}}}\n")
    path = tmp_path / "prompts" / "p.yaml"
    path.write_text("# kept as written\nname: p\ntype: text\nversions:\n"
                    "  - {version: 1, labels: [production], prompt: 'one'}\n"
                    "  - {version: 2, labels: [], prompt: 'two'}\n")
    before = path.read_bytes(), path.stat().st_mtime_ns
    result = CliRunner().invoke(main, ["prompts", "promote", "p", "1", "--local",
                                       "--config", str(config)])
    assert result.exit_code == 0 and "already on v1" in result.output, result.output
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    result = CliRunner().invoke(main, ["prompts", "promote", "p", "2", "--local",
                                       "--config", str(config)])
    assert result.exit_code == 0 and "production → v2 (was v1)" in result.output
    assert path.read_bytes() != before[0]
