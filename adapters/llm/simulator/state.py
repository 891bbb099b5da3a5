"""Run-time state of one simulator: the active scenarios, their fault RNGs and the stats.

All of it lives on one instance owned by the server and is only touched from the
server's event loop, so no locks are needed (and none is held while a handler sleeps).
"""

from __future__ import annotations

import random
import time
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .content import CachePrefix
from .scenarios import BUILTIN_SCENARIOS, DEFAULT_SCENARIO, Fault, Scenario

__all__ = ["CacheUse", "Limits", "Registry", "ScenarioRuntime", "ScenarioStats"]

NOMINAL_REQUESTS = 10_000
NOMINAL_TOKENS = 10_000_000
_CACHE_ENTRIES = 4096


@dataclass(frozen=True)
class Limits:
    """The rate-limit window as the headers report it, after counting this request."""

    requests_limit: int
    requests_remaining: int
    tokens_limit: int
    tokens_remaining: int
    reset_s: float
    exceeded: str | None = None  # "requests" or "tokens" when this request is refused


@dataclass(frozen=True)
class CacheUse:
    """Prompt-cache tokens of one request: read from earlier requests, written by this one."""

    read: int = 0
    written: int = 0


@dataclass
class ScenarioStats:
    """What one scenario has served since the last stats reset."""

    requests: int = 0
    in_flight: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_status": dict(sorted(self.by_status.items())),
            "faults": dict(sorted(self.faults.items())),
            "in_flight": self.in_flight,
        }


class ScenarioRuntime:
    """A scenario plus what makes its faults reproducible: seeded RNGs and a request counter.

    Faults and jitter draw from separate RNGs so changing the latency jitter does not
    change which requests fail.
    """

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self._fault_rng = random.Random(scenario.seed)
        self._jitter_rng = random.Random(scenario.seed)
        self._served = 0
        self._window_start = time.monotonic()
        self._window_requests = 0
        self._window_tokens = 0
        self._cache: OrderedDict[str, None] = OrderedDict()

    def peek(self, *, exhausted: bool = False) -> Limits:
        """The window as it stands (``exhausted``: as a 429 reports it, nothing left)."""
        limits = self.admit(0, count=False)
        if exhausted:
            return Limits(limits.requests_limit, 0, limits.tokens_limit, limits.tokens_remaining,
                          limits.reset_s, "requests")
        return limits

    def admit(self, tokens: int, *, count: bool = True) -> Limits:
        """Count a request against the rate-limit window; ``exceeded`` says it is refused.

        Limits the scenario does not set are reported at a nominal size and never refuse.
        """
        s = self.scenario
        now = time.monotonic()
        if now - self._window_start >= s.rate_limit_window_s:
            self._window_start, self._window_requests, self._window_tokens = now, 0, 0
        request_limit = s.rate_limit_requests or NOMINAL_REQUESTS
        token_limit = s.rate_limit_tokens or NOMINAL_TOKENS
        reset = max(0.0, s.rate_limit_window_s - (now - self._window_start))
        exceeded = None
        if s.rate_limit_requests is not None and self._window_requests >= request_limit:
            exceeded = "requests"
        elif s.rate_limit_tokens is not None and self._window_tokens + tokens > token_limit:
            exceeded = "tokens"
        if exceeded is None and count:
            self._window_requests += 1
            self._window_tokens += tokens
        return Limits(
            request_limit,
            max(0, request_limit - self._window_requests),
            token_limit,
            max(0, token_limit - self._window_tokens),
            reset,
            exceeded,
        )

    def use_cache(self, prefixes: Sequence[CachePrefix]) -> CacheUse:
        """Which prefixes were cached before (read) and which this request writes.

        Explicit prefixes are written on first use; implicit ones are remembered silently.
        """
        minimum = self.scenario.prompt_cache_min_tokens
        usable = [p for p in prefixes if p.tokens >= minimum and p.tokens > 0]
        read = max((p.tokens for p in usable if p.key in self._cache), default=0)
        explicit = [p.tokens for p in usable if p.explicit and p.key not in self._cache]
        written = max(0, max(explicit, default=0) - read)
        for prefix in usable:
            self._cache[prefix.key] = None
            self._cache.move_to_end(prefix.key)
        while len(self._cache) > _CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return CacheUse(read, written)

    def next_fault(self) -> Fault | None:
        """The fault for the next request: the first one in order that fires, if any."""
        index = self._served
        self._served += 1
        for fault in self.scenario.faults:
            if fault.first_n is not None and index >= fault.first_n:
                continue
            if fault.rate >= 1.0 or (fault.rate > 0.0 and self._fault_rng.random() < fault.rate):
                return fault
        return None

    def latency_s(self) -> float:
        """Seconds to wait before answering: the latency (log-normal around its median when
        ``latency_sigma`` is set) plus uniform jitter, never negative."""
        s = self.scenario
        latency = s.latency_ms * self._jitter_rng.lognormvariate(0.0, s.latency_sigma) \
            if s.latency_sigma else s.latency_ms
        offset = self._jitter_rng.uniform(-s.jitter_ms, s.jitter_ms) if s.jitter_ms else 0.0
        return max(0.0, latency + offset) / 1000.0


class Registry:
    """Scenario names to their active behaviour and stats.

    ``defaults`` (built-ins overlaid with the constructor's scenarios) is what a name
    returns to on delete; unknown names get a healthy ``ok`` copy on first use.
    """

    def __init__(self, scenarios: Mapping[str, Scenario] | None = None) -> None:
        self._defaults: dict[str, Scenario] = {**BUILTIN_SCENARIOS, **(scenarios or {})}
        self._active: dict[str, ScenarioRuntime] = {}
        self._stats: dict[str, ScenarioStats] = {}

    def parse(self, data: object) -> Scenario:
        """A scenario from control JSON: a scenario dict, or ``{"use": "<name>"}`` to copy one.

        ``use`` names a built-in or a scenario the simulator was constructed with.
        """
        if not isinstance(data, Mapping):
            raise ValueError("the scenario must be a JSON object")
        if "use" not in data:
            return Scenario.from_dict(data)
        if len(data) != 1:
            raise ValueError("'use' cannot be combined with other keys")
        source = self._defaults.get(str(data["use"]))
        if source is None:
            known = ", ".join(sorted(self._defaults))
            raise ValueError(f"unknown scenario {data['use']!r} in 'use' (known: {known})")
        return source

    def runtime(self, name: str) -> ScenarioRuntime:
        active = self._active.get(name)
        if active is None:
            scenario = self._defaults.get(name, DEFAULT_SCENARIO)
            active = self._active[name] = ScenarioRuntime(scenario)
        return active

    def set(self, name: str, scenario: Scenario) -> None:
        """Replace a scenario; its fault RNG and first-N counter start over."""
        self._active[name] = ScenarioRuntime(scenario)

    def reset(self, name: str) -> Scenario:
        """Return ``name`` to its default behaviour (and fresh counters)."""
        self._active.pop(name, None)
        return self.runtime(name).scenario

    def scenarios(self) -> dict[str, Scenario]:
        merged = dict(self._defaults)
        merged.update((name, runtime.scenario) for name, runtime in self._active.items())
        return merged

    def _stats_for(self, name: str) -> ScenarioStats:
        stats = self._stats.get(name)
        if stats is None:
            stats = self._stats[name] = ScenarioStats()
        return stats

    # Handlers report through these by name rather than holding a ScenarioStats, so a
    # stats reset in the middle of a request still balances ``in_flight``.

    def begin(self, name: str) -> None:
        stats = self._stats_for(name)
        stats.requests += 1
        stats.in_flight += 1

    def finish(self, name: str) -> None:
        stats = self._stats_for(name)
        stats.in_flight = max(0, stats.in_flight - 1)

    def record_status(self, name: str, status: int) -> None:
        self._stats_for(name).by_status[str(status)] += 1

    def record_fault(self, name: str, kind: str) -> None:
        self._stats_for(name).faults[kind] += 1

    def stats(self) -> dict[str, dict[str, Any]]:
        return {name: stats.to_dict() for name, stats in sorted(self._stats.items())}

    def reset_stats(self) -> None:
        """Zero the counters but keep ``in_flight``: those requests are still running."""
        self._stats = {
            name: ScenarioStats(in_flight=stats.in_flight)
            for name, stats in self._stats.items()
            if stats.in_flight
        }
