"""One meaning of ``model``: the group asked for, in the response, the store and the reports;
the group that answered (another one after a fallback) in its own field and column."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from adapters.llm import AllProvidersFailed
from adapters.llm._observability.migrations import MIGRATIONS, m007_hedging, migrate
from adapters.llm._observability.store import LocalStore, read_calls

from .conftest import two_groups, unique


def chain(down: str, ok: str, db: Path) -> dict:
    """primary (on ``down``) falls back to backup (on ``ok``); calls recorded in ``db``."""
    config = two_groups(down, ok, router_settings={"num_retries": 0,
                                                   "cache": {"type": "local", "ttl": 60}},
                        store={"path": str(db)})
    config["model_list"][0]["litellm_params"]["api_key"] = "sk-test-p-0001"
    config["model_list"][1]["litellm_params"].update(model="openai/gpt-4o-mini",
                                                      api_key="sk-test-b-0001")
    return config


@pytest.fixture
def fallback_llm(make_adapter, sim, tmp_path: Path):
    down, ok = unique("asked-down"), unique("answers")
    sim.set_scenario(down, "down")
    db = tmp_path / "calls.sqlite3"
    llm = make_adapter(chain(down, ok, db))
    return llm, db, ok


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "adapters.llm", *args], capture_output=True,
                          text=True, timeout=60)


def test_a_fallback_answer_keeps_the_asked_model_and_names_the_answering_group(fallback_llm):
    llm, db, ok = fallback_llm
    response = llm.generate(prompt="Who is free on Tuesday?")
    assert response.model == "primary"                      # as documented: the group asked for
    assert response.answered_group == "backup" and response.deployment == ok
    assert [a.model_group for a in response.attempts] == ["primary", "backup"]
    streamed = llm.generate(prompt="And on Wednesday?", stream=True)
    assert "".join(streamed)
    assert streamed.response is not None
    assert (streamed.response.model, streamed.response.answered_group) == ("primary", "backup")
    cached = llm.generate(prompt="Who is free on Tuesday?")
    assert cached.cache_hit and (cached.model, cached.answered_group) == ("primary", "backup")
    assert llm.flush_langfuse()

    with closing(LocalStore(db).connect()) as conn:
        rows = conn.execute("SELECT call_id, model_group, answered_group FROM calls "
                            "ORDER BY started_at").fetchall()
        records = read_calls(conn, [response.call_id])
    assert [tuple(r)[1:] for r in rows] == [("primary", "backup")] * 3
    assert (records[0].model_group, records[0].answered_group) == ("primary", "backup")

    costs = cli("costs", "--by", "model", "--json", "--db", str(db))
    assert costs.returncode == 0, costs.stderr
    assert [r["key"] for r in json.loads(costs.stdout)["rows"]] == ["primary"]
    shown = cli("traces", "show", response.call_id, "--db", str(db))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert any("model group" in line and "primary" in line for line in lines), shown.stdout
    assert any("answered group" in line and "backup" in line for line in lines), shown.stdout
    as_json = cli("traces", "show", response.call_id, "--json", "--db", str(db))
    call = json.loads(as_json.stdout)["calls"][0]
    assert (call["model_group"], call["answered_group"]) == ("primary", "backup")


def test_a_failed_call_has_no_answering_group(make_adapter, sim, tmp_path: Path):
    down, also_down = unique("all-down"), unique("all-down")
    sim.set_scenario(down, "down")
    sim.set_scenario(also_down, "down")
    db = tmp_path / "calls.sqlite3"
    llm = make_adapter(chain(down, also_down, db))
    with pytest.raises(AllProvidersFailed):
        llm.generate(prompt="x")
    assert llm.flush_langfuse()
    with closing(LocalStore(db).connect()) as conn:
        assert [tuple(r) for r in conn.execute(
            "SELECT model_group, answered_group, status FROM calls")] == [("primary", None, "error")]


def test_the_answered_group_column_is_added_to_an_older_store(tmp_path: Path):
    path = tmp_path / "old.sqlite3"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        migrate(conn, MIGRATIONS[:MIGRATIONS.index(m007_hedging) + 1])
        conn.execute("INSERT INTO calls (call_id, trace_id, span_id, started_at, ended_at, "
                     "environment, model_group, status, latency_ms, day) VALUES "
                     "('c1', 't1', 's1', 1, 2, 'production', 'primary', 'ok', 5, '1970-01-01')")
    with closing(LocalStore(path).connect()) as conn:
        assert "m009_answered_group" in {r[0] for r in conn.execute(
            "SELECT name FROM _migrations")}
        (old,) = read_calls(conn, ["c1"])
    assert (old.model_group, old.answered_group) == ("primary", None)
