"""Calls traced to Langfuse through the real SDK over real HTTP to a loopback Langfuse."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest

from adapters.llm.errors import ProviderError

from .conftest import profiles, sim_deployment, traced, unique
from .langfuse_server import LangfuseServer, ReceivedSpan, use_project
from .waiting import wait_until

API_KEY = "sk-test-SECRETKEYVALUE-4242424242"


@pytest.fixture
def keys(server, monkeypatch, tmp_path) -> tuple[str, str]:
    """A fresh Langfuse project per test (the SDK keeps one client per public key)."""
    public, secret = use_project(server, monkeypatch, tmp_path / "home")
    return public, secret


@pytest.fixture
def llm(make_adapter, keys):
    return make_adapter(traced(unique("traced"), API_KEY), environment="production")


def mine(server: LangfuseServer, public_key: str) -> list[ReceivedSpan]:
    return [s for s in server.spans() if s.scope_attributes.get("public_key") == public_key]


def generations(server: LangfuseServer, public_key: str) -> list[ReceivedSpan]:
    return [s for s in mine(server, public_key)
            if s.attr("langfuse.observation.type") == "generation"]


def test_generation_carries_model_usage_cost_session_user_tags_metadata(llm, server, keys):
    response = llm.generate(prompt="Find a therapist", system="You schedule therapists.",
                            temperature=0.2, max_tokens=200,
                            metadata={"session_id": "S1", "user_id": "admin", "agent": "matching",
                                      "stage": "rank", "tags": ["urgent"], "clinic": "north"})
    assert llm.flush_langfuse(timeout=15)
    [gen] = generations(server, keys[0])
    assert gen.attr("langfuse.observation.model.name") == "gpt-4o"
    assert gen.json_attr("langfuse.observation.model.parameters") == \
        {"temperature": 0.2, "max_tokens": 200}
    usage = gen.json_attr("langfuse.observation.usage_details")
    assert usage == {"input": response.usage.input_tokens, "output": response.usage.output_tokens}
    cost = gen.json_attr("langfuse.observation.cost_details")
    assert cost["total"] == pytest.approx(response.cost)
    assert cost["input"] + cost["output"] == pytest.approx(response.cost)
    assert gen.attr("session.id") == "S1" and gen.attr("user.id") == "admin"
    assert list(gen.attr("langfuse.trace.tags")) == ["production", "urgent"]
    assert gen.attr("langfuse.environment") == "production"
    assert json.loads(gen.attr("langfuse.observation.metadata.agent")) == "matching"
    assert json.loads(gen.attr("langfuse.observation.metadata.stage")) == "rank"
    assert json.loads(gen.attr("langfuse.trace.metadata.clinic")) == "north"
    assert json.loads(gen.attr("langfuse.observation.metadata.deployment")) == response.deployment
    assert gen.json_attr("langfuse.observation.input")[-1]["content"] == "Find a therapist"
    assert "Find a therapist" in gen.attr("langfuse.observation.output")
    took_ms = (gen.end_time_ns - gen.start_time_ns) / 1e6
    assert abs(took_ms - response.latency_ms) < 50


def test_failed_call_is_an_error_generation_with_its_attempts(make_adapter, sim, server, keys):
    name = unique("traced-down")
    sim.set_scenario(name, "down")
    llm = make_adapter(traced(name, API_KEY), environment="production")
    with pytest.raises(ProviderError):
        llm.generate(prompt="Hello", timeout=5)
    assert llm.flush_langfuse(timeout=15)
    [gen] = generations(server, keys[0])
    assert gen.attr("langfuse.observation.level") == "ERROR" and gen.status_code == 2
    assert "unavailable" in gen.attr("langfuse.observation.status_message")
    attempts = json.loads(gen.attr("langfuse.observation.metadata.attempts"))
    assert attempts[0]["deployment"] == name and attempts[0]["status"] == 503
    assert gen.json_attr("langfuse.observation.cost_details") is None


def test_calls_in_llm_trace_share_one_trace_under_its_span(llm, server, keys):
    with llm.trace("Trigger Handler", session_id="S2", user_id="coordinator", tags=["replacement"]):
        llm.generate(prompt="plan", metadata={"agent": "orchestrator"})
        llm.generate(prompt="match", metadata={"agent": "matching"})
    assert llm.flush_langfuse(timeout=15)
    spans = mine(server, keys[0])
    [root] = [s for s in spans if s.name == "Trigger Handler"]
    gens = generations(server, keys[0])
    assert len(gens) == 2
    assert {g.trace_id for g in gens} == {root.trace_id}
    assert {g.parent_span_id for g in gens} == {root.span_id}
    assert {g.attr("session.id") for g in gens} == {"S2"}
    assert {g.attr("user.id") for g in gens} == {"coordinator"}
    assert all("replacement" in g.attr("langfuse.trace.tags") for g in gens)


async def test_async_calls_nest_under_the_callers_own_span(llm, server, keys):
    client = llm.telemetry.langfuse.client
    with client.start_as_current_observation(as_type="span", name="my-handler") as handler:
        await llm.agenerate(prompt="inside my span")
        async with llm.trace("sub-step", session_id="S3"):
            await llm.agenerate(prompt="inside the sub-step")
    assert llm.flush_langfuse(timeout=15)
    gens = {g.json_attr("langfuse.observation.input")[-1]["content"]: g
            for g in generations(server, keys[0])}
    [sub] = [s for s in mine(server, keys[0]) if s.name == "sub-step"]
    assert gens["inside my span"].parent_span_id == handler.id
    assert gens["inside my span"].trace_id == handler.trace_id
    assert sub.parent_span_id == handler.id
    assert gens["inside the sub-step"].parent_span_id == sub.span_id


def test_stream_is_one_generation_with_completion_start(llm, server, keys):
    stream = llm.generate(prompt="stream please", stream=True)
    text = "".join(stream)
    assert llm.flush_langfuse(timeout=15)
    [gen] = generations(server, keys[0])
    assert text in gen.attr("langfuse.observation.output")
    assert gen.attr("langfuse.observation.completion_start_time")


def test_langfuse_down_spools_and_delivers_exactly_once(llm, server, keys):
    server.set_down(True)
    try:
        answers = [llm.generate(prompt=f"while down {i}") for i in range(3)]
        assert not llm.flush_langfuse(timeout=15), "nothing could be delivered"
        assert llm.telemetry.langfuse.state().pending == 3, "kept in the store's outbox"
        assert generations(server, keys[0]) == []
    finally:
        server.set_down(False)
    assert llm.flush_langfuse(timeout=15)
    assert llm.telemetry.langfuse.state().ok
    llm.generate(prompt="after recovery")
    assert llm.flush_langfuse(timeout=15)
    ids = [json.loads(g.attr("langfuse.observation.metadata.call_id"))
           for g in generations(server, keys[0])]
    assert sorted(ids) == sorted([a.call_id for a in answers] + [ids[-1]])
    assert len(ids) == len(set(ids)) == 4, "every call delivered exactly once"


def test_refused_keys_keep_traces_spooled(llm, server, keys, monkeypatch):
    llm_bad_key_server_side = keys[0]
    server.add_key(llm_bad_key_server_side, "sk-lf-rotated-elsewhere")
    llm.generate(prompt="refused")
    assert not llm.flush_langfuse(timeout=15)
    assert any(status == 401 for _, _, status in server.requests())
    state = llm.telemetry.langfuse.state()
    assert state.pending == 1 and state.quarantined == 0, "kept, never quarantined"
    assert "keys" in state.last_error


def test_enabled_without_keys_warns_once_and_calls_go_on(make_adapter, monkeypatch, caplog):
    monkeypatch.delenv("LANGFUSE_PUBLIC_KEY", raising=False)
    monkeypatch.delenv("LANGFUSE_SECRET_KEY", raising=False)
    from adapters.llm._observability.telemetry import TelemetryPool

    pool = TelemetryPool()
    llm = make_adapter(traced(unique("nokeys"), API_KEY), environment="production",
                       telemetry=pool)
    with caplog.at_level(logging.WARNING, logger="adapters.llm"):
        llm.generate(prompt="one")
        make_adapter(traced(unique("nokeys2"), API_KEY), environment="production",
                     telemetry=pool).generate(prompt="two")
    warnings = [r for r in caplog.records if "LANGFUSE_PUBLIC_KEY" in r.getMessage()]
    assert len(warnings) == 1
    assert llm.telemetry.langfuse is None and llm.flush_langfuse()


PASTED_KEY = "sk-ant-api03-PASTEDBYMISTAKE0123456789"
PATIENT = ("Reschedule John Doe (john.doe@example.com, phone 555-123-4567, SSN 123-45-6789, "
           "DOB: 03/14/1962, MRN: A1234567). Key " + PASTED_KEY)


def test_pii_and_keys_never_leave_the_process(llm, server, keys, caplog):
    with caplog.at_level(logging.DEBUG):
        response = llm.generate(prompt=PATIENT, metadata={"session_id": "S9", "note": PATIENT})
        assert llm.flush_langfuse(timeout=15)
    [gen] = generations(server, keys[0])
    sent = json.dumps([s.attributes for s in mine(server, keys[0])])
    for secret in ("john.doe@example.com", "555-123-4567", "123-45-6789", "03/14/1962",
                   "A1234567", PASTED_KEY, API_KEY, "SECRETKEYVALUE"):
        assert secret not in sent, f"{secret} reached Langfuse"
    text = gen.json_attr("langfuse.observation.input")[-1]["content"]
    for marker in ("[EMAIL]", "[PHONE]", "[SSN]", "[DOB]", "[MRN]", "***"):
        assert marker in text
    assert "John Doe" in text, "names are not a built-in detector"
    store = llm.telemetry.store
    assert store.flush(5)
    raw = b"".join(p.read_bytes() for p in Path(store.path).parent.glob("*") if p.is_file())
    for secret in (b"john.doe@example.com", b"123-45-6789", PASTED_KEY.encode(), API_KEY.encode(),
                   b"SECRETKEYVALUE"):
        assert secret not in raw, f"{secret!r} reached the local store"
    # The configured key is in no log line of any library, even at DEBUG.
    assert "SECRETKEYVALUE" not in caplog.text
    assert "SECRETKEYVALUE" not in repr(response) + repr(llm.config)


def test_masking_off_still_removes_keys(make_adapter, server, keys):
    llm = make_adapter(traced(unique("staging"), API_KEY), environment="staging")
    llm.generate(prompt=PATIENT)
    assert llm.flush_langfuse(timeout=15)
    [gen] = generations(server, keys[0])
    text = gen.json_attr("langfuse.observation.input")[-1]["content"]
    assert "john.doe@example.com" in text and PASTED_KEY not in text


def test_every_call_is_in_the_local_store(llm, keys):
    answers = [llm.generate(prompt=f"stored {i}", metadata={"user_id": "u1", "tags": ["t"]})
               for i in range(3)]
    store = llm.telemetry.store
    assert llm.flush_langfuse(timeout=15)
    with sqlite3.connect(store.path) as conn:
        rows = conn.execute("SELECT call_id, user_id, cost, status FROM calls").fetchall()
    by_id = {row[0]: row for row in rows}
    for answer in answers:
        assert by_id[answer.call_id][1:] == ("u1", pytest.approx(answer.cost), "ok")
    assert oct(Path(store.path).stat().st_mode & 0o777) == "0o600"


def test_spool_drains_by_itself_when_langfuse_returns(make_adapter, server, keys):
    # In this process, to shorten its delivery's backoff.
    llm = make_adapter(traced(unique("traced"), API_KEY, store={"recorder": "thread"}),
                       environment="production")
    sink = llm.telemetry.langfuse
    sink.delivery.retry_interval = 0.2          # the longest backoff; the default is 10 s
    server.set_down(True)
    try:
        llm.generate(prompt="while down")
        assert not llm.flush_langfuse(timeout=15)
    finally:
        server.set_down(False)
    wait_until(lambda: sink.state().ok, timeout=10,
               what="the spool sent by the retry timer (no call, no flush)")
    assert len(generations(server, keys[0])) == 1


def test_score_reaches_langfuse_and_the_store(llm, server, keys):
    response = llm.generate(prompt="rank these therapists")
    assert llm.score("helpful", 1.0) == response.trace_id
    with llm.trace("graded", session_id="S5") as scope:
        llm.generate(prompt="inside")
        llm.score("quality", "good")
    assert llm.flush_langfuse(timeout=15)
    wait_until(lambda: len(server.scores()) >= 2, timeout=5,
               what="both scores at the loopback Langfuse")
    got = {s["name"]: s for s in server.scores() if s.get("traceId") in
           (response.trace_id, scope.trace_id)}
    assert got["helpful"]["value"] == 1.0 and got["helpful"]["traceId"] == response.trace_id
    assert got["quality"]["value"] == "good" and got["quality"]["traceId"] == scope.trace_id
    with sqlite3.connect(llm.telemetry.store.path) as conn:
        rows = set(conn.execute("SELECT name, trace_id FROM scores").fetchall())
    assert {("helpful", response.trace_id), ("quality", scope.trace_id)} <= rows


def test_calls_record_the_prompt_version_they_used(make_adapter, server, keys):
    name = "matching-ab"          # fixed: the sticky split of these six users is deterministic
    server.add_prompt(name, "Rank therapists for {{required_skills}}", labels=["production"])
    server.add_prompt(name, "v2: rank therapists for {{required_skills}}", labels=["prod-b"])
    config = traced(unique("prompted"), API_KEY, prompts={"experiments": {
        name: {"variants": {"production": 1, "prod-b": 1}, "sticky_by": "user_id"}}})
    llm = make_adapter(config, environment="production")
    chosen = {}
    for user in ("u1", "u2", "u3", "u4", "u5", "u6"):
        with llm.trace("matching", user_id=user):
            system = llm.get_prompt(name, {"required_skills": "orthopedic"}, version="latest")
            chosen[user] = llm.generate(prompt="who?", system=system).call_id
    assert llm.flush_langfuse(timeout=15)
    linked = {json.loads(g.attr("langfuse.observation.metadata.call_id")):
              (g.attr("langfuse.observation.prompt.name"),
               g.attr("langfuse.observation.prompt.version"),
               json.loads(g.attr("langfuse.observation.metadata.prompt_variant")))
              for g in generations(server, keys[0])}
    assert {linked[c][0] for c in chosen.values()} == {name}
    variants = {user: linked[c][2] for user, c in chosen.items()}
    assert set(variants.values()) == {"production", "prod-b"}, "both variants served"
    assert all(linked[c][1] == (1 if variants[u] == "production" else 2)
               for u, c in chosen.items())
    with sqlite3.connect(llm.telemetry.store.path) as conn:
        rows = dict(conn.execute("SELECT call_id, prompt_variant FROM calls").fetchall())
    assert {rows[c] for c in chosen.values()} == set(variants.values())


def hedged(p: str, b: str) -> dict:
    """``main`` falls back to ``backup``, hedged after 300 ms, traced in production."""
    return {"model_list": [sim_deployment("main", p, key=API_KEY),
                           sim_deployment("backup", b, key=API_KEY)],
            "fallbacks": ["main", "backup"],
            "router_settings": {"num_retries": 0, "hedging": {"after_ms": 300}},
            "environments": profiles(production={"langfuse": {"enabled": True}})}


def test_a_hedged_call_shows_what_the_lost_hedge_cost_everywhere(make_adapter, sim, server,
                                                                 keys):
    from adapters.llm._reports.queries import cost_report, stats
    from adapters.llm.simulator import Fault, Scenario

    p, b = unique("traced-p"), unique("traced-b")
    sim.set_scenario(p, Scenario(faults=[Fault(kind="stall", stall_s=10)]))
    llm = make_adapter(hedged(p, b), environment="production")
    response = llm.generate(prompt="Find a therapist", metadata={"user_id": "admin"})
    assert response.hedged and response.deployment == b
    assert response.cost_details is not None
    hedge = response.cost_details["hedge"]
    assert hedge > 0
    assert llm.flush_langfuse(timeout=15)
    [gen] = generations(server, keys[0])
    cost = gen.json_attr("langfuse.observation.cost_details")
    assert cost["hedge"] == pytest.approx(hedge)
    assert cost["total"] == pytest.approx(response.cost)
    meta = json.loads(gen.attr("langfuse.observation.metadata.attempts"))
    assert [(a["deployment"], a["error"], a.get("cost")) for a in meta] == \
        [(p, "hedge_lost", pytest.approx(hedge)), (b, None, None)]
    assert json.loads(gen.attr("langfuse.observation.metadata.hedged")) is True
    stored = llm.telemetry.store.get_call(response.call_id)
    assert stored is not None and stored.hedged and stored.cost == pytest.approx(response.cost)
    assert [a.cost for a in stored.attempts] == [pytest.approx(hedge), None]
    with sqlite3.connect(llm.telemetry.store.path) as conn:
        [row] = cost_report(conn, "user").rows
        numbers = stats(conn)
    assert (row.key, row.hedge_cost, row.cost) == ("admin", pytest.approx(hedge),
                                                    pytest.approx(response.cost))
    assert numbers["hedged_rate_pct"] == 100.0 and numbers["hedge_cost"] == pytest.approx(hedge)
