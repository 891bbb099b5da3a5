"""The policies wrapped around routing, resolved once per config and shared by its adapters.

Order on the calling path: budget check → cache lookup → rate limit → routing. Each policy is
built from the config here; the adapter only asks for them. Everything in a pool that uses one
Redis URL shares one ``RedisLink``: one set of clients and one breaker, so limits, budgets and
the cache notice an outage together and none of them waits on a Redis another found away.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from .._process.fork import reset_in_child
from .redis_link import RedisLink
from .cache import ResponseCache, cache_from_config
from .._config.loader import Config

if TYPE_CHECKING:
    from .budgets import Budgets
    from .limits import RateLimiter

__all__ = ["Policies", "PolicyPool", "default_policies"]

log = logging.getLogger(__name__)


@dataclass
class Policies:
    cache: ResponseCache | None
    limiter: RateLimiter | None = None
    budgets: Budgets | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set, repr=False)  # settling calls

    def finished(self, task: asyncio.Task[Any]) -> None:
        """A background settlement ended: forget it, and log what it raised."""
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("settling a call failed", exc_info=task.exception())

    async def drain(self, timeout: float = 5.0) -> bool:
        """Wait for this loop's background settlements, then retry budget settlements that
        waited for Redis; False when something is still pending."""
        loop = asyncio.get_running_loop()
        mine = [t for t in self.tasks if t.get_loop() is loop]
        if mine:
            await asyncio.wait(mine, timeout=timeout)
        waiting = await self.budgets.areconcile() if self.budgets is not None else 0
        return waiting == 0 and all(t.done() for t in mine)


class PolicyPool:
    def __init__(self) -> None:
        self._forget()
        reset_in_child(self, PolicyPool._forget)

    def _forget(self) -> None:
        """Start empty; in a forked child the policies are built anew (their locks may be held
        and their Redis connections belong to the parent)."""
        self._lock = threading.RLock()     # building policies takes links under it
        self._items: dict[str, Policies] = {}
        self._links: dict[str, RedisLink] = {}

    def get(self, config: Config) -> Policies:
        key = config.settings_fingerprint()
        with self._lock:
            policies = self._items.get(key)
            if policies is None:
                policies = self._items[key] = _build(config, self.link)
            return policies

    async def aclose(self) -> None:
        """Close the Redis clients of this pool's links (this loop's async ones and the sync
        ones); a later call opens new ones."""
        with self._lock:
            links = list(self._links.values())
        for link in links:
            await link.aclose()
            link.close()

    def link(self, url: str) -> RedisLink:
        """The one connection (and breaker) of this pool to ``url``."""
        with self._lock:
            link = self._links.get(url)
            if link is None:
                link = self._links[url] = RedisLink(url)
            return link


def _build(config: Config, link: Callable[[str], RedisLink]) -> Policies:
    from .counters_redis import backend_for
    from .budgets import Budgets
    from .limits import Limits, RateLimiter

    settings = config.router_settings
    redis_url = settings.redis_url or os.environ.get("REDIS_URL")
    limits = Limits.from_config(config)
    budgets_wanted = bool(config.settings.budgets.model_fields_set)     # a budgets section
    backend = backend_for(config, link=link) if limits.enabled or budgets_wanted else None
    # Counters are shared by every process using the same backend and environment.
    namespace = f"{config.environment}"
    return Policies(
        cache=cache_from_config(settings.cache, environment=config.environment,
                                redis_url=redis_url, link=link),
        limiter=RateLimiter(limits, backend, namespace=namespace, fail_open=True)
        if limits.enabled and backend is not None else None,
        budgets=Budgets.from_config(config, backend, namespace=namespace)
        if backend is not None else None)


@cache
def default_policies() -> PolicyPool:
    """The process's pool: an in-memory cache is shared by every adapter of one config."""
    return PolicyPool()
