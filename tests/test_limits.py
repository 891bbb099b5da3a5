"""Rate limits over both backends: the in-process one and a real Redis
($LLM_ADAPTER_TEST_REDIS_URL, default 127.0.0.1:6379).

Redis tests fail (never skip) when no server listens: `.ci/run` starts one. Each test uses its
own key prefix and deletes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.llm import RateLimited, load_config
from adapters.llm._traffic.counters import Backend, BackendUnavailable, MemoryBackend, Take
from adapters.llm._traffic.counters_redis import backend_for
from adapters.llm._traffic.counters_redis import RedisBackend
from adapters.llm._traffic.limits import DEFAULT_OUTPUT_TOKENS, Limits, RateLimiter

from .redis_support import (REDIS_URL, backend, prefix,  # noqa: F401 (fixtures)
                            redis_backend, shared_redis_url)


def limiter(backend: Backend, window_s: float = 60.0, **limits: object) -> RateLimiter:
    return RateLimiter(Limits(**limits), backend, namespace="ns",  # type: ignore[arg-type]
                       window_s=window_s)


def later(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


# ------------------------------------------------------------------------------- take and deny


async def test_rpm_takes_then_refuses_with_retry_after(backend: Backend) -> None:
    rl = limiter(backend, window_s=2.0, rpm=3)
    started = time.monotonic()
    for _ in range(3):
        assert (await rl.acquire([], 10, deadline=later())).deployment is None
    with pytest.raises(RateLimited) as err:
        await rl.acquire([], 10, deadline=later())
    waited = time.monotonic() - started
    assert 2.0 - waited - 0.2 < err.value.retry_after <= 2.0   # the first take leaves first
    assert "global rpm" in str(err.value) and "3 of 3 requests" in str(err.value)
    assert "max_wait" in str(err.value)


async def test_tpm_counts_tokens(backend: Backend) -> None:
    rl = limiter(backend, tpm=100)
    await rl.acquire([], 60, deadline=later())
    with pytest.raises(RateLimited, match="global tpm .*60 of 100 tokens.* needs 60"):
        await rl.acquire([], 60, deadline=later())
    await rl.acquire([], 40, deadline=later())
    assert rl.usage()["global"] == {"tpm": {"used": 100, "limit": 100}}


async def test_a_call_larger_than_the_limit_can_never_fit(backend: Backend) -> None:
    rl = limiter(backend, tpm=100, max_wait=10)
    started = time.monotonic()
    with pytest.raises(RateLimited, match="can never fit") as err:
        await rl.acquire([], 101, deadline=later())
    assert err.value.retry_after is None and time.monotonic() - started < 0.5


async def test_global_and_deployment_are_taken_together_or_not_at_all(backend: Backend) -> None:
    rl = limiter(backend, rpm=10, tpm=1000, per_deployment={"a": (1, None)})
    assert (await rl.acquire(["a"], 5, deadline=later())).deployment == "a"
    with pytest.raises(RateLimited, match="deployment 'a' rpm"):
        await rl.acquire(["a"], 5, deadline=later())
    usage = rl.usage()
    assert usage["global"] == {"rpm": {"used": 1, "limit": 10}, "tpm": {"used": 5, "limit": 1000}}
    assert usage["deployments"] == {"a": {"rpm": {"used": 1, "limit": 1}}}


def test_backend_multi_key_take_never_takes_part(backend: Backend) -> None:
    room, full = Take("room", 5, 1), Take("full", 1, 1)
    assert backend.window_take([[full]], 60, token="t0").ok
    taken = backend.window_take([[room, full]], 60, token="t1")
    assert not taken.ok and taken.blocking == 1 and 59 < taken.retry_after <= 60
    assert backend.window_take([[room, full]], 60, token="peek", dry_run=True).used == (0, 1)
    # alternatives: the first with room is taken with group 0, the others are untouched
    taken = backend.window_take([[room], [full], [Take("b", 2, 1)], [Take("c", 2, 1)]], 60,
                                token="t2")
    assert taken.ok and taken.choice == 1
    assert backend.window_take([[Take(k, 9, 0) for k in ("room", "b", "c")]], 60, token="p",
                               dry_run=True).used == (1, 1, 0)


async def test_first_deployment_with_room_in_the_given_order(backend: Backend) -> None:
    rl = limiter(backend, per_deployment={"a": (1, None), "b": (None, 100)})
    assert (await rl.acquire(["a", "b", "c"], 60, deadline=later())).deployment == "a"
    assert (await rl.acquire(["a", "b", "c"], 60, deadline=later())).deployment == "b"
    assert (await rl.acquire(["a", "b", "c"], 60, deadline=later())).deployment == "c"  # no limit
    assert (await rl.acquire(["b", "a"], 40, deadline=later())).deployment == "b"
    with pytest.raises(RateLimited, match="every deployment is at its limit"):
        await rl.acquire(["a", "b"], 60, deadline=later())
    assert rl.capacity("c") and not rl.capacity("a") and not rl.capacity("b")


async def test_without_per_deployment_limits_the_permit_names_no_deployment(
        backend: Backend) -> None:
    rl = limiter(backend, rpm=5, per_deployment={"other": (1, 1)})
    assert (await rl.acquire(["a", "b"], 1, deadline=later())).deployment is None
    assert (await limiter(backend).acquire(["a"], 1, deadline=later())).deployment is None


async def test_settle_replaces_the_token_estimate(backend: Backend) -> None:
    rl = limiter(backend, tpm=100, per_deployment={"a": (None, 100)})
    permit = await rl.acquire(["a"], 80, deadline=later())
    await rl.settle(permit, 20)
    assert rl.usage()["global"]["tpm"]["used"] == 20
    assert rl.usage()["deployments"]["a"]["tpm"]["used"] == 20
    await rl.acquire(["a"], 70, deadline=later())
    permit = await rl.acquire([], 10, deadline=later())
    await rl.settle(permit, 30)             # more than estimated counts too
    assert rl.usage()["global"]["tpm"]["used"] == 120


async def test_namespaces_separate_counters(backend: Backend) -> None:
    one = RateLimiter(Limits(rpm=1), backend, namespace="one")
    await one.acquire([], 1, deadline=later())
    await RateLimiter(Limits(rpm=1), backend, namespace="two").acquire([], 1, deadline=later())
    with pytest.raises(RateLimited):
        await RateLimiter(Limits(rpm=1), backend, namespace="one").acquire([], 1,
                                                                           deadline=later())


# ------------------------------------------------------------------------------------ waiting


async def test_max_wait_waits_for_the_window_to_roll(backend: Backend) -> None:
    rl = limiter(backend, window_s=0.5, rpm=2, max_wait=2)
    for _ in range(2):
        await rl.acquire([], 1, deadline=later())
    started = time.monotonic()
    await rl.acquire([], 1, deadline=later())
    assert 0.3 < time.monotonic() - started < 1.5


async def test_waiting_never_passes_the_deadline_or_max_wait(backend: Backend) -> None:
    rl = limiter(backend, window_s=1.0, rpm=1, max_wait=5)
    await rl.acquire([], 1, deadline=later())
    started = time.monotonic()
    with pytest.raises(RateLimited, match="the call's deadline") as err:
        await rl.acquire([], 1, deadline=started + 0.2)
    assert time.monotonic() - started < 0.3 and err.value.retry_after > 0.5   # no waiting
    short = limiter(backend, window_s=1.0, rpm=1, max_wait=0.2)
    with pytest.raises(RateLimited, match="max_wait"):
        await short.acquire([], 1, deadline=later())
    assert time.monotonic() - started < 0.5


# ---------------------------------------------------------------------------- config, tokens


def test_limits_from_config(tmp_path: Path) -> None:
    path = tmp_path / "litellm_config.yaml"
    path.write_text(textwrap.dedent("""\
        model_list:
          - model_name: m
            litellm_params: {model: openai/gpt-4o, api_key: k, rpm: 10, tpm: 2000}
            model_info: {id: primary}
          - model_name: m
            litellm_params: {model: openai/gpt-4o-mini, api_key: k}
            tpm: 500
            model_info: {id: second}
          - model_name: other
            litellm_params: {model: openai/gpt-4o, api_key: k}
        router_settings: {rpm: 500, tpm: 100000, max_wait: 2.5}
        """))
    limits = Limits.from_config(load_config(path, load_dotenv=False))
    assert (limits.rpm, limits.tpm, limits.max_wait) == (500, 100000, 2.5)
    assert dict(limits.per_deployment) == {"primary": (10, 2000), "second": (None, 500)}
    assert limits.enabled and not Limits().enabled
    assert isinstance(backend_for(load_config(path, load_dotenv=False), env={}), MemoryBackend)
    assert isinstance(backend_for(load_config(path, load_dotenv=False),
                                  env={"REDIS_URL": REDIS_URL}), RedisBackend)


def test_estimate_tokens_counts_the_prompt_and_the_answer() -> None:
    rl = limiter(MemoryBackend())
    messages = [{"role": "user", "content": "Hello there, how are you today? " * 20}]
    with_max = rl.estimate_tokens("openai/gpt-4o", messages, 100)
    assert 100 + 100 < with_max < 100 + 300
    assert rl.estimate_tokens("openai/gpt-4o", messages, None) == \
        with_max - 100 + DEFAULT_OUTPUT_TOKENS


# ------------------------------------------------------------------------------- many processes


def _hammer(prefix: str, attempts: int, barrier: object, results: object) -> None:
    """One process: ``attempts`` acquires over about a second, counting the successes."""
    rl = RateLimiter(Limits(rpm=50), RedisBackend(shared_redis_url(), prefix=prefix), namespace="ns")

    async def run() -> int:
        ok = 0
        for _ in range(attempts):
            try:
                await rl.acquire(["x"], 1, deadline=time.monotonic() + 5)
                ok += 1
            except RateLimited:
                pass
            await asyncio.sleep(0.025)
        return ok

    barrier.wait()  # type: ignore[attr-defined]
    results.put(asyncio.run(run()))  # type: ignore[attr-defined]


@pytest.mark.parametrize("processes", [2, 4])
def test_processes_sharing_redis_stay_within_the_limit(processes: int, prefix: str) -> None:
    redis_backend(prefix)
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    workers = [ctx.Process(target=_hammer, args=(prefix, 40, barrier, results))
               for _ in range(processes)]
    for w in workers:
        w.start()
    counts = [results.get(timeout=30) for _ in workers]
    for w in workers:
        w.join(timeout=10)
        assert w.exitcode == 0
    assert sum(counts) == 50, counts        # never more, and no capacity lost either
    assert all(c > 0 for c in counts), counts


# --------------------------------------------------------------------------------- Redis away


async def test_unreachable_redis_raises_quickly_naming_the_url_without_password() -> None:
    rl = RateLimiter(Limits(rpm=5), RedisBackend("redis://:hunter2@127.0.0.1:1/0"),
                     namespace="ns")
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as err:
        await rl.acquire([], 1, deadline=later())
    assert time.monotonic() - started < 1.0      # no retries with backoff
    assert "redis://:***@127.0.0.1:1/0" in str(err.value) and "hunter2" not in str(err.value)
    assert "REDIS_URL" in str(err.value)
    with pytest.raises(BackendUnavailable):
        rl.capacity("a")


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A server that accepts connections and never answers: a hung Redis."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return
    threading.Thread(target=accept, daemon=True).start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    for s in (server, *accepted):
        s.close()


def test_a_silent_redis_times_out_after_the_socket_timeout(silent_redis: str) -> None:
    backend = RedisBackend(silent_redis, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="Timeout"):
        backend.window_take([[Take("k", 1, 1)]], 60, token="t")
    assert 0.25 < time.monotonic() - started < 1.5


async def test_failing_open_a_hung_redis_costs_one_timeout_not_one_per_call(
        silent_redis: str) -> None:
    rl = RateLimiter(Limits(rpm=1), RedisBackend(silent_redis, timeout=0.3), namespace="ns",
                     fail_open=True)
    started = time.monotonic()
    for _ in range(5):
        await rl.acquire([], 1, deadline=later())
    assert 0.25 < time.monotonic() - started < 0.9      # five timeouts would be 1.5 s


async def test_fail_open_allows_calls_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    rl = RateLimiter(Limits(rpm=1, tpm=10), RedisBackend("redis://127.0.0.1:1/0"),
                     namespace="ns", fail_open=True)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            permit = await rl.acquire([], 5, deadline=later())
            await rl.settle(permit, 8)
        assert rl.capacity("a")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "not rate limited" in warnings[0].getMessage()


def test_one_backend_serves_several_event_loops(prefix: str) -> None:
    backend = redis_backend(prefix)
    rl = RateLimiter(Limits(rpm=2), backend, namespace="ns")

    async def acquire() -> None:
        try:
            await rl.acquire([], 1, deadline=later())
        finally:
            await backend.aclose()          # this loop's client, before the loop ends

    asyncio.run(acquire())
    asyncio.run(acquire())                  # a new loop: its own async client
    with pytest.raises(RateLimited):
        asyncio.run(acquire())
    backend.close()
