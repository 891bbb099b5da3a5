"""Hedging, the stream TTFT cut-off and overhead_ms, through real litellm over real HTTP.

Each test gives its deployments their own scenario names, so the simulator's per-scenario
counters say exactly which provider saw how many requests. The machine may be busy: timings are
asserted loosely (orderings and counts carry the proof, a stall of 10 s the margin).
"""

from __future__ import annotations

import time
import uuid

import pytest

from adapters.llm import ConfigError
from adapters.llm._routing.hedging import HedgePolicy, Hedger
from adapters.llm._traffic.policies import PolicyPool
from adapters.llm._observability.recording import build_record
from adapters.llm._cli.status import collect_status
from adapters.llm.simulator import Fault, Scenario

from .conftest import sim_deployment, two_groups, unique
from .waiting import wait_until

STALL = Scenario(faults=[Fault(kind="stall", stall_s=10)])
AFTER_300_MS = {"after_ms": 300}


def chain(make_adapter, *, hedging: dict | None = AFTER_300_MS, settings: dict | None = None,
          budget: float | None = None, b_extra: dict | None = None,
          environment: str | None = None):
    """An adapter on primary → backup → third, each on a fresh scenario, and their names;
    ``budget`` is a daily limit per user."""
    p, b, c = unique("hedge-p"), unique("hedge-b"), unique("hedge-c")
    config = two_groups(p, b, backup_params=b_extra, router_settings={
        "num_retries": 0, "cooldown_time": 30, "timeout": 30,
        **({"hedging": hedging} if hedging else {}), **(settings or {})})
    config["model_list"].append(sim_deployment("third", c, key="sk-test-third-0003"))
    config["fallbacks"].append("third")
    if budget is not None:
        config["budgets"] = {"limits": [{"scope": "user", "limit": budget, "period": "day"}]}
    if environment:     # limits and budgets are namespaced by environment: never shared
        config["environments"] = {environment: {"default_model": "primary"}}
    llm = make_adapter(config, model="primary", policies=PolicyPool(), environment=environment)
    llm.warmup()
    return llm, p, b, c


def requests(sim, name: str) -> int:
    return int(sim.stats(name).get("requests", 0))


def settles_to_zero(sim, name: str, why: str = "a cancelled request's handler ended") -> None:
    """``name``'s in-flight count drops to 0 at the simulator."""
    wait_until(lambda: int(sim.stats(name).get("in_flight", 0)) == 0, timeout=3.0,
               what=f"no request in flight at {name} ({why}): {sim.stats(name)}")


# ------------------------------------------------------------------------------------ hedging


def test_no_hedge_while_the_primary_answers_in_time(make_adapter, sim):
    llm, p, b, c = chain(make_adapter, hedging={"after_ms": 1500})
    sim.set_scenario(p, Scenario(latency_ms=20))
    response = llm.generate(prompt="Hello")
    assert response.deployment == p and not response.hedged
    assert [a.outcome for a in response.attempts] == ["ok"]
    assert (requests(sim, p), requests(sim, b), requests(sim, c)) == (1, 0, 0)
    assert llm.gateway.hedger is not None


def test_stalled_primary_loses_to_the_hedge(make_adapter, sim):
    llm, p, b, c = chain(make_adapter, hedging={"after_ms": 300})
    sim.set_scenario(p, STALL)
    sim.set_scenario(b, Scenario(latency_ms=20))
    started = time.monotonic()
    response = llm.generate(prompt="Find a therapist for Tuesday")
    elapsed = time.monotonic() - started
    assert response.deployment == b and response.hedged
    assert 0.3 <= elapsed < 5, f"{elapsed:.2f}s: the hedge, not the 10 s stall, answered"
    assert (requests(sim, p), requests(sim, b), requests(sim, c)) == (1, 1, 0)
    lost, won = response.attempts
    assert (lost.deployment, lost.outcome, lost.error_kind) == (p, "cancelled", "hedge_lost")
    assert (won.deployment, won.outcome) == (b, "ok")
    assert lost.latency_ms is not None and lost.latency_ms >= 300
    assert won.latency_ms is not None and lost.latency_ms >= 300 + 0.5 * won.latency_ms
    # The loser was sent: its input tokens are billed, and the call's cost shows it.
    assert lost.cost is not None and lost.cost > 0
    assert response.cost_details is not None
    assert response.cost_details["hedge"] == pytest.approx(lost.cost)
    parts = sum(v for k, v in response.cost_details.items() if k != "total")
    assert response.cost == pytest.approx(response.cost_details["total"]) == pytest.approx(parts)
    assert not response.fallback_used, "a lost hedge is not a fallback"
    assert response.overhead_ms is not None and response.overhead_ms < 150, \
        "the wait before the hedge is the provider's time, not the adapter's"
    # Cancelling the loser's task closed its connection: the simulator's handler ended.
    settles_to_zero(sim, p)
    record = build_record(call_id=uuid.uuid4().hex, group="primary", environment="test",
                          messages=[], params={}, metadata=None, scope=None,
                          parent=(uuid.uuid4().hex, None), started_at=time.time(),
                          response=response)
    assert record.hedged and record.attempts[0].error_kind == "hedge_lost"


def test_a_failed_leg_leaves_the_other_running(make_adapter, sim):
    llm, p, b, c = chain(make_adapter, hedging={"after_ms": 300})
    sim.set_scenario(p, Scenario(latency_ms=700, faults=[Fault(kind="status", status=503)]))
    sim.set_scenario(b, Scenario(latency_ms=600))
    response = llm.generate(prompt="Hello")
    assert response.deployment == b and response.hedged
    assert [(a.deployment, a.outcome, a.error_kind) for a in response.attempts] == [
        (p, "error", "unavailable"), (b, "ok", None)], "the hedge answered after the 503"
    assert requests(sim, c) == 0

    late, p2, b2, c2 = chain(make_adapter, hedging={"after_ms": 300})
    sim.set_scenario(p2, Scenario(latency_ms=800))
    sim.set_scenario(b2, "down")
    answer = late.generate(prompt="Hello")
    assert answer.deployment == p2 and answer.hedged
    assert [(a.deployment, a.outcome) for a in answer.attempts] == [(p2, "ok"), (b2, "error")]
    assert requests(sim, c2) == 0, "a failed hedge is not walked on from while one runs"

    quick, p3, b3, _ = chain(make_adapter, hedging={"after_ms": 300})
    sim.set_scenario(p3, "down")
    fallback = quick.generate(prompt="Hello")
    assert fallback.deployment == b3 and not fallback.hedged, "a fast failure falls back at once"


def test_last_group_is_hedged_on_itself(make_adapter, sim):
    llm, p, b, c = chain(make_adapter, hedging={"after_ms": 300})
    sim.set_scenario(c, Scenario(faults=[Fault(kind="stall", stall_s=10, first_n=1)]))
    response = llm.generate(prompt="Hello", model="third")
    assert response.deployment == c and response.hedged
    assert requests(sim, c) == 2 and requests(sim, p) == requests(sim, b) == 0
    assert [a.error_kind for a in response.attempts] == ["hedge_lost", None]


def siblings(p1: str, p2: str, b: str) -> dict:
    """Group ``primary`` on two deployments, falling back to ``backup``."""
    return {"model_list": [sim_deployment("primary", p1, key="sk-test-p1-0001"),
                           sim_deployment("primary", p2, key="sk-test-p2-0002"),
                           sim_deployment("backup", b, key="sk-test-backup-0003")],
            "fallbacks": ["primary", "backup"],
            "router_settings": {"num_retries": 0,
                                "hedging": {"after_ms": 300, "cooldown_after": 0}}}


def test_a_hedge_goes_to_another_deployment_of_the_group_first(make_adapter, sim):
    p1, p2, b = unique("hedge-p1"), unique("hedge-p2"), unique("hedge-b")
    llm = make_adapter(siblings(p1, p2, b),
                       model="primary", policies=PolicyPool())
    sim.set_scenario(p1, STALL)
    sim.set_scenario(p2, Scenario(latency_ms=20))
    answers = [llm.generate(prompt=f"q{i}") for i in range(8)]
    hedged = [a for a in answers if a.hedged]
    assert hedged, "litellm's shuffle sent none of 8 calls to the stalled deployment"
    for answer in hedged:
        assert [(a.deployment, a.error_kind) for a in answer.attempts] == \
            [(p1, "hedge_lost"), (p2, None)], "the sibling, not the fallback group"
    assert all(a.deployment == p2 for a in answers) and requests(sim, b) == 0
    assert requests(sim, p1) == len(hedged)


def test_a_resting_sibling_leaves_the_hedge_to_the_fallback(make_adapter, sim):
    p1, p2, b = unique("hedge-p1"), unique("hedge-p2"), unique("hedge-b")
    llm = make_adapter(siblings(p1, p2, b),
                       model="primary", policies=PolicyPool())
    sim.set_scenario(p2, "down")
    for i in range(12):                 # until litellm's shuffle met the 503 and cooled p2
        llm.generate(prompt=f"warm {i}")
        if p2 in llm.gateway.cooldowns.cooling("primary"):
            break
    assert p2 in llm.gateway.cooldowns.cooling("primary")
    sim.set_scenario(p1, STALL)
    answer = llm.generate(prompt="Hello")
    assert answer.hedged and answer.deployment == b
    assert [(a.deployment, a.error_kind) for a in answer.attempts] == \
        [(p1, "hedge_lost"), (b, None)], "the resting sibling got no hedge"


def test_a_persistently_slow_primary_is_cooled_down(make_adapter, sim):
    llm, p, b, c = chain(make_adapter, hedging={"after_ms": 200, "cooldown_after": 2})
    sim.set_scenario(p, Scenario(latency_ms=1500))
    sim.set_scenario(b, Scenario(latency_ms=20))
    first = llm.generate(prompt="q1")
    assert first.hedged and first.deployment == b
    assert llm.gateway.cooldowns.healthy("primary"), "one lost race is bad luck"
    assert llm.generate(prompt="primary", model="backup").deployment == b, "no reset by others"
    second = llm.generate(prompt="q2")
    assert second.hedged and second.deployment == b
    assert not llm.gateway.cooldowns.healthy("primary"), "two in a row: persistently slow"
    sent = requests(sim, p)
    started = time.monotonic()
    third = llm.generate(prompt="q3")
    assert time.monotonic() - started < 1.0, "no wait for the hedge threshold any more"
    assert third.deployment == b and not third.hedged and requests(sim, p) == sent
    [skipped, answered] = third.attempts
    assert (skipped.deployment, skipped.outcome, skipped.error_kind) == (p, "skipped", "cooldown")
    assert skipped.message is not None and "2 hedge races lost in a row" in skipped.message
    assert answered.deployment == b
    [row] = [r for r in collect_status(llm)["deployments"] if r["deployment"] == p]
    assert (row["state"], row["reason"]) == ("cooling", "2 hedge races lost in a row")


def test_a_win_between_lost_races_starts_the_count_over(make_adapter, sim):
    llm, p, b, c = chain(make_adapter, hedging={"after_ms": 300, "cooldown_after": 2})
    sim.set_scenario(p, Scenario(faults=[Fault(kind="stall", stall_s=10, rate=1.0, first_n=1)]))
    assert llm.generate(prompt="q1").hedged                             # lost: a strike
    assert llm.generate(prompt="q2").deployment == p                    # answered: cleared
    sim.set_scenario(p, Scenario(faults=[Fault(kind="stall", stall_s=10, first_n=1)]))
    assert llm.generate(prompt="q3").hedged                             # lost: one strike
    assert llm.gateway.cooldowns.healthy("primary")


def test_the_only_way_to_an_answer_is_never_cooled_down(make_adapter, sim):
    llm, p, b, c = chain(make_adapter, hedging={"after_ms": 200, "cooldown_after": 1})
    sim.set_scenario(c, Scenario(latency_ms=600))
    sim.set_scenario(b, Scenario(faults=[Fault(kind="stall", stall_s=10, first_n=1)]))
    response = llm.generate(prompt="Hello", model="backup")
    assert response.hedged and response.deployment == c
    assert not llm.gateway.cooldowns.healthy("backup"), "third could answer: backup rests"
    sim.set_scenario(c, Scenario(faults=[Fault(kind="stall", stall_s=10, first_n=1)]))
    alone = llm.generate(prompt="Hello", model="third")
    assert alone.hedged and alone.deployment == c
    assert llm.gateway.cooldowns.healthy("third"), "slow beats nothing: third stays open"


def test_after_percentile_follows_observed_latencies(make_adapter, sim):
    llm, p, b, c = chain(
        make_adapter, hedging={"after_percentile": 50, "min_samples": 6, "default_after_ms": 8000})
    hedger = llm.gateway.hedger
    assert hedger is not None and hedger.after_s("primary") == 8.0, "too few samples: default"
    sim.set_scenario(p, Scenario(latency_ms=150))
    for i in range(6):
        assert not llm.generate(prompt=f"q{i}").hedged
    observed = hedger.after_s("primary")
    assert 0.14 <= observed < 2.0, observed
    sim.set_scenario(p, STALL)
    started = time.monotonic()
    response = llm.generate(prompt="stalls")
    assert response.hedged and response.deployment == b
    assert time.monotonic() - started < 6, "hedged after the observed p50, not the 8 s default"


def test_the_percentile_is_unbiased_for_a_short_window():
    hedger = Hedger(HedgePolicy(after_percentile=95, min_samples=5))
    for ms in range(1, 41):                 # 40 answers, 1 ms ... 40 ms, in any order
        hedger.observe("g", float(41 - ms))
    # The 39th of 40 sits at the 39/41 = 95.1th percentile on average (the 38th, at 92.7).
    assert hedger.after_s("g") == pytest.approx(0.039)
    for ms in range(41, 1001):              # the window keeps the last 200: 801 ... 1000 ms
        hedger.observe("g", float(ms))
    assert hedger.after_s("g") == pytest.approx(0.991)     # rank ceil(0.95 × 201) = 191


def test_max_extra_bounds_the_hedges(make_adapter, sim):
    llm, p, b, c = chain(make_adapter, hedging={"after_ms": 200, "max_extra": 2})
    sim.set_scenario(p, STALL)
    sim.set_scenario(b, STALL)
    response = llm.generate(prompt="Hello")
    assert response.deployment == c
    assert (requests(sim, p), requests(sim, b), requests(sim, c)) == (1, 1, 1)
    assert [a.error_kind for a in response.attempts] == ["hedge_lost", "hedge_lost", None]
    settles_to_zero(sim, p)
    settles_to_zero(sim, b)

    # One hedge only: no second one goes to the third group. The stalled primary and its hedge
    # are each cut at their share of the deadline, and the walk's next group answers in the rest.
    one, p1, b1, c1 = chain(make_adapter, hedging={"after_ms": 200, "max_extra": 1})
    sim.set_scenario(p1, STALL)
    sim.set_scenario(b1, STALL)
    response = one.generate(prompt="Hello", timeout=3)
    assert response.deployment == c1
    assert (requests(sim, p1), requests(sim, b1), requests(sim, c1)) == (1, 1, 1)
    assert [(a.deployment, a.error_kind) for a in response.attempts] == \
        [(p1, "timeout"), (b1, "timeout"), (c1, None)]
    assert "share of the call's deadline" in (response.attempts[0].message or "")


def test_no_hedge_without_rate_limit_room(make_adapter, sim):
    llm, p, b, c = chain(make_adapter, hedging={"after_ms": 200}, b_extra={"rpm": 1})
    assert llm.generate(prompt="takes the backup's one request", model="backup").deployment == b
    sim.set_scenario(p, Scenario(faults=[Fault(kind="stall", stall_s=1.5)]))
    response = llm.generate(prompt="Hello")
    assert response.deployment == p and not response.hedged, "answered by the primary, late"
    assert requests(sim, b) == 1, "the backup at its rpm limit got no hedge"

    roomy, p2, b2, _ = chain(make_adapter, hedging={"after_ms": 200}, b_extra={"rpm": 2})
    assert roomy.generate(prompt="one of two", model="backup").deployment == b2
    sim.set_scenario(p2, STALL)
    hedged = roomy.generate(prompt="Hello")
    assert hedged.hedged and hedged.deployment == b2 and requests(sim, b2) == 2

    environment = f"t{uuid.uuid4().hex[:10]}"
    whole, p3, b3, _ = chain(make_adapter, hedging={"after_ms": 200}, settings={"rpm": 1},
                             environment=environment)
    sim.set_scenario(p3, Scenario(faults=[Fault(kind="stall", stall_s=1.5)]))
    answer = whole.generate(prompt="Hello")
    assert answer.deployment == p3 and not answer.hedged and requests(sim, b3) == 0, \
        "the call took the config's one request a minute: none left for a hedge"


def test_no_hedge_without_budget_room(make_adapter, sim):
    # One call's estimate (gpt-4o, ~8 prompt tokens, max_tokens 20) is about $0.00022.
    tight, p, b, _ = chain(make_adapter, budget=0.0003)
    sim.set_scenario(p, Scenario(faults=[Fault(kind="stall", stall_s=1.5)]))
    user = {"user_id": unique("budget-user")}
    response = tight.generate(prompt="Hello", max_tokens=20, metadata=user)
    assert response.deployment == p and not response.hedged
    assert requests(sim, b) == 0, "no budget room for a second attempt: no hedge"

    roomy, p2, b2, _ = chain(make_adapter, budget=0.01)
    sim.set_scenario(p2, STALL)
    user = {"user_id": unique("budget-user")}
    hedged = roomy.generate(prompt="Hello", max_tokens=20, metadata=user)
    assert hedged.hedged and hedged.deployment == b2
    budgets = roomy.policies.budgets
    assert budgets is not None
    spent = [u for u in budgets.usage() if u["id"] == user["user_id"]]
    assert spent[0]["spent"] == pytest.approx(hedged.cost, rel=1e-3), "the hedge is paid for"
    assert spent[0]["reserved"] == 0, "nothing stays reserved"


def test_streams_are_not_hedged(make_adapter, sim):
    llm, p, b, _ = chain(make_adapter, hedging={"after_ms": 100})
    sim.set_scenario(p, Scenario(latency_ms=600))
    stream = llm.generate(prompt="Tell me a story", stream=True)
    assert "".join(stream) and stream.response is not None
    assert stream.response.deployment == p and requests(sim, b) == 0


def test_hedging_config_is_checked(make_adapter, tmp_path):
    from adapters.llm import load_config

    def policy(hedging: str) -> HedgePolicy | None:
        path = tmp_path / f"{uuid.uuid4().hex[:6]}.yaml"
        path.write_text("model_list:\n  - model_name: m\n    litellm_params: {model: openai/gpt-4o}"
                        f"\nrouter_settings:\n  hedging: {hedging}\n")
        return HedgePolicy.from_config(load_config(path, load_dotenv=False, env={}))

    assert policy("{after_ms: 250}") == HedgePolicy(after_ms=250.0)
    assert policy("{after_ms: 250, cooldown_after: 0}") == HedgePolicy(after_ms=250.0,
                                                                      cooldown_after=0)
    assert policy("{after_percentile: 95, min_samples: 30, max_extra: 2}") == HedgePolicy(
        after_percentile=95.0, min_samples=30, max_extra=2)
    assert policy("{after_percentile: p95}") == policy("{after_percentile: 95}") == \
        HedgePolicy(after_percentile=95.0)
    assert policy("{after_percentile: P99.5}") == HedgePolicy(after_percentile=99.5)
    assert policy("null") is None and policy("{after_ms: 250, max_extra: 0}") is None
    with pytest.raises(ConfigError, match=r"router_settings.hedging.after: unknown key .*after_ms"):
        policy("{after: 2}")
    with pytest.raises(ConfigError, match="one of after_ms and after_percentile"):
        policy("{after_ms: 100, after_percentile: 95}")
    with pytest.raises(ConfigError, match="after_percentile"):
        policy("{after_percentile: 150}")
    with pytest.raises(ConfigError, match=r"after_percentile: 1000 is out of range"):
        policy("{after_percentile: p1000}")
    with pytest.raises(ConfigError, match=r"after_percentile: .*got 'fast'.*e\.g\. 95"):
        policy("{after_percentile: fast}")


# ---------------------------------------------------------------------------- TTFT cut-off


def test_ttft_cut_off_fails_a_silent_stream_over(make_adapter, sim):
    llm, p, b, _ = chain(make_adapter, hedging=None, settings={"stream_ttft_timeout": 0.5})
    sim.set_scenario(p, Scenario(latency_ms=5000, content="PRIMARY TEXT"))
    sim.set_scenario(b, Scenario(content="BACKUP TEXT"))
    started = time.monotonic()
    stream = llm.generate(prompt="Tell me a story", stream=True)
    text = "".join(stream)
    assert text == "BACKUP TEXT", "the caller sees only the backup's text"
    assert time.monotonic() - started < 3.5
    response = stream.response
    assert response is not None and response.deployment == b
    cut = response.attempts[0]
    assert (cut.deployment, cut.outcome, cut.error_kind) == (p, "error", "ttft_timeout")
    assert cut.latency_ms is not None and 400 <= cut.latency_ms < 3000
    settles_to_zero(sim, p, "the silent stream's connection was closed")
    # A timeout litellm never saw still cools the primary down (allowed_fails: 0), so the
    # next stream does not wait for the cut-off again.
    sent = requests(sim, p)
    started = time.monotonic()
    again = llm.generate(prompt="Tell me another", stream=True)
    assert "".join(again) == "BACKUP TEXT" and time.monotonic() - started < 0.5 + 1.0
    assert again.response is not None and requests(sim, p) == sent
    skipped = again.response.attempts[0]
    assert (skipped.deployment, skipped.error_kind) == (p, "cooldown")
    assert skipped.message is not None and "no first chunk within 0.5 s" in skipped.message


def test_ttft_cut_off_per_call(make_adapter, sim):
    llm, p, b, _ = chain(make_adapter, hedging=None)
    sim.set_scenario(p, Scenario(latency_ms=5000, content="PRIMARY TEXT"))
    sim.set_scenario(b, Scenario(content="BACKUP TEXT"))
    stream = llm.generate(prompt="Tell me a story", stream=True, stream_ttft_timeout=0.5)
    assert "".join(stream) == "BACKUP TEXT"
    assert stream.response is not None
    assert stream.response.attempts[0].error_kind == "ttft_timeout"
    with pytest.raises(ValueError, match="stream_ttft_timeout"):
        llm.generate(prompt="x", stream=True, stream_ttft_timeout=-1)


def test_a_prompt_first_chunk_is_not_cut(make_adapter, sim):
    llm, p, b, _ = chain(make_adapter, hedging=None, settings={"stream_ttft_timeout": 2})
    sim.set_scenario(p, Scenario(latency_ms=50, chunk_interval_ms=30))
    stream = llm.generate(prompt="Tell me a long story please", stream=True)
    assert "".join(stream) and stream.response is not None
    assert stream.response.deployment == p and requests(sim, b) == 0


# ------------------------------------------------------------------------------ overhead_ms


def test_overhead_is_reported_for_calls_streams_and_cache_hits(make_adapter, sim):
    llm, p, _, _ = chain(make_adapter, hedging=None, settings={"cache": {"type": "local", "ttl": 60}})
    sim.set_scenario(p, Scenario(latency_ms=100))
    answer = llm.generate(prompt="What is open on Saturday?")
    assert answer.overhead_ms is not None and 0 <= answer.overhead_ms <= answer.latency_ms
    assert answer.attempts[-1].latency_ms is not None and answer.attempts[-1].latency_ms >= 90
    assert answer.overhead_ms < answer.latency_ms - 90, "the provider's 100 ms are not overhead"

    stream = llm.generate(prompt="Tell me a story", stream=True)
    "".join(stream)
    streamed = stream.response
    assert streamed is not None and streamed.ttft_ms is not None
    assert streamed.overhead_ms is not None
    assert 0 <= streamed.overhead_ms <= streamed.ttft_ms <= streamed.latency_ms

    hit = llm.generate(prompt="What is open on Saturday?")
    assert hit.cache_hit and hit.overhead_ms == hit.latency_ms

    failing, p2, b2, _ = chain(make_adapter, hedging=None)
    sim.set_scenario(p2, Scenario(latency_ms=300, faults=[Fault(kind="status", status=503)]))
    fell_back = failing.generate(prompt="Hello")
    assert fell_back.deployment == b2 and fell_back.overhead_ms is not None
    assert fell_back.overhead_ms < fell_back.latency_ms - 250, \
        "the failed attempt's 300 ms were spent at the provider"
