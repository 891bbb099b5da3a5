"""Settlement and Redis outages where a caller meets them: a private Redis killed, stopped.

Each test runs its own ``redis-server`` so it can kill it (SIGKILL) between a call's budget
reservation and its settlement, or hang it (SIGSTOP) under a running event loop. The calls go
through the real adapter, litellm and the provider simulator; rows are counted in the store.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from typing import Any

import pytest

from adapters.llm import (
    AllProvidersFailed,
    AuthenticationError,
    BackendUnavailable,
    LLMAdapterError,
    LLMResponse,
    ProviderError,
)
from adapters.llm._traffic.counters_redis import RedisBackend
from adapters.llm._breaker import Breaker
from adapters.llm._traffic.budgets import BudgetRule, Budgets
from adapters.llm._traffic.policies import PolicyPool
from adapters.llm.simulator import Fault, Scenario

from .conftest import one_group, unique
from .redis_support import PrivateRedis, private_redis  # noqa: F401 (fixture)
from .waiting import await_until, wait_until

CALL = {"user": "alice", "session": None, "agent": None, "tags": [], "environment": "e"}


def budgeted(make_adapter: Any, name: str) -> Any:
    return make_adapter(one_group(name, key="sk-test-settle-0001", budgets={
        "limits": [{"scope": "user", "limit": 100, "period": "day"}]}), policies=PolicyPool())


def rows(llm: Any, where: str, *args: object) -> list[tuple[Any, ...]]:
    assert llm.flush_langfuse(timeout=10)
    with sqlite3.connect(llm.telemetry.store.path) as conn:
        return list(conn.execute(f"SELECT status, error_kind FROM calls WHERE {where}", args))


def reserved_in_redis(url: str) -> float:
    """What every budget counter in ``url`` holds reserved (calls in flight)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=1)
    try:
        return sum(float(client.hget(k, "reserved") or 0) for k in client.scan_iter("*:budget:*")
                   if client.type(k) == b"hash")
    finally:
        client.close()


def in_thread(target: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = target()
        except BaseException as exc:  # handed to the test, which asserts on it
            out["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def spent_today(llm: Any) -> float:
    return sum(r["spent"] for r in llm.policies.budgets.usage())


# ---------------------------------------------------------------------------- Redis killed


def test_redis_killed_mid_call_the_answer_is_returned_recorded_and_settled_later(
        make_adapter, sim, monkeypatch, private_redis: PrivateRedis,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("REDIS_URL", private_redis.url)
    name = unique("settle-killed")
    sim.set_scenario(name, Scenario(latency_ms=1500))
    llm = budgeted(make_adapter, name)
    thread, out = in_thread(lambda: llm.generate(prompt="which therapists work Saturdays?",
                                                 metadata={"user_id": "alice"}, timeout=20))
    wait_until(lambda: reserved_in_redis(private_redis.url) > 0, timeout=60,
               what="the reservation")
    private_redis.kill()                            # the call is at the provider now
    with caplog.at_level(logging.WARNING):
        thread.join(timeout=60)
    assert "error" not in out, f"an answered call raised {out.get('error')!r}"
    answer: LLMResponse = out["value"]
    assert answer.content and answer.cost and answer.cost > 0
    assert rows(llm, "call_id = ?", answer.call_id) == [("ok", None)]     # recorded once
    assert llm.policies.budgets.late == (1, pytest.approx(answer.cost))
    said = [r.getMessage() for r in caplog.records if "waits in this process" in r.getMessage()]
    assert len(said) == 1 and "unavailable" in said[0]

    private_redis.start()                           # back, empty (no persistence)
    second = None
    deadline = time.monotonic() + 10
    while second is None:                           # the breaker lets a probe through soon
        try:
            second = llm.generate(prompt="and on Sundays?", metadata={"user_id": "alice"})
        except BackendUnavailable:
            assert time.monotonic() < deadline, "calls did not succeed after Redis came back"
            time.sleep(0.2)
    wait_until(lambda: llm.policies.budgets.late[0] == 0, timeout=10, what="the late settlement")
    assert spent_today(llm) == pytest.approx(answer.cost + second.cost)


def test_provider_error_is_raised_not_the_failed_release(
        make_adapter, sim, monkeypatch, private_redis: PrivateRedis) -> None:
    monkeypatch.setenv("REDIS_URL", private_redis.url)
    name = unique("settle-fails")
    sim.set_scenario(name, Scenario(latency_ms=1500, faults=[Fault("status", status=401)]))
    llm = budgeted(make_adapter, name)
    thread, out = in_thread(lambda: llm.generate(prompt=f"hello {name}",
                                                 metadata={"user_id": "alice"}, timeout=20))
    wait_until(lambda: reserved_in_redis(private_redis.url) > 0, timeout=60,
               what="the reservation")
    private_redis.kill()
    thread.join(timeout=60)
    error = out.get("error")
    assert isinstance(error, AllProvidersFailed), f"{error!r} is not the provider's error"
    assert any(isinstance(e, AuthenticationError) for e in error.exceptions)
    assert rows(llm, "input LIKE ?", f"%{name}%") == [("error", "all_failed")]


# ---------------------------------------------------------------------------- Redis hung


async def test_hung_redis_never_stalls_the_loop_and_budgets_fail_fast(
        make_adapter, sim, monkeypatch, private_redis: PrivateRedis) -> None:
    monkeypatch.setenv("REDIS_URL", private_redis.url)
    name = unique("settle-hung")
    llm = budgeted(make_adapter, name)
    meta = {"user_id": "alice"}
    assert (await llm.agenerate(prompt="warm up", metadata=meta)).content
    ticks, interval, window = 0, 0.02, 2.0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(interval)
            ticks += 1

    private_redis.stop()
    refused, other = 0, []
    tick_task = asyncio.create_task(ticker())
    started = time.monotonic()
    while time.monotonic() - started < window:
        try:
            await llm.agenerate(prompt=f"while Redis hangs {name}", metadata=meta)
        except BackendUnavailable as exc:
            refused += 1
            assert "budgets" in str(exc) and "REDIS_URL" in str(exc)
        except LLMAdapterError as exc:
            other.append(exc)
        await asyncio.sleep(0.005)      # a caller's pace, leaving the loop room for others
    elapsed = time.monotonic() - started
    tick_task.cancel()
    assert other == [] and refused > 0
    expected = elapsed / interval
    assert ticks >= 0.5 * expected, f"{ticks} ticks of {expected:.0f}: the event loop stalled"
    # a check blocking 0.5 s each would allow 4 calls in the window: 40 take 20 s
    assert refused >= 40, f"only {refused} calls finished in {elapsed:.1f} s"
    refused_rows = rows(llm, "error_kind = 'BackendUnavailable' AND input LIKE ?", f"%{name}%")
    assert len(refused_rows) == refused, "every refused call is recorded"

    private_redis.cont()
    back = time.monotonic()
    answer = None
    while answer is None:
        try:
            answer = await llm.agenerate(prompt="after the hang", metadata=meta)
        except BackendUnavailable:
            assert time.monotonic() - back < 5, "calls did not succeed after SIGCONT"
            await asyncio.sleep(0.05)
    assert answer.content


def test_a_settle_that_timed_out_is_counted_once(private_redis: PrivateRedis) -> None:
    """Redis may run a timed-out settle when it resumes; the late retry must not add again."""
    b = Budgets([BudgetRule("user", 10.0, "day")],
                RedisBackend(private_redis.url, prefix="t", timeout=0.3), namespace="ns")
    reservation = b.check_and_reserve(**CALL, estimated_cost=0.5)
    private_redis.stop()
    started = time.monotonic()
    assert b.settle(reservation, 0.25) == []            # never raises
    assert time.monotonic() - started < 3
    assert b.late == (1, 0.25)
    private_redis.cont()
    wait_until(lambda: not b.reconcile(), timeout=10, interval=0.2,
               what="the late settlement taken")
    assert [(round(r["spent"], 9), round(r["reserved"], 9)) for r in b.usage()] == [(0.25, 0)]


def test_settlements_wait_within_a_bound_and_say_what_was_dropped(
        private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture) -> None:
    b = Budgets([BudgetRule("user", 10.0, "day")], RedisBackend(private_redis.url, prefix="t"),
                namespace="ns", max_late=3)
    reservations = [b.check_and_reserve(**CALL, estimated_cost=0.1) for _ in range(5)]
    private_redis.kill()
    with caplog.at_level(logging.WARNING):
        for r in reservations:
            b.settle(r, 0.1)
    assert b.late == (3, pytest.approx(0.3))
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 2 and "oldest are dropped" in messages[1]
    private_redis.start()
    time.sleep(1.1)                                     # the breaker's next probe
    with caplog.at_level(logging.WARNING):
        assert b.reconcile() == 0
    assert any("2 budget settlements ($0.20) were dropped" in r.getMessage() for r in caplog.records)
    assert [(r["id"], round(r["spent"], 9)) for r in b.usage()] == [("alice", 0.3)]  # listed again


# ------------------------------------------------------------------------------- breaker


def test_the_breaker_lets_one_probe_through_per_interval() -> None:
    now = [100.0]
    breaker = Breaker(probe_s=1.0, clock=lambda: now[0])
    assert breaker.admit() and breaker.closed
    breaker.failed()
    assert not breaker.admit()
    now[0] += 0.5
    assert not breaker.admit()
    now[0] += 0.6
    assert breaker.admit(), "a probe after the interval"
    assert not breaker.admit(), "only one probe at a time"
    breaker.failed()
    assert not breaker.admit() and breaker.down_for() == pytest.approx(1.1)
    now[0] += 1.0
    assert breaker.admit()
    breaker.succeeded()
    assert breaker.closed and breaker.admit() and breaker.admit()


def test_limits_budgets_and_cache_share_one_breaker_per_redis(make_adapter, monkeypatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    pool = PolicyPool()
    llm = make_adapter("""
    model_list:
      - model_name: main
        litellm_params: {model: openai/gpt-4o, api_key: k, rpm: 10}
    router_settings: {cache: {type: redis}}
    budgets: {limits: [{scope: user, limit: 1, period: day}]}
    """, policies=pool)
    policies = llm.policies
    links = {id(policies.limiter.backend.link), id(policies.budgets.backend.link),
             id(policies.cache.backend.link)}
    assert len(links) == 1 and pool.link("redis://127.0.0.1:1/0") is policies.budgets.backend.link


def test_backend_unavailable_is_public_and_says_what_to_do() -> None:
    assert issubclass(BackendUnavailable, LLMAdapterError)
    assert not issubclass(BackendUnavailable, ProviderError)
    b = Budgets([BudgetRule("user", 1.0, "day")], RedisBackend("redis://:pw0rd@127.0.0.1:1/0"),
                namespace="ns")
    with pytest.raises(BackendUnavailable) as err:
        b.check_and_reserve(**CALL, estimated_cost=0.1)
    text = str(err.value)
    assert "start Redis" in text and "REDIS_URL" in text and "budgets.fail_open" in text
    assert "remove the budgets section" in text and "pw0rd" not in text


async def test_drain_adds_what_waited_and_closed_clients_reopen(
        make_adapter, sim, monkeypatch, private_redis: PrivateRedis) -> None:
    monkeypatch.setenv("REDIS_URL", private_redis.url)
    name = unique("settle-drain")
    sim.set_scenario(name, Scenario(latency_ms=1000))
    llm = budgeted(make_adapter, name)
    meta = {"user_id": "alice"}
    call = asyncio.create_task(llm.agenerate(prompt="in flight", metadata=meta))
    await await_until(lambda: reserved_in_redis(private_redis.url), timeout=60,
                      what="the reservation")
    private_redis.kill()
    answer = await call
    assert llm.policies.budgets.late[0] == 1
    private_redis.start()
    await asyncio.sleep(1.1)                            # the breaker's next probe
    assert await llm.policies.drain()
    assert llm.policies.budgets.late == (0, 0)
    assert spent_today(llm) == pytest.approx(answer.cost)
    await llm._policy_pool.aclose()
    assert (await llm.agenerate(prompt="after closing", metadata=meta)).content
