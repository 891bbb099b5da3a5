"""Reports over a hand-made store, checked against numbers worked out by hand; and their CLI.

The 30 calls below (Oct 30 to Dec 2, 2026, UTC) are chosen so every figure can be added up on
paper; the expected values in the tests are those sums, not the output of the same SQL.
"""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from adapters.llm._cli.main import main
from adapters.llm.errors import UsageError
from adapters.llm._observability.records import Attempt, CallRecord, Usage
from adapters.llm._reports.queries import (cost_report, daily_costs, list_traces, percentile,
                                  session_tree, stats, trace_detail)
from adapters.llm._observability.store import LocalStore

from .pg_support import create_database, drop_database, shared_postgres_url

DEPLOYMENTS = {"anthropic": ("claude-sonnet", "claude-sonnet-primary"),
               "openai": ("gpt-4-fallback", "gpt-4o"),
               "gemini": ("gemini-fallback", "gemini-flash"),
               "ollama": ("ollama-local", "ollama-llama3")}
T1, T2, T3, T4 = (f"a{n}" + "0" * 30 for n in range(1, 5))

# n, "MM-DD HH:MM:SS", env, provider, cost, latency ms, error kind, user, session, agent, tags,
# trace (None: a trace of its own), flags (F: a fallback was needed, C: a cache hit,
# H: hedged, $0.01 of its cost billed for the lost hedge)
SEED = [
    (1, "11-02 10:00:00", "prod", "anthropic", 0.30, 1000, None, "alice", "S1", "matching", ("urgent",), T1, ""),
    (2, "11-02 10:00:02", "prod", "openai", 0.20, 2000, None, "alice", "S1", "matching", ("urgent",), T1, "F"),
    (3, "11-02 10:00:05", "prod", "anthropic", 0.10, 500, None, "alice", "S1", "scheduler", (), T1, ""),
    (4, "11-03 09:00:00", "prod", "gemini", 0.05, 800, None, "alice", "S1", "matching", ("beta",), T2, ""),
    (5, "11-03 09:00:01", "prod", "anthropic", None, 300, "RateLimit", "alice", "S1", "matching", (), T2, "F"),
    (6, "11-01 12:00:00", "prod", "anthropic", 0.40, 1500, None, "bob", "S2", "support", ("urgent", "beta"), T3, ""),
    (7, "11-05 14:00:00", "dev", "ollama", None, 4000, None, "bob", "S2", "support", (), T4, ""),
    (8, "10-30 08:00:00", "prod", "anthropic", 0.20, 900, None, "carol", None, "triage", (), None, ""),
    (9, "10-31 08:00:00", "prod", "openai", 0.10, 1100, None, "carol", None, "triage", (), None, ""),
    (10, "11-01 08:00:00", "prod", "anthropic", 0.20, 900, None, "carol", None, "triage", ("urgent",), None, ""),
    (11, "11-02 08:00:00", "prod", "anthropic", 0.20, 1000, None, "carol", None, "triage", (), None, ""),
    (12, "11-02 08:30:00", "prod", "openai", 0.10, 1200, None, "carol", None, "triage", (), None, "F"),
    (13, "11-03 08:00:00", "prod", "anthropic", 0.20, 1000, None, "dave", None, "triage", (), None, "H"),
    (14, "11-03 08:30:00", "prod", "gemini", 0.05, 600, None, "dave", None, "triage", (), None, ""),
    (15, "11-04 08:00:00", "prod", "anthropic", 0.0, 50, None, "dave", None, "triage", (), None, "C"),
    (16, "11-04 08:30:00", "prod", "anthropic", None, 5000, "Timeout", "dave", None, "triage", (), None, "F"),
    (17, "11-06 08:00:00", "prod", "openai", 0.10, 1300, None, "dave", None, "triage", ("beta",), None, ""),
    (18, "11-09 08:00:00", "prod", "anthropic", 0.20, 1000, None, "carol", None, "triage", (), None, ""),
    (19, "11-09 09:00:00", "prod", "gemini", 0.05, 700, None, "carol", None, "triage", (), None, ""),
    (20, "11-10 08:00:00", "prod", "anthropic", 0.20, 1000, None, "carol", None, "triage", (), None, ""),
    (21, "11-10 09:00:00", "prod", "anthropic", 0.0, 40, None, "carol", None, "triage", (), None, "C"),
    (22, "11-11 08:00:00", "dev", "ollama", None, 3000, None, "carol", None, None, (), None, ""),
    (23, "11-12 08:00:00", "prod", "openai", 0.10, 1100, None, "carol", None, "triage", (), None, ""),
    (24, "11-13 08:00:00", "prod", "anthropic", 0.20, 900, None, "dave", None, "triage", (), None, ""),
    (25, "11-16 08:00:00", "prod", "anthropic", 0.20, 1000, None, "dave", None, "triage", (), None, ""),
    (26, "11-17 08:00:00", "prod", "openai", None, 200, "ServiceUnavailable", "dave", None, "triage", (), None, "F"),
    (27, "11-30 08:00:00", "prod", "gemini", 0.05, 800, None, "dave", None, "triage", (), None, ""),
    (28, "12-01 08:00:00", "prod", "anthropic", 0.20, 1000, None, "dave", None, "triage", (), None, ""),
    (29, "12-01 09:00:00", "prod", "openai", 0.10, 1000, None, "dave", None, "triage", (), None, ""),
    (30, "12-02 08:00:00", "prod", "anthropic", 0.20, 1000, None, "dave", None, "triage", (), None, ""),
]
NAMES = {T1: "Trigger Handler", T2: "Follow-up", T3: "Ticket", T4: "Ticket"}
STAGES = {1: "rank", 2: "explain"}
LONG_QUESTION = "Which of these forty-two appointment slots suits a patient who " * 4


def call_id(n: int) -> str:
    return f"c0{n:030x}"


def make(n: int, when: str, env: str, provider: str, cost: float | None, latency: int,
         error: str | None, user: str, session: str | None, agent: str | None,
         tags: tuple[str, ...], trace: str | None, flags: str) -> CallRecord:
    group, deployment = DEPLOYMENTS[provider]
    started = datetime.strptime(f"2026-{when}", "%Y-%m-%d %H:%M:%S").replace(
        tzinfo=timezone.utc).timestamp()
    ok = Attempt(deployment, group, provider, "ok" if error is None else "error", error,
                 None if error is None else 503, latency - 10.0)
    failed = Attempt("claude-sonnet-primary", "claude-sonnet", "anthropic", "error",
                     "ServiceUnavailable", 503, 10.0, "overloaded")
    lost = Attempt("claude-sonnet-backup", group, provider, "cancelled", "hedge_lost", None,
                   latency - 300.0, "cancelled", cost=0.01)
    question = LONG_QUESTION if n == 2 else f"Find a slot [urgent] for patient {n}"
    return CallRecord(
        call_id=call_id(n), trace_id=trace or f"b0{n:030x}", span_id=f"{n:016x}",
        parent_span_id=None, started_at=started, ended_at=started + latency / 1000,
        environment={"prod": "production", "dev": "development"}[env], model_group=group,
        status="ok" if error is None else "error", latency_ms=latency, deployment=deployment,
        provider=provider, provider_model=deployment, error_kind=error,
        error_message=None if error is None else f"{error} from {provider}",
        usage=Usage(input_tokens=100, output_tokens=10, cached_tokens=50 if n == 1 else 0),
        cost=cost, cache_hit="C" in flags, hedged="H" in flags,
        cost_details={"input": 0.15, "cached": 0.0, "cache_write": 0.0, "output": 0.04,
                      "hedge": 0.01, "total": 0.20} if "H" in flags else None, user_id=user, session_id=session, agent=agent,
        stage=STAGES.get(n), trace_name=NAMES.get(trace or ""), tags=tags,
        input=[{"role": "system", "content": "You schedule."},
               {"role": "user", "content": question}],
        output=None if error else f"Answer {n}",
        attempts=[failed, ok] if "F" in flags else [lost, ok] if "H" in flags else [ok])


def open_store(db: str) -> LocalStore:
    return LocalStore(url=db) if "://" in db else LocalStore(db)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The same calls in a file and in a PostgreSQL database: every report reads both."""
    home = tmp_path_factory.mktemp("reports")
    url = create_database(shared_postgres_url()) if request.param == "postgres" else None
    store = LocalStore(home / "calls.sqlite3") if url is None else \
        LocalStore(home / "buffer.sqlite3", url=url)
    for row in SEED:
        store.write(make(*row))
    store.add_score(name="helpful", value=1, trace_id=T1, created_at=1.0)
    store.close()
    assert store.written == 30
    yield url or str(store.path)
    if url is not None:
        drop_database(url)


@pytest.fixture
def conn(db: str):
    with closing(open_store(db).connect()) as connection:
        yield connection


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def rows_of(report) -> list[tuple]:
    return [(r.key, r.calls, r.cost if r.cost is None else pytest.approx(r.cost),
             r.unknown_price_calls) for r in report.rows]


# -- cost reports -----------------------------------------------------------------------------
def test_costs_by_provider_with_shares_and_totals(conn):
    report = cost_report(conn, "provider")
    # anthropic: 17 calls, 3 x 0.1-0.4 (0.80) + 10 x 0.20 = 2.80; openai: 7 calls, 0.70;
    # gemini 4 x 0.05; ollama: 2 calls, both unknown price.
    assert [(r.key, r.calls, r.cost, r.unknown_price_calls) for r in report.rows] == [
        ("anthropic", 17, pytest.approx(2.80), 0), ("openai", 7, pytest.approx(0.70), 0),
        ("gemini", 4, pytest.approx(0.20), 0), ("ollama", 2, None, 2)]
    shares = [(r.call_share_pct, r.cost_share_pct) for r in report.rows]
    assert shares == [(pytest.approx(100 * 17 / 30), pytest.approx(100 * 2.8 / 3.7)),
                      (pytest.approx(100 * 7 / 30), pytest.approx(100 * 0.7 / 3.7)),
                      (pytest.approx(100 * 4 / 30), pytest.approx(100 * 0.2 / 3.7)),
                      (pytest.approx(100 * 2 / 30), None)]
    t = report.total
    assert (t.key, t.calls, t.cost, t.unknown_price_calls, t.call_share_pct) == \
        (None, 30, pytest.approx(3.70), 2, 100.0)
    assert (t.input_tokens, t.cached_tokens, t.output_tokens) == (3000, 50, 300)
    assert t.mean_latency_ms == pytest.approx(35890 / 30)
    anthropic = report.rows[0]
    assert (anthropic.input_tokens, anthropic.cached_tokens) == (1700, 50)


def test_costs_by_user_model_and_tag(conn):
    assert rows_of(cost_report(conn, "user")) == [
        ("carol", 11, pytest.approx(1.35), 1), ("dave", 12, pytest.approx(1.30), 0),
        ("alice", 5, pytest.approx(0.65), 0), ("bob", 2, pytest.approx(0.40), 1)]
    assert [r.key for r in cost_report(conn, "model").rows] == \
        ["claude-sonnet", "gpt-4-fallback", "gemini-fallback", "ollama-local"]
    # A call counts once per tag (call 6 is urgent and beta); the total counts it once.
    tags = cost_report(conn, "tag")
    assert rows_of(tags) == [(None, 24, pytest.approx(2.45), 2),
                             ("urgent", 4, pytest.approx(1.10), 0),
                             ("beta", 3, pytest.approx(0.55), 0)]
    assert (tags.total.calls, tags.total.cost) == (30, pytest.approx(3.70))
    assert [r.call_share_pct for r in tags.rows] == \
        [pytest.approx(80.0), pytest.approx(40 / 3), pytest.approx(10.0)]


def test_costs_by_session_and_agent(conn):
    assert rows_of(cost_report(conn, "session"))[:3] == [
        (None, 23, pytest.approx(2.65), 1), ("S1", 5, pytest.approx(0.65), 0),
        ("S2", 2, pytest.approx(0.40), 1)]
    agents = {r.key: (r.calls, r.cost) for r in cost_report(conn, "agent").rows}
    assert agents["matching"] == (4, pytest.approx(0.55))
    assert agents[None] == (1, None)


def test_costs_by_week_and_month_are_in_time_order(conn):
    assert rows_of(cost_report(conn, "week")) == [
        ("2026-W44", 4, pytest.approx(0.90), 0), ("2026-W45", 13, pytest.approx(1.30), 1),
        ("2026-W46", 7, pytest.approx(0.75), 1), ("2026-W47", 2, pytest.approx(0.20), 0),
        ("2026-W49", 4, pytest.approx(0.55), 0)]
    assert rows_of(cost_report(conn, "month")) == [
        ("2026-10", 2, pytest.approx(0.30), 0), ("2026-11", 25, pytest.approx(2.90), 2),
        ("2026-12", 3, pytest.approx(0.50), 0)]


def test_since_until_and_env_filters(conn):
    november = cost_report(conn, "provider", since=utc("2026-11-01"), until=utc("2026-12-01"))
    assert (november.total.calls, november.total.cost) == (25, pytest.approx(2.90))
    production = cost_report(conn, "provider", env="production")
    assert (production.total.calls, production.total.cost,
            production.total.unknown_price_calls) == (28, pytest.approx(3.70), 0)
    assert [r.key for r in production.rows] == ["anthropic", "openai", "gemini"]
    assert cost_report(conn, "provider", env="staging").rows == []
    with pytest.raises(UsageError, match="choose one of model, provider"):
        cost_report(conn, "colour")


def test_daily_costs_fill_the_gaps_and_keep_unknown_apart_from_zero(conn):
    days = daily_costs(conn, since=utc("2026-11-01"), until=utc("2026-11-08"))
    assert [(d.day, d.cost if d.cost is None else pytest.approx(d.cost), d.calls)
            for d in days] == [
        ("2026-11-01", pytest.approx(0.60), 2), ("2026-11-02", pytest.approx(0.90), 5),
        ("2026-11-03", pytest.approx(0.30), 4), ("2026-11-04", 0.0, 2),   # cache hit + error
        ("2026-11-05", None, 1),                                           # unknown price
        ("2026-11-06", pytest.approx(0.10), 1), ("2026-11-07", 0.0, 0)]
    everything = daily_costs(conn)
    assert (everything[0].day, everything[-1].day, len(everything)) == \
        ("2026-10-30", "2026-12-02", 34)
    assert sum(d.calls for d in everything) == 30


# -- statistics -------------------------------------------------------------------------------
def test_stats(conn):
    s = stats(conn)
    assert (s["calls"], s["ok"], s["errors"]) == (30, 27, 3)
    assert s["success_rate_pct"] == pytest.approx(90.0)
    assert s["fallback_rate_pct"] == pytest.approx(100 * 5 / 30)      # calls 2, 5, 12, 16, 26
    assert s["cache_hit_rate_pct"] == pytest.approx(100 * 2 / 30)     # calls 15, 21
    assert s["hedged_rate_pct"] == pytest.approx(100 / 30)             # call 13, not a fallback
    assert s["hedge_cost"] == pytest.approx(0.01)
    assert s["mean_latency_ms"] == pytest.approx(35890 / 30)
    assert s["p95_latency_ms"] == 5000          # rank ceil(0.95 * 31) = 30: the largest
    assert (s["total_cost"], s["unknown_price_calls"]) == (pytest.approx(3.70), 2)
    assert s["by_status"] == {"ok": 27, "error": 3}
    assert s["by_error_kind"] == {"RateLimit": 1, "ServiceUnavailable": 1, "Timeout": 1}
    dev = stats(conn, env="development")
    assert (dev["calls"], dev["total_cost"], dev["p95_latency_ms"]) == (2, None, 4000)
    window = stats(conn, since=utc("2026-11-04"), until=utc("2026-11-05"))
    assert (window["calls"], window["success_rate_pct"], window["total_cost"]) == (2, 50.0, 0.0)
    assert stats(conn, env="staging")["success_rate_pct"] is None


def test_percentile_is_the_sample_at_rank_p_of_n_plus_one():
    assert percentile([], 95) is None
    assert percentile([7.0], 95) == 7.0
    assert percentile([float(n) for n in range(1, 21)], 95) == 20.0    # ceil(0.95 × 21) = 20
    assert percentile([float(n) for n in range(1, 101)], 50) == 51.0   # ceil(0.5 × 101) = 51


# -- traces -----------------------------------------------------------------------------------
def test_session_tree_in_time_order_with_totals(conn):
    tree = session_tree(conn, "S1")
    assert [(t.trace_id, t.name, [c.call_id for c in t.calls]) for t in tree.traces] == [
        (T1, "Trigger Handler", [call_id(1), call_id(2), call_id(3)]),
        (T2, "Follow-up", [call_id(4), call_id(5)])]
    first, second = tree.traces
    assert (first.cost, first.latency_ms) == (pytest.approx(0.60), pytest.approx(5500))
    assert (second.cost, second.latency_ms) == (pytest.approx(0.05), pytest.approx(1300))
    assert (tree.trace_count, tree.call_count, tree.cost, tree.latency_ms) == \
        (2, 5, pytest.approx(0.65), pytest.approx(6800))
    rank, explain, _ = first.calls
    assert (rank.agent, rank.stage, rank.model_group, rank.deployment, rank.output_preview) == \
        ("matching", "rank", "claude-sonnet", "claude-sonnet-primary", "Answer 1")
    assert rank.input_preview == "Find a slot [urgent] for patient 1"
    assert len(explain.input_preview) == 80 and explain.input_preview.endswith("…")
    assert second.calls[1].output_preview == "RateLimit: RateLimit from anthropic"
    assert [t.trace_id for t in session_tree(conn, "S1", last=1).traces] == [T2]
    assert session_tree(conn, "S1", last=1).call_count == 5          # totals: whole session


def test_list_traces_filters_and_sorts(conn):
    latest = list_traces(conn, user="carol", last=3)
    assert [t.calls[0].call_id for t in latest] == [call_id(21), call_id(22), call_id(23)]
    costly = list_traces(conn, last=3, sort="cost")     # ties at 0.20: lowest trace id first
    assert [t.trace_id for t in costly] == [T1, T3, f"b0{8:030x}"]
    slow = list_traces(conn, last=2, sort="latency")
    assert [t.trace_id for t in slow] == [T1, f"b0{16:030x}"]
    matching = list_traces(conn, agent="matching")     # only the matching agent's calls
    assert [(t.trace_id, len(t.calls)) for t in matching] == [(T1, 2), (T2, 2)]
    assert list_traces(conn, session="nope") == []
    unknown = list_traces(conn, user="bob")
    assert [(t.trace_id, t.cost, t.unknown_price_calls) for t in unknown] == \
        [(T3, pytest.approx(0.40), 0), (T4, None, 1)]


def test_trace_detail_by_trace_or_call_prefix(conn):
    trace = trace_detail(conn, T1[:6])
    assert (trace["kind"], trace["id"], trace["cost"]) == ("trace", T1, pytest.approx(0.60))
    assert [c["call_id"] for c in trace["calls"]] == [call_id(1), call_id(2), call_id(3)]
    assert [a["outcome"] for a in trace["calls"][1]["attempts"]] == ["error", "ok"]
    assert trace["calls"][1]["fallback"] is True
    assert [(s["name"], s["value"]) for s in trace["scores"]] == [("helpful", 1.0)]
    one = trace_detail(conn, call_id(16).upper())
    assert (one["kind"], one["id"], one["trace_id"]) == ("call", call_id(16), f"b0{16:030x}")
    assert one["calls"][0]["usage"]["input_tokens"] == 100
    with pytest.raises(UsageError, match="matches 30 ids"):
        trace_detail(conn, "c00000")
    with pytest.raises(UsageError, match="at least 6"):
        trace_detail(conn, "a1")
    with pytest.raises(UsageError, match="no call or trace id starts with 'ffffff'"):
        trace_detail(conn, "ffffff")


# -- the command line -------------------------------------------------------------------------
def run(*args: str) -> tuple[int, str]:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(main, list(args))
    return result.exit_code, result.output


def test_cli_costs_json_and_csv(db: str):
    code, out = run("costs", "--by", "provider", "--json", "--db", str(db))
    assert code == 0, out
    data = json.loads(out)
    assert [(r["key"], r["calls"]) for r in data["rows"]] == \
        [("anthropic", 17), ("openai", 7), ("gemini", 4), ("ollama", 2)]
    assert data["rows"][0]["cost"] == pytest.approx(2.80)
    assert data["rows"][0]["cost_share_pct"] == pytest.approx(100 * 2.8 / 3.7)
    assert data["rows"][3]["cost"] is None
    assert [r["hedge_cost"] for r in data["rows"]] == [pytest.approx(0.01), 0, 0, 0]
    assert (data["total"]["calls"], data["total"]["cost"]) == (30, pytest.approx(3.70))
    code, out = run("costs", "--by", "provider", "--csv", "--db", str(db))
    lines = out.splitlines()
    assert code == 0 and lines[0] == ("provider,calls,call_share_pct,cost,cost_share_pct,"
                                      "unknown_price_calls,input_tokens,cached_tokens,"
                                      "output_tokens,mean_latency_ms,hedge_cost")
    assert len(lines) == 5 and lines[1].startswith("anthropic,17,")
    assert lines[4].startswith("ollama,2,") and ",,,2," in lines[4]      # unknown, not 0


def test_cli_costs_table_and_daily_chart(db: str):
    code, out = run("costs", "--by", "day", "--since", "2026-11-01", "--until", "2026-11-07",
                    "--db", str(db))
    assert code == 0, out
    assert "costs by day" in out and "total" in out and "unknown price" in out
    assert "█" in out and "2026-11-07" in out and "2026-12-01" not in out
    assert "of it hedges" in out, "call 13 (Nov 3) lost a hedge"
    code, out = run("costs", "--env", "development", "--db", str(db))
    assert code == 0 and "unknown price" in out and "$0.00 " not in out
    assert "of it hedges" not in out, "no column where nothing was hedged"


def test_cli_traces_session_tree_and_show(db: str):
    code, out = run("traces", "--session", "S1", "--db", str(db))
    assert code == 0, out
    assert "Session S1" in out and "2 traces" in out and "5 calls" in out
    assert out.index("Trigger Handler") < out.index("Follow-up")
    assert "matching/rank" in out and "claude-sonnet → claude-sonnet-primary" in out
    assert "Find a slot [urgent] for patient 1" in out          # user text is not markup
    code, out = run("traces", "show", T1[:8], "--db", str(db))
    assert code == 0, out
    assert f"trace {T1}" in out and call_id(2) in out and "attempt 2" in out
    code, out = run("traces", "show", call_id(2), "--json", "--db", str(db))
    assert code == 0 and json.loads(out)["kind"] == "call"
    code, out = run("traces", "show", call_id(13), "--db", str(db))
    assert code == 0 and "hedge_lost" in out and "$0.01" in out, out
    code, out = run("traces", "show", "c00000", "--db", str(db))
    assert code == 1 and "give more characters" in out
    code, out = run("traces", "--user", "carol", "--last", "2", "--json", "--db", str(db))
    assert code == 0 and [t["calls"][0]["call_id"] for t in json.loads(out)] == \
        [call_id(22), call_id(23)]


def test_cli_stats_json_and_table(db: str):
    code, out = run("stats", "--json", "--db", str(db))
    assert code == 0, out
    data = json.loads(out)
    assert (data["calls"], data["success_rate_pct"], data["p95_latency_ms"]) == (30, 90.0, 5000)
    code, out = run("stats", "--env", "production", "--db", str(db))
    assert code == 0 and "success rate" in out and "p95 latency" in out and "fallback rate" in out
    assert "hedged calls" in out and "3.6%" in out, "1 of 28 production calls was hedged"


def test_cli_dates_and_a_missing_store(db: str, tmp_path: Path):
    code, out = run("costs", "--since", "last week", "--db", str(db))
    assert code == 2 and "is not a date" in out
    code, out = run("costs", "--since", "7d", "--json", "--db", str(db))
    assert code == 0 and json.loads(out)["by"] == "model"
    code, out = run("traces", "--db", str(tmp_path / "none.sqlite3"))
    assert code == 0 and f"no calls recorded yet at {tmp_path / 'none.sqlite3'}" in out
    assert not (tmp_path / "none.sqlite3").exists()
    code, out = run("costs", "--json", "--csv", "--db", str(db))
    assert code == 2 and "choose one of --json and --csv" in out


def test_cli_traces_sync(tmp_path: Path, monkeypatch):
    store = LocalStore(tmp_path / "calls.sqlite3")
    store.spool.add("otlp-traces", b"batch")
    for var in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY"):
        monkeypatch.delenv(var, raising=False)
    code, out = run("traces", "--db", str(store.path), "sync")     # the group's --db counts
    assert code == 1 and "pending: 0 call(s), 1 span batch(es)" in out and "LANGFUSE_" in out
    monkeypatch.setitem(sys.modules, "adapters.llm._observability.tracing", None)  # as if it were missing
    code, out = run("traces", "sync", "--db", str(store.path))
    assert code == 1 and "Langfuse delivery is not available" in out


def test_cli_reports_do_not_import_litellm(db: str):
    code = ("import sys; from adapters.llm._cli.main import main\n"
            f"for args in (['costs', '--json'], ['stats'], ['traces', 'show', '{T1}']):\n"
            f"    try: main([*args, '--db', {str(db)!r}])\n"
            "    except SystemExit: pass\n"
            "print('litellm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr
