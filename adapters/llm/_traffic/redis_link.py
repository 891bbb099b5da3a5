"""One Redis server as this process reaches it: clients, short timeouts and a circuit breaker.

Rate limits, budgets and the response cache share one ``RedisLink`` per URL (the policy pool
hands them out), so a Redis that went away is noticed once for all of them: after a failure no
call waits on it again until a probe gets an answer, and a probe is one caller at most every
``probe_s`` seconds. On an event loop every command goes through ``redis.asyncio`` with
connect, socket and whole-command timeouts, so a hung Redis costs the waiting call at most one
timeout and never stalls the loop. The sync client is for sync callers (reports, the CLI).

The clients do not retry: a script that timed out may have run, and running it again could
count twice. ``BackendUnavailable.maybe_applied`` tells the caller which failures those are.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple, TypeVar

from .._breaker import Breaker
from .._config.schema import masked
from ..errors import BackendUnavailable

__all__ = ["Conn", "RedisLink"]

T = TypeVar("T")


class Conn(NamedTuple):
    """A redis client and its registered scripts (each runs by EVALSHA, loading on a miss)."""

    client: Any
    scripts: dict[str, Any]

    def script(self, source: str) -> Any:
        if source not in self.scripts:
            self.scripts[source] = self.client.register_script(source)
        return self.scripts[source]


class RedisLink:
    """The clients of one Redis URL (one sync, one async per event loop) behind one breaker."""

    def __init__(self, url: str, *, timeout: float = 0.5, probe_s: float = 1.0) -> None:
        self.url, self.timeout = url, timeout
        self.description = f"Redis at {masked(url)}"
        self.breaker = Breaker(probe_s)
        self._lock = threading.Lock()
        self._sync: Conn | None = None
        self._async: dict[asyncio.AbstractEventLoop, Conn] = {}
        self._last_error = ""

    # ------------------------------------------------------------------------------ clients

    def _new(self, module: Any, retry: Any) -> Conn:
        from redis.backoff import NoBackoff
        client = module.Redis.from_url(self.url, retry=retry(NoBackoff(), 0),
                                       decode_responses=True, socket_timeout=self.timeout,
                                       socket_connect_timeout=self.timeout)
        return Conn(client, {})

    def _conn(self) -> Conn:
        with self._lock:
            if self._sync is None:
                import redis
                import redis.retry
                self._sync = self._new(redis, redis.retry.Retry)
            return self._sync

    def _aconn(self) -> Conn:
        loop = asyncio.get_running_loop()
        with self._lock:
            if loop not in self._async:
                for closed in [old for old in self._async if old.is_closed()]:
                    del self._async[closed]     # their connections died with their loop
                import redis.asyncio
                import redis.asyncio.retry
                self._async[loop] = self._new(redis.asyncio, redis.asyncio.retry.Retry)
            return self._async[loop]

    # ------------------------------------------------------------------------------ commands

    def run(self, op: Callable[[Conn], T]) -> T:
        """``op`` on the sync client, through the breaker."""
        with self._through_breaker():
            return op(self._conn())

    async def arun(self, op: Callable[[Conn], Awaitable[T]]) -> T:
        """``op`` on this loop's async client, through the breaker.

        Connecting, the handshake and each reply have ``timeout`` each; the whole is bounded
        by three of them, in case a reply trickles in.
        """
        with self._through_breaker():
            conn = self._aconn()        # outside the timeout: the first one imports redis
            async with asyncio.timeout(3 * self.timeout):
                return await op(conn)

    @contextmanager
    def _through_breaker(self) -> Iterator[None]:
        """Refuse at once while the breaker is open; a failure of the body opens it, as
        ``BackendUnavailable`` when the server is away; its success closes it."""
        self._admit()
        try:
            yield
        except BaseException as exc:
            failure = self._failure(exc)
            if failure is exc:
                raise
            raise failure from exc
        self.breaker.succeeded()

    def _admit(self) -> None:
        if not self.breaker.admit():
            raise BackendUnavailable(
                f"{self.description} is unavailable (no answer for "
                f"{self.breaker.down_for():.1f} s, last: {self._last_error}; tried again at "
                f"most every {self.breaker.probe_s:g} s); start Redis or fix "
                "router_settings.redis_url / REDIS_URL")

    def _failure(self, exc: BaseException) -> BaseException:
        """What to raise for ``exc``: ``BackendUnavailable`` when the server is away."""
        import redis

        away = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ReadOnlyError,
                OSError, TimeoutError)
        if not isinstance(exc, away):       # it answered (a script error), or we were cancelled
            self.breaker.abandoned()
            return exc
        self.breaker.failed()
        self._last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return BackendUnavailable(
            f"{self.description} is unavailable ({self._last_error}); start Redis or fix "
            "router_settings.redis_url / REDIS_URL",
            maybe_applied=isinstance(exc, (redis.TimeoutError, TimeoutError)))

    def ping(self) -> float:
        """Round-trip seconds."""
        started = time.perf_counter()
        self.run(lambda conn: conn.client.ping())
        return time.perf_counter() - started

    # ------------------------------------------------------------------------------- closing

    def close(self) -> None:
        with self._lock:
            conn, self._sync = self._sync, None
        if conn is not None:
            conn.client.close()

    async def aclose(self) -> None:
        """Close this event loop's async client."""
        with self._lock:
            conn = self._async.pop(asyncio.get_running_loop(), None)
        if conn is not None:
            await conn.client.aclose()
