"""The policies wrapped around routing, resolved once per config and shared by its adapters.

Order on the calling path: budget check → cache lookup → rate limit → routing. Each policy is
built from the config here; the adapter only asks for them.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import cache

from .caching import ResponseCache, cache_from_config
from .config import Config

__all__ = ["Policies", "PolicyPool", "default_policies"]


@dataclass
class Policies:
    cache: ResponseCache | None


class PolicyPool:
    def __init__(self) -> None:
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
    settings = config.router_settings
    redis_url = settings.redis_url or os.environ.get("REDIS_URL")
    return Policies(cache=cache_from_config(settings.cache, environment=config.environment,
                                            redis_url=redis_url))


@cache
def default_policies() -> PolicyPool:
    """The process's pool: an in-memory cache is shared by every adapter of one config."""
    return PolicyPool()
