"""Real-Redis helpers for the limiter and budget tests: a backend per test key prefix.

Redis tests fail (never skip) when no server listens on 127.0.0.1:6379: `.ci/run` starts one.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
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
            for _ in range(200):
                try:
                    client.ping()
                    return
                except redis.RedisError:
                    time.sleep(0.025)
            pytest.fail(f"redis-server on port {self.port} did not start")
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
