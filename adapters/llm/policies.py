"""The policies wrapped around routing, resolved once per config and shared by its adapters.

Order on the calling path: budget check → cache lookup → rate limit → routing. Each policy is
built from the config here; the adapter only asks for them.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import cache

from typing import TYPE_CHECKING

from ._fork import reset_in_child
from .caching import ResponseCache, cache_from_config
from .config import Config

if TYPE_CHECKING:
    from .budgets import Budgets
    from .limits import RateLimiter

__all__ = ["Policies", "PolicyPool", "default_policies"]


@dataclass
class Policies:
    cache: ResponseCache | None
    limiter: RateLimiter | None = None
    budgets: Budgets | None = None


class PolicyPool:
    def __init__(self) -> None:
        self._forget()
        reset_in_child(self, PolicyPool._forget)

    def _forget(self) -> None:
        """Start empty; in a forked child the policies are built anew (their locks may be held
        and their Redis connections belong to the parent)."""
        self._lock = threading.Lock()
        self._items: dict[str, Policies] = {}

    def get(self, config: Config) -> Policies:
        key = config.settings_fingerprint()
        with self._lock:
            policies = self._items.get(key)
            if policies is None:
                policies = self._items[key] = _build(config)
            return policies


def _build(config: Config) -> Policies:
    from ._backend import backend_for
    from .budgets import Budgets
    from .limits import Limits, RateLimiter

    settings = config.router_settings
    redis_url = settings.redis_url or os.environ.get("REDIS_URL")
    limits = Limits.from_config(config)
    budgets_wanted = bool((config.sections.get("budgets") or {}) or
                          (config.profile.extra.get("budgets") or {}))
    backend = backend_for(config) if limits.enabled or budgets_wanted else None
    # Counters are shared by every process using the same backend and environment.
    namespace = f"{config.environment}"
    return Policies(
        cache=cache_from_config(settings.cache, environment=config.environment,
                                redis_url=redis_url),
        limiter=RateLimiter(limits, backend, namespace=namespace, fail_open=True)
        if limits.enabled and backend is not None else None,
        budgets=Budgets.from_config(config, backend, namespace=namespace)
        if backend is not None else None)


@cache
def default_policies() -> PolicyPool:
    """The process's pool: an in-memory cache is shared by every adapter of one config."""
    return PolicyPool()
