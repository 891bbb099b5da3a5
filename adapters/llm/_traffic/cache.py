"""Response cache: identical requests answered without a provider call, at no cost.

The adapter keeps its own cache in front of routing rather than litellm's (which, in the
version pinned, skips requests of more than four messages and crashes on hits without fastapi):
the key is the model group, the messages, every parameter that changes the answer and the
environment's namespace, never a key or a base URL. ``router_settings.cache``::

    cache: {type: local | redis | disk, ttl: 3600, max_size: 1000, namespace: myapp}

Per call: ``generate(..., cache={"no-cache": True, "no-store": True, "ttl": 60})``. A cache that
cannot be reached (Redis down) gives one warning and the calls go on uncached; the Redis cache
shares its connection and breaker with the limits and budgets using the same URL, and on the
event loop it is async (``aget``/``aset``), so a hung Redis never stalls calls.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import UsageError
from .._observability.records import Usage

if TYPE_CHECKING:
    from collections.abc import Callable

    from .redis_link import RedisLink

__all__ = ["CacheControl", "CachedAnswer", "ResponseCache", "cache_from_config"]

log = logging.getLogger("adapters.llm")

# Parameters that do not change the answer: left out of the key.
_NOT_IN_KEY = frozenset({"timeout", "stream", "stream_options", "metadata", "stream_timeout",
                         "num_retries", "mock_response"})


@dataclass(frozen=True)
class CachedAnswer:
    content: str
    finish_reason: str | None
    tool_calls: list[dict[str, Any]]
    usage: dict[str, int]
    cost: float | None
    deployment: str | None
    provider: str | None
    provider_model: str | None
    stored_at: float
    answered_group: str | None = None   # the group that answered the original call

    def usage_object(self) -> Usage:
        return Usage(**self.usage)


@dataclass(frozen=True)
class CacheControl:
    """Per-call controls, from ``generate(cache={...})``."""

    no_cache: bool = False          # do not look up (the answer is still stored)
    no_store: bool = False          # do not store the answer
    ttl: float | None = None

    @classmethod
    def parse(cls, value: Mapping[str, Any] | None) -> CacheControl:
        if value is None:
            return cls()
        if not isinstance(value, Mapping):
            raise UsageError("cache must be a dict like {'no-cache': True, 'no-store': True, "
                             "'ttl': 60}")
        unknown = set(value) - {"no-cache", "no-store", "ttl"}
        if unknown:
            raise UsageError(f"unknown cache control(s) {', '.join(sorted(unknown))}; use "
                             "'no-cache', 'no-store' or 'ttl'")
        ttl = value.get("ttl")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float))
                                or ttl <= 0):
            raise UsageError(f"cache ttl must be a positive number of seconds, not {ttl!r}")
        return cls(bool(value.get("no-cache")), bool(value.get("no-store")),
                   None if ttl is None else float(ttl))


class Backend(Protocol):
    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str, ttl: float) -> None: ...

    async def aget(self, key: str) -> str | None: ...

    async def aset(self, key: str, value: str, ttl: float) -> None: ...


class _SyncBackend:
    """``aget``/``aset`` for a backend whose I/O is local (memory, a SQLite file)."""

    def get(self, key: str) -> str | None:
        raise NotImplementedError

    def set(self, key: str, value: str, ttl: float) -> None:
        raise NotImplementedError

    async def aget(self, key: str) -> str | None:
        return self.get(key)

    async def aset(self, key: str, value: str, ttl: float) -> None:
        self.set(key, value, ttl)


class ResponseCache:
    """Keys, serialisation and failure handling over one backend."""

    def __init__(self, backend: Backend, *, ttl: float, namespace: str) -> None:
        self.backend = backend
        self.ttl = ttl
        self.namespace = namespace
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self._warned = False

    def key(self, group: str, messages: list[dict[str, Any]], params: Mapping[str, Any]) -> str:
        material = {"group": group, "messages": messages,
                    "params": {k: v for k, v in params.items() if k not in _NOT_IN_KEY}}
        digest = hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode())
        return f"{self.namespace}:{digest.hexdigest()}"

    def get(self, key: str) -> CachedAnswer | None:
        try:
            raw = self.backend.get(key)
        except Exception as exc:  # an unreachable cache must not fail the call: warn, go on
            self._failed(exc)
            return None
        return self._found(raw)

    async def aget(self, key: str) -> CachedAnswer | None:
        try:
            raw = await self.backend.aget(key)
        except Exception as exc:  # as in get()
            self._failed(exc)
            return None
        return self._found(raw)

    def _found(self, raw: str | None) -> CachedAnswer | None:
        if raw is None:
            self.misses += 1
            return None
        self.hits += 1
        return CachedAnswer(**json.loads(raw))

    def set(self, key: str, answer: CachedAnswer, ttl: float | None = None) -> None:
        try:
            self.backend.set(key, json.dumps(asdict(answer)), ttl or self.ttl)
        except Exception as exc:  # as above: the answer is served, only not cached
            self._failed(exc)

    async def aset(self, key: str, answer: CachedAnswer, ttl: float | None = None) -> None:
        try:
            await self.backend.aset(key, json.dumps(asdict(answer)), ttl or self.ttl)
        except Exception as exc:  # as above: the answer is served, only not cached
            self._failed(exc)

    def hit_rate(self) -> float | None:
        total = self.hits + self.misses
        return None if total == 0 else self.hits / total

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        if not self._warned:
            self._warned = True
            log.warning("llm-adapter: the response cache is unreachable (%s: %s); calls go on "
                        "uncached", type(exc).__name__, exc)


class LocalBackend(_SyncBackend):
    """In-memory LRU with a size bound and per-entry expiry."""

    def __init__(self, max_size: int = 1000) -> None:
        self.max_size = max_size
        self._items: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item[0] < time.time():
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return item[1]

    def set(self, key: str, value: str, ttl: float) -> None:
        with self._lock:
            self._items[key] = (time.time() + ttl, value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_size:
                self._items.popitem(last=False)


class RedisBackend:
    """Shared by every process using the same Redis: ``SET key value PX ttl``.

    Through a ``RedisLink`` (short timeouts, no retries, the breaker): an unreachable cache
    costs one short timeout, then is skipped until Redis answers a probe.
    """

    def __init__(self, url: str, link: RedisLink | None = None) -> None:
        from .redis_link import RedisLink

        self.link = link or RedisLink(url)

    def get(self, key: str) -> str | None:
        value = self.link.run(lambda conn: conn.client.get(key))
        return None if value is None else str(value)

    def set(self, key: str, value: str, ttl: float) -> None:
        self.link.run(lambda conn: conn.client.set(key, value, px=int(ttl * 1000)))

    async def aget(self, key: str) -> str | None:
        value = await self.link.arun(lambda conn: conn.client.get(key))
        return None if value is None else str(value)

    async def aset(self, key: str, value: str, ttl: float) -> None:
        await self.link.arun(lambda conn: conn.client.set(key, value, px=int(ttl * 1000)))


class DiskBackend(_SyncBackend):
    """A SQLite file, for a cache that survives restarts on one machine."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._local = threading.local()
        with self._conn() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, "
                         "expires REAL, value TEXT)")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = sqlite3.connect(self.path, timeout=5)
            conn.execute("PRAGMA journal_mode = WAL")
        return conn

    def get(self, key: str) -> str | None:
        row = self._conn().execute("SELECT expires, value FROM cache WHERE key = ?",
                                   (key,)).fetchone()
        if row is None or row[0] < time.time():
            return None
        return str(row[1])

    def set(self, key: str, value: str, ttl: float) -> None:
        with self._conn() as conn:
            conn.execute("INSERT OR REPLACE INTO cache VALUES (?, ?, ?)",
                         (key, time.time() + ttl, value))


def cache_from_config(settings: Mapping[str, Any] | None, *, environment: str,
                      redis_url: str | None,
                      link: Callable[[str], RedisLink] | None = None) -> ResponseCache | None:
    """The response cache ``router_settings.cache`` asks for, or None.

    ``link`` gives the shared connection (and breaker) for a Redis URL.
    """
    if not settings:
        return None
    kind = settings.get("type", "local")
    ttl = float(settings.get("ttl", 3600))
    namespace = f"llm-adapter:{settings.get('namespace') or 'cache'}:{environment}"
    backend: Backend
    if kind == "local":
        backend = LocalBackend(int(settings.get("max_size", 1000)))
    elif kind == "redis":
        url = redis_url or _redis_url(settings)
        backend = RedisBackend(url, None if link is None else link(url))
    else:
        home = os.environ.get("LLM_ADAPTER_HOME")
        from .._observability.store import default_path

        base = Path(home) if home else default_path().parent
        backend = DiskBackend(Path(settings.get("path") or base / "cache.sqlite3"))
    return ResponseCache(backend, ttl=ttl, namespace=namespace)


def _redis_url(settings: Mapping[str, Any]) -> str:
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    host = settings.get("host") or os.environ.get("REDIS_HOST", "127.0.0.1")
    port = settings.get("port") or os.environ.get("REDIS_PORT", "6379")
    password = settings.get("password") or os.environ.get("REDIS_PASSWORD")
    auth = f":{password}@" if password else ""
    return f"redis://{auth}{host}:{port}/0"
