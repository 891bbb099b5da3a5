"""Every table of the command line at 80 and 120 columns: the figures the data holds are
shown whole, no line is wider than the terminal, and ``--wide`` shows every column.

The store below holds amounts chosen to need every precision ($12.84, $0.0123, $0.000123)
and names long enough to need shortening; the expected strings are written out by hand.
"""

from __future__ import annotations

import json
import re
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from adapters.llm._cli.main import main
from adapters.llm._observability.records import Attempt, CallRecord, Usage
from adapters.llm._observability.store import LocalStore
from adapters.llm._cli.views import fmt_cost

WIDTHS = (80, 120)
LONG = {"claude-sonnet": "claude-sonnet-primary-eu-west-1-deployment",
        "gpt-4-fallback": "gpt-4o-fallback-deployment-eu-central-1",
        "gemini-fallback": "gemini-flash-fallback-deployment-asia-1"}
CONFIG = textwrap.dedent("""\
    model_list:
      - model_name: claude-sonnet
        litellm_params: {model: anthropic/claude-sonnet-4-5-20250929,
                         api_key: os.environ/ANTHROPIC_API_KEY}
        model_info: {id: claude-sonnet-primary-eu-west-1-deployment}
      - model_name: gpt-4-fallback
        litellm_params: {model: openai/gpt-4o, api_key: os.environ/OPENAI_API_KEY}
        model_info: {id: gpt-4o-fallback-deployment-eu-central-1}
      - model_name: gemini-fallback
        litellm_params: {model: gemini/gemini-2.5-flash, api_key: os.environ/GEMINI_API_KEY}
        model_info: {id: gemini-flash-fallback-deployment-asia-1}
    fallbacks: [claude-sonnet, gpt-4-fallback, gemini-fallback]
    router_settings: {cooldown_time: 600, rpm: 500, tpm: 100000, cache: {type: local, ttl: 60}}
    budgets:
      limits:
        - {scope: user, limit: 50, period: day}
        - {scope: agent, id: matching, limit: 100, period: month}
        - {scope: environment, limit: 1000, period: week}
    alerts:
      rules:
        - {name: high-error-rate-of-the-scheduling-service, metric: error_rate, above: 0.05,
           window: 1h, min_calls: 2}
        - {name: daily-cost, metric: cost, above: 1000, window: day}
    prompts:
      dir: PROMPTS
    store:
      path: STORE
    environments:
      simulation: {default_model: claude-sonnet, simulator: true, langfuse: {enabled: false}}
      production: {default_model: claude-sonnet, langfuse: {enabled: false}}
    """)

# group, cost, latency ms, input tokens, user, agent, ok
CALLS = [("claude-sonnet", 12.34, 12345, 1_234_567, "alice", "matching", True),
         ("claude-sonnet", 0.50, 900, 100, "bob", "matching", True),
         ("gpt-4-fallback", 0.0123, 1100, 100, "alice", "triage", True),
         ("gemini-fallback", 0.000123, 700, 100, "carol", "triage", True),
         ("claude-sonnet", None, 300, 0, "carol", "triage", False)]
# Worked out by hand from CALLS.
FIGURES_BY_MODEL = ["$12.84", "$0.0123", "$0.000123", "$12.85"]
TOTAL_CALLS = "5"


def record(n: int, group: str, cost: float | None, latency: int, tokens: int, user: str,
           agent: str, ok: bool, now: float) -> CallRecord:
    deployment = LONG[group]
    failed = Attempt(LONG["claude-sonnet"], "claude-sonnet", "anthropic", "error",
                     "ServiceUnavailable", 503, 12.0, "overloaded")
    answer = Attempt(deployment, group, "openai", "ok", None, None, latency - 20.0)
    return CallRecord(
        call_id=f"f{n:031x}", trace_id=f"9{n:031x}", span_id=f"{n:016x}", parent_span_id=None,
        started_at=now - 30 - n, ended_at=now - 30 - n + latency / 1000,
        environment="simulation", model_group=group, status="ok" if ok else "error",
        latency_ms=latency, deployment=deployment if ok else LONG["claude-sonnet"],
        provider="openai", provider_model="gpt-4o", error_kind=None if ok else
        "ServiceUnavailable", error_message=None if ok else "overloaded",
        usage=Usage(input_tokens=tokens, output_tokens=10), cost=cost, user_id=user,
        session_id="S-tables", agent=agent, trace_name="Tables",
        input=[{"role": "user", "content": f"question {n}"}], output=f"answer {n}" if ok else None,
        attempts=[answer] if ok and group == "claude-sonnet" else
        [failed, answer] if ok else [failed])


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tables")
    (root / "prompts").mkdir()
    long_line = "You match therapists to patients; " * 12
    (root / "prompts" / "matching.yaml").write_text(textwrap.dedent(f"""\
        name: matching
        type: text
        versions:
          - version: 1
            labels: [production]
            prompt: "{long_line}v1 {{{{skills}}}}"
          - version: 2
            labels: [latest]
            prompt: "{long_line}v2 {{{{skills}}}}"
        """))
    (root / "config.yaml").write_text(CONFIG.replace("PROMPTS", str(root / "prompts"))
                                      .replace("STORE", str(root / "home" / "calls.sqlite3")))
    store = LocalStore(root / "home" / "calls.sqlite3")
    now = time.time()
    for n, call in enumerate(CALLS):
        store.write(record(n, *call, now=now))
    store.close()
    assert store.written == len(CALLS)
    return root


@pytest.fixture
def env(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLM_ADAPTER_HOME", str(project / "home"))
    monkeypatch.delenv("REDIS_URL", raising=False)
    for key in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    return project


def show(width: int, *args: str) -> str:
    result = CliRunner(env={"COLUMNS": str(width)}).invoke(main, list(args))
    assert result.exit_code in (0, 1), result.output
    return result.output


def assert_whole(figure: str, out: str) -> None:
    """``figure`` appears as a whole: not cut, not followed by more digits ($12.840000)."""
    assert re.search(rf"(?<![\d.,$]){re.escape(figure)}(?![\d])", out), (figure, out)


def assert_fits(out: str, width: int) -> None:
    too_wide = [line for line in out.splitlines() if len(line) > width]
    assert not too_wide, f"lines wider than {width}: {too_wide}"
    assert not re.search(r"\$[\d.,]*…", out), f"a dollar amount was cut:\n{out}"
    assert not re.search(r"\d…\s*[│┃]", out), f"a number was cut:\n{out}"


def test_dollar_amounts_have_the_precision_their_size_needs():
    assert [fmt_cost(x) for x in (12.34, 0.0123, 0.000123, 0.5, 0.0003, 1234.5, 0, None)] == \
        ["$12.34", "$0.0123", "$0.000123", "$0.50", "$0.0003", "$1,234.50", "$0.00",
         "unknown price"]


@pytest.mark.parametrize("width", WIDTHS)
def test_costs_show_every_amount_whole(env: Path, width: int):
    db = str(env / "home" / "calls.sqlite3")
    out = show(width, "costs", "--simulated", "--db", db)
    assert_fits(out, width)
    for figure in FIGURES_BY_MODEL:
        assert_whole(figure, out)
    out = show(width, "costs", "--by", "deployment", "--simulated", "--db", db)
    assert_fits(out, width)
    assert_whole("$12.84", out)
    assert_whole("$0.000123", out)
    if width == 80:
        assert "…" in out and "hidden; --wide" in out, "names shortened, columns hidden"
    wide = show(width, "costs", "--by", "deployment", "--wide", "--simulated", "--db", db)
    for name in LONG.values():
        assert name in wide
    assert "1,234,867/0/50" in wide and "tokens" in wide, "every column with --wide"


@pytest.mark.parametrize("width", WIDTHS)
def test_traces_and_stats_show_every_figure_whole(env: Path, width: int):
    db = str(env / "home" / "calls.sqlite3")
    out = show(width, "traces", "--simulated", "--db", db)
    assert_fits(out, width)
    for figure in ("$12.34", "$0.50", "$0.0123", "$0.000123", "12,345 ms"):
        assert_whole(figure, out)
    out = show(width, "traces", "--session", "S-tables", "--simulated", "--db", db)
    assert_fits(out, width)
    assert "$12.85" in out and "5 calls" in out
    out = show(width, "traces", "show", f"f{0:031x}", "--db", db)
    assert_fits(out, width)
    assert "$12.34" in out and "1234567 in" in out
    out = show(width, "stats", "--simulated", "--db", db)
    assert_fits(out, width)
    for figure in ("$12.85", "80.0%", "12,345 ms", TOTAL_CALLS):
        assert_whole(figure, out)


@pytest.mark.parametrize("width", WIDTHS)
def test_status_models_and_doctor_fit(env: Path, width: int):
    config = str(env / "config.yaml")
    out = show(width, "status", "--config", config, "--env", "simulation")
    assert_fits(out, width)
    assert "per process (no Redis)" in out.splitlines()[0]
    # spend per budget (alice 12.34 + 0.0123, bob, carol; agent matching; the environment),
    # the limits, and the last minute's requests and tokens
    for figure in ("$12.35", "$0.50", "$0.000123", "$12.84", "$12.85", "$50.00", "$100.00",
                   "$1,000.00", "5 / 500", "1,234,917 / 100,000"):
        assert_whole(figure, out)
    out = show(width, "models", "--config", config, "--env", "production")
    assert_fits(out, width)
    assert "ANTHROPIC_API_KEY" in out and "missing" in out
    out = show(width, "doctor", "--config", config, "--env", "production")
    assert_fits(out, width)
    checks = json.loads(show(width, "doctor", "--json", "--config", config, "--env",
                             "production"))
    fixes = [c["fix"] for c in checks if not c["ok"]]
    assert len(fixes) == 3 and "…" not in out
    words = set(out.replace("│", " ").split())
    assert all(w in words for fix in fixes for w in fix.split()), "every fix shown whole"
    out = show(width, "alerts", "check", "--config", config, "--env", "simulation", "--db",
               str(env / "home" / "calls.sqlite3"))
    assert_fits(out, width)
    assert "20 %" in out and "FIRING" in out and "$12.85" in out


@pytest.mark.parametrize("width", WIDTHS)
def test_prompts_list_show_and_diff_keep_their_lines(env: Path, width: int):
    local = ("--local", "--config", str(env / "config.yaml"), "--env", "simulation")
    out = show(width, "prompts", "list", *local)
    assert_fits(out, width)
    assert "matching" in out and "v1, v2" in out
    out = show(width, "prompts", "show", "matching", *local)
    long_line = "You match therapists to patients; " * 12
    assert f"{long_line}v1 {{{{skills}}}}" in out.splitlines(), "the template as written"
    out = show(width, "prompts", "diff", "matching", "1", "2", *local)
    lines = out.splitlines()
    assert lines[0].startswith("---") and lines[1].startswith("+++")
    assert all(line[:1] in " +-@" for line in lines[2:]), lines
    assert f"-{long_line}v1 {{{{skills}}}}" in lines and f"+{long_line}v2 {{{{skills}}}}" in lines


def test_json_is_unchanged_by_width(env: Path):
    db = str(env / "home" / "calls.sqlite3")
    narrow, wide = (json.loads(show(w, "costs", "--json", "--simulated", "--db", db))
                    for w in (40, 200))
    assert narrow == wide and narrow["total"]["cost"] == pytest.approx(12.852423)
