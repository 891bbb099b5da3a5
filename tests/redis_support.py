"""Real-Redis helpers for the limiter and budget tests: a backend per test key prefix.

The shared server is ``$LLM_ADAPTER_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``).
Every key a test run makes there carries the run's id (``RUN``: in key prefixes, environment
names and deployment ids), and the session deletes them at its end. Without a server, a test
that needs it fails with the reason under CI (``.ci/run`` starts one) and is skipped elsewhere.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import os
import uuid
from functools import cache
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from adapters.llm._traffic.counters import Backend, BackendUnavailable, MemoryBackend
from adapters.llm._traffic.counters_redis import RedisBackend

from .waiting import wait_until

REDIS_URL = os.environ.get("LLM_ADAPTER_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
RUN = uuid.uuid4().hex[:6]          # in every name a run gives Redis, so its keys can be found


@cache
def _unreachable(url: str) -> str | None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    return None


def shared_redis_url() -> str:
    """The shared test Redis; without one the test fails under CI and is skipped elsewhere."""
    problem = _unreachable(REDIS_URL)
    if problem is not None:
        message = (f"needs a Redis server at {REDIS_URL} ({problem}): start one with "
                   "`redis-server --daemonize yes`, or set LLM_ADAPTER_TEST_REDIS_URL")
        if os.environ.get("CI"):
            pytest.fail(f"{message} (.ci/run starts one)")
        pytest.skip(message)
    return REDIS_URL


def redis_backend(prefix: str) -> RedisBackend:
    backend = RedisBackend(shared_redis_url(), prefix=prefix)
    try:
        backend.ping()
    except BackendUnavailable as exc:
        pytest.fail(f"the Redis server at {REDIS_URL} stopped answering: {exc}")
    return backend


def drop_keys(pattern: str) -> int:
    """Delete the shared server's keys matching ``pattern``; how many were deleted."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(pattern, count=1000))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


def drop_run_keys() -> None:
    """What this run left in the shared server (nothing to do where there is none)."""
    if _unreachable(REDIS_URL) is None:
        drop_keys(f"*{RUN}*")


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own, its keys deleted afterwards."""
    name = f"test-{RUN}-{uuid.uuid4().hex[:8]}"
    yield name
    if _unreachable(REDIS_URL) is None:
        drop_keys(f"{name}:*")


@pytest_asyncio.fixture(params=["memory", "redis"], loop_scope="function")
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """Both backends; the Redis one's clients are closed on the test's own event loop."""
    if request.param == "memory":
        yield MemoryBackend()
        return
    made = redis_backend(request.getfixturevalue("prefix"))
    yield made
    await made.aclose()
    made.close()


def wait_for_ping(client: Any, what: str, timeout: float = 10.0) -> None:
    """Wait until a just started redis-server answers ``client``'s PING."""
    import redis

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    wait_until(answers, timeout=timeout, what=what, interval=0.025)


class PrivateRedis:
    """A redis-server of one test's own, to kill, restart, stop (SIGSTOP) and continue."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is needed (apt-get install redis-server)"
        self.binary = binary
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--save", "",
                                      "--appendonly", "no", "--daemonize", "no"],
                                     stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=1)
        try:
            wait_for_ping(client, f"redis-server on port {self.port} answering")
        finally:
            client.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def cont(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.kill()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.close()
