"""Real-Redis helpers for the limiter and budget tests: a backend per test key prefix.

Redis tests fail (never skip) when no server listens on 127.0.0.1:6379: `.ci/run` starts one.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from adapters.llm._backend import Backend, BackendUnavailable, MemoryBackend
from adapters.llm._backend_redis import RedisBackend

REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_backend(prefix: str) -> RedisBackend:
    backend = RedisBackend(REDIS_URL, prefix=prefix)
    try:
        backend.ping()
    except BackendUnavailable as exc:
        pytest.fail(f"these tests need a Redis server on 127.0.0.1:6379 ({exc}); start one with "
                    "`redis-server --daemonize yes` or run .ci/run")
    return backend


def drop_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own, its keys deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    drop_keys(name)


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
