"""The store is Langfuse's outbox: crashes, refused batches, huge prompts and outages lose nothing.

Real SQLite, the loopback Langfuse, the simulator; the crash is a real process killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from adapters.llm._observability import outbox
from adapters.llm._cli.main import main
from adapters.llm._observability.langfuse_spans import TRUNCATED

from .conftest import one_group, profiles, run_together, unique, write_config
from .langfuse_server import ReceivedSpan, use_project
from .processes import children_of, wait_ended

ROOT = Path(__file__).resolve().parent.parent


def traced_in_production(name: str, **sections: object) -> dict:
    """One group traced to Langfuse in production."""
    return one_group(name, key="sk-test-1", **sections,
                     environments=profiles(production={"langfuse": {"enabled": True}}))


MARK = "POISON-MARK-7f3a"


@pytest.fixture
def keys(server, monkeypatch, tmp_path):
    public, secret = use_project(server, monkeypatch, tmp_path / "home")
    yield public, secret
    server.reject_marked(None)
    server.set_max_body(None)


def generations(spans: list[ReceivedSpan], public_key: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.scope_attributes.get("public_key") == public_key
            and s.attr("langfuse.observation.type") == "generation"]


def call_id(span: ReceivedSpan) -> str:
    return json.loads(span.attr("langfuse.observation.metadata.call_id"))


def stored_calls(home: Path) -> list[str]:
    with closing(sqlite3.connect(home / "calls.sqlite3")) as conn:
        return [row[0] for row in conn.execute("SELECT call_id FROM calls")]


# -- SIGKILL ------------------------------------------------------------------------------------
SCRIPT = """
import sys
from adapters.llm import LiteLLMAdapter, load_config
llm = LiteLLMAdapter(config=load_config(sys.argv[1], environment="production",
                                        load_dotenv=False))
for i in range(10_000):
    llm.generate(prompt=f"call {i}")
    print(f"answered {i}", flush=True)
"""
REOPEN = """
import sys
from adapters.llm import LiteLLMAdapter, load_config
llm = LiteLLMAdapter(config=load_config(sys.argv[1], environment="production",
                                        load_dotenv=False))
llm.telemetry   # opens the store with Langfuse enabled: the backlog is delivered
print("ok" if llm.flush_langfuse(timeout=60) else "not ok", flush=True)
"""


@pytest.mark.parametrize("recovery", ["next process", "traces sync"])
def test_sigkill_mid_run_then_every_stored_call_reaches_langfuse_once(
        recovery, sim, server, keys, tmp_path):
    config = write_config(tmp_path, traced_in_production(unique("killed")), sim_url=sim.url,
                          name="config.yaml")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    home = Path(env["LLM_ADAPTER_HOME"])
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(config)], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        answered = 0
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        while answered < 25 and time.monotonic() < deadline:
            if proc.stdout.readline().startswith("answered"):
                answered += 1
        recording = children_of(proc.pid)
        proc.send_signal(signal.SIGKILL)        # well within the SDK's old 5 s export delay
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert answered == 25 and len(recording) == 1
    wait_ended(recording)       # what it was handed, it commits (and delivers) before it ends
    stored = stored_calls(home)
    assert len(stored) >= answered - 5, "the calls answered before the kill are stored"
    with closing(sqlite3.connect(home / "calls.sqlite3")) as conn:
        in_flight = {row[0][:16] for row in conn.execute(
            "SELECT call_id FROM outbox WHERE lease_owner LIKE ?", (f"%:{recording[0]}:%",))}

    if recovery == "next process":
        out = subprocess.run([sys.executable, "-c", REOPEN, str(config)], env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.stdout.strip() == "ok", out.stderr[-2000:]
    else:
        out = subprocess.run([sys.executable, "-m", "adapters.llm", "traces", "sync", "--db",
                              str(home / "calls.sqlite3")], env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr[-2000:]

    before, stored = stored, stored_calls(home)
    assert set(before) == set(stored)
    gens = generations(server.spans(), keys[0])
    assert {call_id(g) for g in gens} == set(stored), "every stored call, nothing else"
    assert {g.span_id for g in gens} == {c[:16] for c in stored}, "the call's own span ids"
    twice = {span for span, n in Counter(g.span_id for g in gens).items() if n > 1}
    # Only a request the killed process had in flight (sent, not yet acknowledged in the
    # store) can arrive twice; Langfuse upserts it on its span id.
    assert twice <= in_flight


# -- refused batches ------------------------------------------------------------------------------
@pytest.mark.parametrize("status,then", [(413, "retry"), (400, "drop")])
def test_a_refused_batch_delivers_its_mates_and_quarantines_only_the_marked_call(
        status, then, make_adapter, server, keys, tmp_path):
    llm = make_adapter(traced_in_production(unique("refused")), environment="production")
    server.reject_marked(MARK, status)
    server.set_down(True)                       # so the six calls go in one batch
    try:
        answers = [llm.generate(prompt=MARK if i == 3 else f"fine {i}") for i in range(6)]
        assert not llm.flush_langfuse(timeout=10)
    finally:
        server.set_down(False)
    assert not llm.flush_langfuse(timeout=30), "one call is quarantined"
    state = llm.telemetry.langfuse.state()
    assert (state.pending, state.quarantined) == (0, 1)
    marked = answers[3].call_id
    mates = {a.call_id for a in answers} - {marked}
    assert {call_id(g) for g in generations(server.spans(), keys[0])} == mates
    refused = {call_id(s) for s in generations(server.rejected_spans(), keys[0])}
    assert mates & refused, "the mates were in the refused batch and still arrived"

    code, text = _cli("status", "--json", "--config", str(llm.config.path),
                      "--env", "production")
    assert code == 0, text
    shown = json.loads(text)["langfuse"]
    assert shown["quarantined"] == 1 and shown["quarantine"][0]["call_ids"] == [marked]
    assert f"HTTP {status}" in shown["quarantine"][0]["reason"]
    code, text = _cli("status", "--config", str(llm.config.path), "--env", "production")
    assert code == 0 and "quarantined" in text and f"HTTP {status}" in text, text

    db = str(llm.telemetry.store.path)
    code, text = _cli("traces", "sync", "--db", db)
    assert code == 1 and marked in text and f"HTTP {status}" in text
    server.reject_marked(None)
    if then == "retry":
        code, text = _cli("traces", "sync", "--db", db, "--retry-quarantined")
        assert code == 0, text
        delivered = {call_id(g) for g in generations(server.spans(), keys[0])}
        assert delivered == mates | {marked}
    else:
        code, text = _cli("traces", "sync", "--db", db, "--drop")
        assert code == 0 and "dropped 1" in text, text
        assert marked not in {call_id(g) for g in generations(server.spans(), keys[0])}
    assert llm.flush_langfuse(timeout=10), "nothing pending, nothing quarantined"


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_a_3_mb_prompt_arrives_truncated_with_a_marker(make_adapter, server, keys):
    server.set_max_body(2_500_000)              # the whole prompt would be refused
    llm = make_adapter(traced_in_production(unique("huge")), environment="production")
    prompt = "patient history. " * (3_000_000 // 17)
    response = llm.generate(prompt=prompt)
    assert llm.flush_langfuse(timeout=60)
    [gen] = generations(server.spans(), keys[0])
    assert call_id(gen) == response.call_id
    sent = gen.attr("langfuse.observation.input")
    assert TRUNCATED in sent and 100_000 < len(sent) <= 1_000_000
    assert gen.json_attr("langfuse.observation.input")[-1]["content"].startswith(
        "patient history. ")
    assert json.loads(gen.attr("langfuse.observation.metadata.truncated")) == ["input"]
    stored = llm.telemetry.store.get_call(response.call_id)
    assert stored is not None and stored.input[-1]["content"] == prompt, "the store keeps it all"


# -- outages ------------------------------------------------------------------------------------
def test_thousands_of_calls_while_langfuse_is_down_are_all_delivered_after(
        make_adapter, server, keys):
    llm = make_adapter(traced_in_production(unique("outage")), environment="production")
    total = 2_500                               # more than the SDK's 2,048-span queue

    async def calls() -> list[str]:
        ids: list[str] = []
        for start in range(0, total, 100):
            batch = await asyncio.gather(*(llm.agenerate(prompt=f"down {i}")
                                           for i in range(start, start + 100)))
            ids += [r.call_id for r in batch]
        return ids

    server.set_down(True)
    try:
        ids = asyncio.run(calls())
        assert not llm.flush_langfuse(timeout=30), "Langfuse is down"
        state = llm.telemetry.langfuse.state()
        assert state.pending == total and state.quarantined == 0
        assert "cannot reach Langfuse" in (state.last_error or "")
    finally:
        server.set_down(False)
    assert llm.flush_langfuse(timeout=120)
    gens = generations(server.spans(), keys[0])
    assert sorted(call_id(g) for g in gens) == sorted(ids), "none dropped, none twice"
    assert llm.telemetry.store.dropped == 0 and llm.telemetry.recorder.dropped == 0


def test_a_normal_run_sends_each_generation_once(make_adapter, server, keys):
    llm = make_adapter(traced_in_production(unique("normal")), environment="production")
    ids = [llm.generate(prompt=f"normal {i}").call_id for i in range(30)]
    assert llm.flush_langfuse(timeout=30)
    spans = [g.span_id for g in generations(server.spans(), keys[0])]
    assert sorted(spans) == sorted(c[:16] for c in ids)
    assert len(spans) == len(set(spans)) == 30


def test_store_off_still_keeps_langfuse_payloads_in_the_outbox(make_adapter, server, keys):
    llm = make_adapter(traced_in_production(unique("nostore"), store={"enabled": False}),
                       environment="production")
    server.set_down(True)
    try:
        answer = llm.generate(prompt="no calls rows")
        assert not llm.flush_langfuse(timeout=10)
    finally:
        server.set_down(False)
    assert llm.flush_langfuse(timeout=30)
    assert [call_id(g) for g in generations(server.spans(), keys[0])] == [answer.call_id]
    with closing(sqlite3.connect(llm.telemetry.store.path)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 0


@pytest.mark.parametrize("status", [500, 503, 429, 401, 403])
def test_transient_refusals_keep_every_call_and_quarantine_nothing(status, make_adapter, server,
                                                                   keys):
    llm = make_adapter(traced_in_production(unique("transient"), store={"recorder": "thread"}),
                       environment="production")            # its delivery's breaker is read
    delivery = llm.telemetry.langfuse.delivery
    server.set_status(status, retry_after=120 if status == 429 else None)
    try:
        ids = [llm.generate(prompt=f"transient {i}").call_id for i in range(4)]
        assert not llm.flush_langfuse(timeout=10)
        state = llm.telemetry.langfuse.state()
        assert (state.pending, state.quarantined) == (4, 0)
        assert f"HTTP {status}" in state.last_error
        if status in (401, 403):
            assert "keys" in state.last_error
        if status == 429:                       # the thread waits what Langfuse asked
            assert delivery.breaker.retry_in() > 100
    finally:
        server.set_status(None)
    assert llm.flush_langfuse(timeout=30)
    assert sorted(call_id(g) for g in generations(server.spans(), keys[0])) == sorted(ids)


TWO = """
import sys
from adapters.llm import LiteLLMAdapter, load_config
llm = LiteLLMAdapter(config=load_config(sys.argv[1], environment="production",
                                        load_dotenv=False))
for i in range(60):
    llm.generate(prompt=f"{sys.argv[2]} {i}")
print("ok" if llm.flush_langfuse(timeout=60) else "not ok", flush=True)
"""


def test_two_processes_on_one_store_never_send_the_same_rows(sim, server, keys, tmp_path):
    config = write_config(tmp_path, traced_in_production(unique("two")), sim_url=sim.url,
                          name="config.yaml")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = run_together([([sys.executable, "-c", TWO, str(config), name], env)
                         for name in ("first", "second")])
    assert all(r.stdout.strip() == "ok" for r in runs), [r.stderr[-1500:] for r in runs]
    stored = stored_calls(Path(env["LLM_ADAPTER_HOME"]))
    spans = [g.span_id for g in generations(server.spans(), keys[0])]
    assert len(stored) == 120
    assert sorted(spans) == sorted(c[:16] for c in stored), "each row sent once, by one"


# -- leases -------------------------------------------------------------------------------------
def test_a_lease_keeps_rows_from_a_second_process_until_its_owner_dies(tmp_path):
    from adapters.llm._observability.store import LocalStore, OutboxEntry

    store = LocalStore(tmp_path / "calls.sqlite3")
    for i in range(4):
        store.write_with_outbox(None, OutboxEntry(f"{i:032x}", "pk", "{}", time.time()))
    assert store.flush(5)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    host = outbox.lease_owner().split(":")[0]
    with closing(sqlite3.connect(store.path, isolation_level=None)) as conn:
        first = outbox.take(conn, outbox.OUTBOX, "pk", owner=f"{host}:{dead.pid}:1",
                            lease_s=600, limit=3, max_bytes=10**6)
        second = outbox.take(conn, outbox.OUTBOX, "pk", owner=outbox.lease_owner(),
                             lease_s=600, limit=10, max_bytes=10**6)
        assert len(first) == 3 and len(second) == 1
        assert not {i for i, _ in first} & {i for i, _ in second}, "never the same rows"
        assert outbox.take(conn, outbox.OUTBOX, "pk", owner="other:1:1", lease_s=600,
                           limit=10, max_bytes=10**6) == []
        assert outbox.expire_dead_leases(conn, outbox.OUTBOX, time.time()) == 3
        again = outbox.take(conn, outbox.OUTBOX, "pk", owner=outbox.lease_owner(),
                            lease_s=600, limit=10, max_bytes=10**6)
        assert {i for i, _ in again} == {i for i, _ in first}
    store.close()


def _otlp_request(public_key: str, names: list[str]) -> bytes:
    """An OTLP request as an older version spooled it: one span per name."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest)

    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    scope.scope.name = "langfuse-sdk"
    attribute = scope.scope.attributes.add()
    attribute.key, attribute.value.string_value = "public_key", public_key
    for n, name in enumerate(names, 1):
        span = scope.spans.add()
        span.trace_id, span.span_id = bytes([n]) * 16, bytes([n]) * 8
        span.name, span.start_time_unix_nano, span.end_time_unix_nano = name, 1, 2
        kv = span.attributes.add()
        kv.key, kv.value.string_value = "langfuse.observation.input", name
    return request.SerializeToString()


def test_an_old_spooled_batch_refused_for_one_span_is_split_and_the_rest_delivered(
        server, keys, tmp_path):
    from adapters.llm._observability.store import LocalStore

    store = LocalStore(tmp_path / "calls.sqlite3")
    store.spool.add("otlp-traces", _otlp_request(keys[0], ["old a", f"old {MARK}", "old c"]))
    store.spool.add("otlp-traces", _otlp_request(keys[0], ["later d"]))
    server.reject_marked(MARK, 400)
    code, text = _cli("traces", "sync", "--db", str(store.path))
    assert code == 1 and "HTTP 400" in text, text
    names = sorted(s.name for s in server.spans() if s.scope_attributes.get("public_key")
                   == keys[0])
    assert names == ["later d", "old a", "old c"], "nothing waits behind the refused span"
    with closing(sqlite3.connect(store.path)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM spool WHERE quarantined_at IS NOT NULL"
                            ).fetchone()[0] == 1
    server.reject_marked(None)
    code, text = _cli("traces", "sync", "--db", str(store.path), "--retry-quarantined")
    assert code == 0, text
    assert f"old {MARK}" in {s.name for s in server.spans()}


# -- the span encoding: direct, and through the SDK's span machinery ------------------------------
def _record(**changes):
    from adapters.llm._observability.records import Attempt, CallRecord, Usage

    base = CallRecord(
        call_id="9cb82441bf284da9a8607ba3b55c9667", trace_id="a8503181c39f436ab5c6091e9736e61b",
        span_id="9cb82441bf284da9", parent_span_id=None, started_at=1796122252.014114,
        ended_at=1796122252.0376976, environment="production", model_group="main",
        status="ok", latency_ms=23.53, deployment="d1", provider="openai",
        provider_model="gpt-4o", answered_group="main",
        usage=Usage(input_tokens=5, output_tokens=12), cost=0.0001325,
        cost_details={"input": 1.25e-05, "cached": 0.0, "cache_write": 0.0,
                      "output": 0.00012000000000000002, "total": 0.0001325},
        session_id="S1", user_id="u-42", input=[{"role": "user", "content": "Find a therapist"}],
        output="Simulated answer",
        attempts=[Attempt("d1", "main", "openai", "ok", None, None, 13.1, None, None)])
    from dataclasses import replace

    return replace(base, **changes)


SPAN_CASES = {
    "plain": ({}, {}),
    "nested, tags, metadata, release": (
        dict(parent_span_id="00112233aabbccdd", tags=("a", "b"), trace_name="Handler",
             agent="matching", stage="rank",
             metadata={"k": 1, "s": "x", "n": None, "d": {"a": [1, "ö"]}, "ü": "ñ"}),
        dict(default_tags=("production", "a"), release="r-1")),
    "error, unpriced, streamed": (
        dict(status="error", error_kind="Timeout", error_message="provider unavailable",
             output=None, cost_details=None, cost=None, ttft_ms=12.5,
             attempts=[]), {}),
    "prompt of Langfuse, values the SDK drops": (
        dict(prompt_source="langfuse", prompt_name="p", prompt_version=3, prompt_variant="b",
             user_id="x" * 250, session_id="s" * 201, metadata={"long": "y" * 300}), {}),
    "over the size limits": (
        dict(input=[{"role": "user", "content": "z" * 1_200_000}], output="q" * 1_100_000), {}),
    "environment Langfuse refuses, tool calls": (
        dict(tool_calls=[{"id": "1", "type": "function",
                          "function": {"name": "f", "arguments": "{}"}}]),
        dict(environment="Not Valid")),
    "values JSON and JavaScript cannot hold as they are": (
        dict(model_parameters={"seed": 2**60, "temperature": float("inf"), "top_p": 0.5},
             metadata={"big": 2**60, "f": 1.0000000000000002, "nan": float("nan"),
                       "deep": [[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]}), {}),
    "more metadata than the span limit holds": (
        dict(metadata={f"m{i}": i for i in range(150)}), {}),
    "base64 media": (
        dict(input=[{"role": "user", "content": [{"type": "image_url", "image_url": {
            "url": "data:image/png;base64,iVBORw0KGgo="}}]}]), {}),
}


@pytest.mark.parametrize("case", list(SPAN_CASES))
def test_a_span_encoded_directly_is_byte_for_byte_the_sdks(case, monkeypatch):
    """Delivery encodes generation spans without the SDK's span objects; what it sends must be
    exactly what the SDK's ``LangfuseGeneration`` would have sent (exactly-once upserts, the
    same attributes), and what it does not cover goes through the SDK."""
    from langfuse import Langfuse

    from adapters.llm._observability.langfuse_spans import SpanBuilder, _record_from, payload_of

    monkeypatch.setenv("LANGFUSE_TRACING_ENVIRONMENT", "production")
    client = Langfuse(public_key="pk-lf-encode", secret_key="sk-lf-encode",
                      base_url="http://127.0.0.1:9", environment="production")
    builder = SpanBuilder(client, "pk-lf-encode")
    changes, sink = SPAN_CASES[case]
    environment = sink.get("environment", "production")
    payload = payload_of(_record(**changes), environment=environment,
                         default_tags=sink.get("default_tags", ()), release=sink.get("release"))
    if case == "base64 media":         # the SDK uploads it apart: never encoded here
        assert not builder._encoder.covers(payload)
        return
    built = builder.build(payload)
    data = json.loads(payload)
    generation = builder._generation(_record_from(data["record"]), environment,
                                     data["default_tags"], data["release"])
    through_sdk = builder._sdk_span(generation, environment, data["release"])
    assert builder.request([built]) == builder.request([(built[0], through_sdk)])
    direct = builder._encoder.covers(payload) and builder._encoder.span(generation) is not None
    assert direct == (case != "more metadata than the span limit holds")
    client.shutdown()
