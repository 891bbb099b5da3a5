"""Routing through real litellm over real HTTP to the provider simulator.

Each test gives its deployments their own scenario names, so the simulator's per-scenario
counters say exactly which provider was called how often.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from adapters.llm import (
    AllProvidersFailed,
    AuthenticationError,
    ContextWindowExceeded,
    DeadlineExceeded,
    ProviderError,
    UsageError,
)
from adapters.llm.simulator import Fault, Scenario

from .conftest import sim_deployment, unique
from .conftest import two_groups as chain


def two_groups(make_adapter, p: str, b: str, *, primary_model: str = "openai/gpt-4o",
               timeout: float = 30, cooldown_time: float = 30,
               primary_timeout: float | None = None):
    """The chain with the router's ``timeout``; ``primary_timeout`` is the primary
    deployment's own."""
    params = {"model": primary_model} | ({} if primary_timeout is None
                                         else {"timeout": primary_timeout})
    return make_adapter(chain(p, b, primary_params=params,
                              router_settings={"num_retries": 1, "cooldown_time": cooldown_time,
                                               "timeout": timeout}))


def requests(sim, name: str) -> int:
    return int(sim.stats(name).get("requests", 0)) if sim.stats(name) else 0


FAULTS = [
    ("503", Fault(kind="status", status=503), "unavailable", 503),
    ("500", Fault(kind="status", status=500), "server_error", 500),
    ("429", Fault(kind="status", status=429, retry_after=3), "rate_limit", 429),
    ("reset", Fault(kind="reset"), "connection", None),
    ("malformed", Fault(kind="malformed"), "malformed_response", None),
]


@pytest.mark.parametrize("name,fault,kind,status", FAULTS, ids=[f[0] for f in FAULTS])
def test_fallback_answers_when_primary_fails(make_adapter, sim, name, fault, kind, status):
    p, b = unique(f"fb-{name}"), unique("backup")
    sim.set_scenario(p, Scenario(faults=[fault]))
    llm = two_groups(make_adapter, p, b)
    started = time.monotonic()
    response = llm.generate(prompt="Hello")
    elapsed = time.monotonic() - started
    assert response.deployment == b and response.provider == "openai"
    assert response.content.startswith("Simulated answer")
    failed = response.attempts[0]
    assert (failed.deployment, failed.outcome) == (p, "error")
    assert failed.error_kind == kind, failed.message
    assert failed.status == status
    assert response.attempts[-1].outcome == "ok" and response.attempts[-1].deployment == b
    assert requests(sim, p) == 1, "the primary is tried once, not retried"
    if name == "429":
        assert elapsed < 3, "a 429 must not be waited out while the fallback can answer"


def test_stall_past_deployment_timeout_falls_back(make_adapter, sim):
    p, b = unique("stall"), unique("backup")
    sim.set_scenario(p, Scenario(faults=[Fault(kind="stall", stall_s=10)]))
    llm = two_groups(make_adapter, p, b, primary_timeout=1)
    response = llm.generate(prompt="Hello")
    assert response.deployment == b
    assert response.attempts[0].error_kind == "timeout"
    assert 900 <= response.attempts[0].latency_ms < 5000


def test_later_calls_skip_the_cooling_primary(make_adapter, sim):
    p, b = unique("down"), unique("backup")
    sim.set_scenario(p, "down")
    llm = two_groups(make_adapter, p, b)
    first = llm.generate(prompt="call 0")
    assert first.attempts[0].outcome == "error"
    later = [llm.generate(prompt=f"call {i}") for i in range(1, 6)]
    assert requests(sim, p) == 1, "after one failure the primary is not called again"
    assert requests(sim, b) == 6
    for response in later:
        assert response.deployment == b
        skipped = response.attempts[0]
        assert (skipped.deployment, skipped.outcome, skipped.error_kind) == (p, "skipped", "cooldown")
        assert skipped.status == 503 and "cooling down" in (skipped.message or "")


def test_primary_recovers_after_cooldown(make_adapter, sim):
    p, b = unique("recover"), unique("backup")
    sim.set_scenario(p, "down")
    llm = two_groups(make_adapter, p, b, cooldown_time=1)
    assert llm.generate(prompt="x").deployment == b
    sim.set_scenario(p, "ok")
    time.sleep(1.3)
    assert llm.generate(prompt="y").deployment == p


class CountingStore:
    """litellm's cooldown store, counting its reads (each costs the event loop a lock hand-off)."""

    def __init__(self, store) -> None:
        self.store, self.reads = store, 0

    def get_active_cooldowns(self, ids, span):
        self.reads += 1
        return self.store.get_active_cooldowns(ids, span)

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_calls_read_the_cooldown_store_only_after_a_failure(make_adapter, sim):
    p, b = unique("quiet"), unique("backup")
    llm = two_groups(make_adapter, p, b)
    cooldowns = llm.gateway.cooldowns
    counting = cooldowns._store = CountingStore(cooldowns._store)
    assert [llm.generate(prompt=f"q{i}").deployment for i in range(10)] == [p] * 10
    assert counting.reads == 1, "nothing failed: one read, then the view is kept"
    sim.set_scenario(p, "down")
    assert llm.generate(prompt="fails over").deployment == b
    reads = counting.reads
    skipped = llm.generate(prompt="skips").attempts[0]
    assert (skipped.deployment, skipped.outcome) == (p, "skipped")
    assert counting.reads > reads, "after a failure the store is read again"
    assert requests(sim, p) == 11


def test_a_cooldown_shared_through_redis_reaches_a_process_that_read_before(make_adapter, sim):
    from .redis_support import shared_redis_url

    p, b = unique("shared-cool"), unique("backup")
    settings = {"num_retries": 0, "cooldown_time": 5, "redis_url": shared_redis_url()}
    first = make_adapter(chain(p, b, router_settings=settings))
    other = make_adapter(chain(p, b, router_settings=settings))
    assert other.generate(prompt="before").deployment == p      # it has read: nothing cools
    sim.set_scenario(p, "down")
    assert first.generate(prompt="fails over").deployment == b
    skipped = other.generate(prompt="after").attempts[0]
    assert (skipped.deployment, skipped.outcome, skipped.error_kind) == (p, "skipped", "cooldown")
    assert requests(sim, p) == 2, "the other process never called the cooling primary"


def test_load_balancing_spreads_calls(make_adapter, sim):
    a, b = unique("lb-a"), unique("lb-b")
    llm = make_adapter({"model_list": [sim_deployment("pool", a, key="sk-test-a-0001"),
                                       sim_deployment("pool", b, key="sk-test-b-0002")],
                        "router_settings": {"routing_strategy": "simple-shuffle"}})
    answered = [llm.generate(prompt=f"q{i}").deployment for i in range(40)]
    assert answered.count(a) + answered.count(b) == 40
    assert answered.count(a) >= 8 and answered.count(b) >= 8
    assert requests(sim, a) == answered.count(a)


def test_one_deadline_for_the_whole_call(make_adapter, sim):
    p, b = unique("slow-p"), unique("slow-b")
    for name in (p, b):
        sim.set_scenario(name, Scenario(faults=[Fault(kind="stall", stall_s=10)]))
    llm = two_groups(make_adapter, p, b)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded) as caught:
        llm.generate(prompt="Hello", timeout=1.0)
    elapsed = time.monotonic() - started
    assert elapsed < 2.5, f"retries and fallbacks together overran the 1 s deadline ({elapsed:.1f}s)"
    assert "deadline" in str(caught.value)
    assert caught.value.attempts and caught.value.attempts[0].deployment == p


def test_stream_fails_over_before_first_chunk(make_adapter, sim):
    p, b = unique("stream-down"), unique("backup")
    sim.set_scenario(p, "down")
    llm = two_groups(make_adapter, p, b)
    stream = llm.generate(prompt="Tell me a story", stream=True)
    text = "".join(stream)
    assert text.startswith("Simulated answer")
    assert stream.response is not None and stream.response.content == text
    assert stream.response.deployment == b
    assert stream.response.attempts[0].deployment == p
    assert stream.response.usage.output_tokens > 0
    assert stream.response.ttft_ms is not None


async def test_async_stream(make_adapter, sim):
    p, b = unique("astream"), unique("backup")
    llm = two_groups(make_adapter, p, b)
    stream = await llm.agenerate(prompt="Tell me a story", stream=True)
    chunks = [c async for c in stream]
    assert len(chunks) > 1 and stream.response is not None
    assert stream.response.content == "".join(chunks)


def test_stream_cut_after_first_chunk_raises(make_adapter, sim):
    p, b = unique("cut"), unique("backup")
    sim.set_scenario(p, Scenario(faults=[Fault(kind="cut", after_chunks=2)]))
    llm = two_groups(make_adapter, p, b)
    stream = llm.generate(prompt="Tell me a long story please", stream=True)
    received = []
    with pytest.raises(ProviderError) as caught:
        for text in stream:
            received.append(text)
    assert received, "text before the cut reached the caller"
    assert caught.value.kind == "stream_interrupted" and caught.value.deployment == p


BOOK = {"type": "function", "function": {
    "name": "book_appointment", "description": "Book a slot",
    "parameters": {"type": "object", "required": ["patient_id", "slot"],
                   "properties": {"patient_id": {"type": "string"}, "slot": {"type": "string"}}}}}


@pytest.mark.parametrize("model", ["openai/gpt-4o", "anthropic/claude-sonnet-4-5-20250929"])
def test_tool_calls_round_trip(make_adapter, sim, model):
    p, b = unique("tools"), unique("backup")
    llm = two_groups(make_adapter, p, b, primary_model=model)
    first = llm.generate(prompt="Book 3pm for patient 7", tools=[BOOK])
    assert first.deployment == p and first.finish_reason == "tool_calls"
    call = first.tool_calls[0]
    assert call.name == "book_appointment"
    assert set(call.parsed_arguments()) >= {"patient_id", "slot"}
    second = llm.generate(tools=[BOOK], messages=[
        {"role": "user", "content": "Book 3pm for patient 7"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function",
             "function": {"name": call.name, "arguments": call.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "content": "booked: confirmation 42"},
    ])
    assert second.tool_calls == [] and "confirmation 42" in second.content


@pytest.mark.parametrize("model", ["gemini/gemini-2.5-flash", "ollama_chat/llama3.2"])
def test_gemini_and_ollama_wire_formats(make_adapter, sim, model):
    p, b = unique("wire"), unique("backup")
    llm = two_groups(make_adapter, p, b, primary_model=model)
    response = llm.generate(prompt="Hello there", system="Be brief")
    assert response.deployment == p and response.content.startswith("Simulated answer")
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0


def test_context_window_goes_to_its_own_chain(make_adapter, sim):
    small, big, other = unique("small"), unique("big"), unique("other")
    sim.set_scenario(small, Scenario(max_input_tokens=5))
    config = {"model_list": [sim_deployment("small", small, key="sk-test-s-0001"),
                             sim_deployment("big", big, key="sk-test-b-0002"),
                             sim_deployment("other", other, key="sk-test-o-0003")],
              "fallbacks": ["small", "other"]}
    llm = make_adapter({**config, "context_window_fallbacks": [{"small": ["big"]}]})
    long_prompt = "please read this rather long prompt " * 5
    response = llm.generate(prompt=long_prompt)
    assert response.deployment == big
    assert response.attempts[0].error_kind == "context_window"
    assert requests(sim, other) == 0

    without = make_adapter(config)
    with pytest.raises(ContextWindowExceeded) as caught:
        without.generate(prompt=long_prompt)
    assert isinstance(caught.value, UsageError)


def test_bad_request_is_never_retried_or_fallen_back(make_adapter, sim):
    p, b = unique("bad-request"), unique("backup")
    sim.set_scenario(p, "bad-request")
    llm = two_groups(make_adapter, p, b)
    with pytest.raises(UsageError) as caught:
        llm.generate(prompt="Hello")
    assert "rejected the request" in str(caught.value)
    assert requests(sim, p) == 1 and requests(sim, b) == 0


def test_all_failed_lists_every_attempt_in_order(make_adapter, sim):
    p, b = unique("all-p"), unique("all-b")
    sim.set_scenario(p, "down")
    sim.set_scenario(b, "error")
    llm = two_groups(make_adapter, p, b)
    with pytest.raises(AllProvidersFailed) as caught:
        llm.generate(prompt="Hello", timeout=5)
    error = caught.value
    assert [a.deployment for a in error.attempts][:2] == [p, b]
    assert [a.status for a in error.attempts][:2] == [503, 500]
    assert p in str(error) and b in str(error)
    assert all(isinstance(e, ProviderError) for e in error.exceptions)


def test_missing_key_names_the_variable(make_adapter, sim, monkeypatch):
    monkeypatch.delenv("LLMA_TEST_MISSING_KEY", raising=False)
    only = unique("nokey")
    llm = make_adapter({"model_list": [
        sim_deployment("only", only, key="os.environ/LLMA_TEST_MISSING_KEY")]})
    with pytest.raises(AllProvidersFailed) as caught:
        llm.generate(prompt="Hello", timeout=5)
    assert "LLMA_TEST_MISSING_KEY" in str(caught.value)
    auth = [e for e in caught.value.exceptions if isinstance(e, AuthenticationError)]
    assert auth and auth[0].env_var == "LLMA_TEST_MISSING_KEY"


def test_refused_key_never_shows_its_value(make_adapter, sim, monkeypatch):
    secret = "sk-live-SECRETVALUE-0123456789abcdef"
    monkeypatch.setenv("LLMA_TEST_REFUSED_KEY", secret)
    only = unique("refused")
    sim.set_scenario(only, "unauthorized")
    llm = make_adapter({"model_list": [
        sim_deployment("only", only, key="os.environ/LLMA_TEST_REFUSED_KEY")]})
    with pytest.raises(AllProvidersFailed) as caught:
        llm.generate(prompt="Hello", timeout=5)
    shown = str(caught.value) + repr(caught.value) + "".join(
        f"{a}" for a in caught.value.attempts) + "".join(str(e) for e in caught.value.exceptions)
    assert secret not in shown and "SECRETVALUE" not in shown
    assert "LLMA_TEST_REFUSED_KEY" in str(caught.value)
    assert secret not in repr(llm.config)


def test_retry_inside_a_group_records_both_attempts(make_adapter, sim):
    bad, good = unique("pool-bad"), unique("pool-good")
    sim.set_scenario(bad, "down")
    llm = make_adapter({"model_list": [
        sim_deployment("pool", bad, key="sk-test-a-0001", weight=1000),
        sim_deployment("pool", good, key="sk-test-b-0002", weight=1)],
        "router_settings": {"routing_strategy": "simple-shuffle", "num_retries": 1}})
    response = llm.generate(prompt="Hello")
    assert response.deployment == good
    assert requests(sim, bad) == 1, "the weighted choice goes to the bad deployment first"
    failed, ok = response.attempts
    assert (failed.deployment, failed.outcome, failed.error_kind, failed.status) == \
        (bad, "error", "unavailable", 503)
    assert failed.latency_ms is not None and failed.latency_ms > 0
    assert (ok.deployment, ok.outcome) == (good, "ok")


@pytest.mark.parametrize("strategy", ["simple-shuffle", "least-busy", "latency-based-routing",
                                      "usage-based-routing-v2", "cost-based-routing"])
async def test_every_routing_strategy_serves_the_group(make_adapter, sim, strategy):
    a, b = unique("strat-a"), unique("strat-b")
    llm = make_adapter({"model_list": [sim_deployment("pool", a, key="sk-test-a-0001"),
                                       sim_deployment("pool", b, key="sk-test-b-0002")],
                        "router_settings": {"routing_strategy": strategy}})
    sim.set_scenario(a, Scenario(latency_ms=30))
    sim.set_scenario(b, Scenario(latency_ms=30))
    # Concurrent calls: least-busy spreads by requests in flight.
    responses = await asyncio.gather(*(llm.agenerate(prompt=f"q{i}") for i in range(12)))
    answered = [r.deployment for r in responses]
    assert set(answered) <= {a, b} and len(answered) == 12
    assert requests(sim, a) + requests(sim, b) == 12
    if strategy in ("simple-shuffle", "least-busy"):
        assert answered.count(a) >= 2 and answered.count(b) >= 2, answered


def test_retry_after_is_honoured_when_nothing_else_can_answer(make_adapter, sim):
    only = unique("ra-only")
    sim.set_scenario(only, Scenario(faults=[Fault(kind="status", status=429, retry_after=1,
                                                  first_n=1)]))
    llm = make_adapter({"model_list": [sim_deployment("only", only, key="sk-test-o-0001")]})
    started = time.monotonic()
    response = llm.generate(prompt="Hello", timeout=10)
    assert response.deployment == only
    assert requests(sim, only) == 2, "one 429, then the retry after Retry-After"
    assert time.monotonic() - started >= 0.9, "the retry waited for Retry-After"
