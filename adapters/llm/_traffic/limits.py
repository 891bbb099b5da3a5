"""Rate limits: requests and tokens per minute, for all calls of a config and per deployment.

litellm does not enforce ``rpm``/``tpm`` under the default strategy, and its enforcing
strategies register process-global callbacks and count per process unless given Redis (notes
§1.3, §1.4). Here limits are counted in a ``Backend`` (this process, or Redis for many) over an
exact sliding window, and one atomic step takes the global counters and the first deployment
with room, so a call never holds part of its capacity. A call with no room waits (up to
``router_settings.max_wait`` and its deadline) or gets ``RateLimited`` naming the limit.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .counters import Backend, BackendUnavailable, Outage, Take
from .._routing.tokens import DEFAULT_OUTPUT_TOKENS, call_tokens
from ..errors import ConfigError, RateLimited

if TYPE_CHECKING:
    from .._config.loader import Config

__all__ = ["DEFAULT_OUTPUT_TOKENS", "Limits", "Permit", "RateLimiter"]


@dataclass(frozen=True)
class Limits:
    """The limits of one config. ``None``: no limit. A deployment rpm/tpm of 0 means "never"."""

    rpm: int | None = None          # all calls of the config, every group together
    tpm: int | None = None
    per_deployment: Mapping[str, tuple[int | None, int | None]] = field(
        default_factory=lambda: MappingProxyType({}))     # deployment id -> (rpm, tpm)
    max_wait: float = 0.0           # seconds a call may wait for room; 0: fail at once

    def __post_init__(self) -> None:
        object.__setattr__(self, "per_deployment", MappingProxyType(dict(self.per_deployment)))

    @classmethod
    def from_config(cls, config: Config) -> Limits:
        """``router_settings.rpm/tpm/max_wait`` and each deployment's ``rpm``/``tpm``."""
        per: dict[str, tuple[int | None, int | None]] = {}
        for i, d in enumerate(config.deployments):
            rpm, tpm = (_count(d.litellm_params.get(k, d.model_info.get(k)), config,
                               f"model_list[{i}].litellm_params.{k}") for k in ("rpm", "tpm"))
            if rpm is not None or tpm is not None:
                per[d.id] = (rpm, tpm)
        settings = config.router_settings
        return cls(rpm=settings.rpm, tpm=settings.tpm, per_deployment=per,
                   max_wait=float(settings.extra.get("max_wait") or 0))

    @property
    def enabled(self) -> bool:
        return self.rpm is not None or self.tpm is not None or bool(self.per_deployment)


def _count(value: Any, config: Config, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 \
            or int(value) != value:
        raise ConfigError(f"{value!r} is not a valid limit", key=key,
                          path=str(config.path) if config.path else None,
                          fix="use a whole number >= 0, e.g. 500")
    return int(value)


@dataclass(frozen=True)
class Permit:
    """Capacity taken for one call; hand it back to ``settle`` with the real token count."""

    deployment: str | None          # the deployment to call; None: any (no per-deployment limits)
    tokens: int                     # the estimate counted against tpm
    id: str = field(default="", repr=False)
    tpm_keys: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class _Counter:
    take: Take
    label: str                      # "global rpm", "deployment 'x' tpm"


class RateLimiter:
    """Checks and takes rpm/tpm capacity for the calls of one config.

    ``namespace`` separates counters: limiters share capacity only when they share a backend
    and a namespace (use the environment name so N processes of one deployment share limits).
    ``fail_open``: when the backend is away, allow calls (warning once per outage) instead of
    raising ``BackendUnavailable``. Either way an outage costs a call at most one short timeout:
    the backend's breaker refuses at once until Redis answers a probe again.
    """

    def __init__(self, limits: Limits, backend: Backend, *, namespace: str,
                 window_s: float = 60.0, fail_open: bool = False) -> None:
        self.limits = limits
        self.backend = backend
        self.namespace = namespace
        self.window_s = window_s
        self._outage = Outage(fail_open, "calls are not rate limited")

    # ------------------------------------------------------------------------------ counters

    def _counters(self, deployment: str | None, tokens: int) -> list[_Counter]:
        if deployment is None:
            rpm, tpm, scope = self.limits.rpm, self.limits.tpm, "global"
        else:
            rpm, tpm = self.limits.per_deployment.get(deployment, (None, None))
            scope = f"deployment {deployment!r}"
        base = f"{{{self.namespace}}}:rl:{'global' if deployment is None else 'd:' + deployment}"
        out = []
        if rpm is not None:
            out.append(_Counter(Take(f"{base}:rpm", rpm, 1), f"{scope} rpm"))
        if tpm is not None:
            out.append(_Counter(Take(f"{base}:tpm", tpm, max(tokens, 0)), f"{scope} tpm"))
        return out

    def _groups(self, deployments: Sequence[str], tokens: int
                ) -> tuple[list[list[_Counter]], bool]:
        """[global counters, then one group per deployment] and whether deployments count."""
        groups = [self._counters(None, tokens)]
        limited = any(d in self.limits.per_deployment for d in deployments)
        if limited:
            groups += [self._counters(d, tokens) for d in deployments]
        return groups, limited

    # ---------------------------------------------------------------------------------- calls

    def estimate_tokens(self, model: str, messages: list[dict[str, Any]],
                        max_tokens: int | None) -> int:
        """Prompt tokens (litellm's counter) plus the answer's ``max_tokens`` or a default."""
        return call_tokens(model, messages, max_tokens)

    async def acquire(self, deployments: Sequence[str], tokens: int, *,
                      deadline: float) -> Permit:
        """Take global rpm/tpm and the first deployment (in order) with room, atomically.

        ``deadline`` is ``time.monotonic()`` time. Without room, wait for it while both
        ``max_wait`` and the deadline allow, then raise ``RateLimited`` naming the limit;
        ``retry_after`` is None when the call can never fit (its tokens exceed a tpm limit).
        """
        groups, limited = self._groups(deployments, tokens)
        permit_id = uuid.uuid4().hex
        if not any(groups):
            return Permit(None, tokens, permit_id)
        takes = [[c.take for c in g] for g in groups]
        give_up = time.monotonic() + self.limits.max_wait
        unchecked = Permit(deployments[0] if limited else None, tokens, permit_id)
        while True:
            try:
                taken = await self.backend.awindow_take(takes, self.window_s, token=permit_id)
            except BackendUnavailable as exc:
                self._outage.failed(exc)
                return unchecked
            self._outage.answered()
            if taken.ok:
                chosen = groups[0] + (groups[taken.choice + 1] if limited else [])
                return Permit(deployments[taken.choice] if limited else None, tokens, permit_id,
                              tuple(c.take.key for c in chosen if c.take.key.endswith(":tpm")))
            flat = [c for g in groups for c in g]
            blocking = flat[taken.blocking]
            now = time.monotonic()
            wake = now + taken.retry_after + random.uniform(0.002, 0.02)  # spread the wake-ups
            if math.isinf(taken.retry_after) or wake > give_up or wake >= deadline:
                raise self._refusal(blocking, taken.used[taken.blocking], taken.retry_after,
                                    limited and blocking not in groups[0], wake >= deadline)
            await asyncio.sleep(wake - now)

    def _refusal(self, counter: _Counter, used: float, retry_after: float, every: bool,
                 deadline: bool) -> RateLimited:
        take = counter.take
        unit = "requests" if take.key.endswith(":rpm") else "tokens"
        if math.isinf(retry_after):
            return RateLimited(
                f"{counter.label} limit is {take.limit:g} {unit} per {self.window_s:g} s, and "
                f"this call alone needs {take.amount:g}; it can never fit (lower max_tokens or "
                "shorten the input, or raise the limit)", retry_after=None)
        who = (f"every deployment is at its limit; the first with room is {counter.label}"
               if every else counter.label)
        why = "the call's deadline" if deadline else f"max_wait ({self.limits.max_wait:g} s)"
        return RateLimited(
            f"rate limited: {who} ({used:g} of {take.limit:g} {unit} used in the last "
            f"{self.window_s:g} s, this call needs {take.amount:g}); room again in "
            f"{retry_after:.2f} s, which {why} does not allow waiting for "
            "(retry later, or raise router_settings.max_wait)", retry_after=retry_after)

    def capacity(self, deployment: str) -> bool:
        """Whether one more request fits globally and on ``deployment`` now (takes nothing)."""
        groups = [[c.take for c in self._counters(None, 1) + self._counters(deployment, 1)]]
        if not groups[0]:
            return True
        try:
            taken = self.backend.window_take(groups, self.window_s, token="peek", dry_run=True)
        except BackendUnavailable as exc:
            self._outage.failed(exc)
            return True
        self._outage.answered()
        return taken.ok

    async def settle(self, permit: Permit, actual_tokens: int) -> None:
        """Replace the permit's token estimate by what the call really used."""
        delta = actual_tokens - permit.tokens
        if not permit.tpm_keys or delta == 0:
            return
        try:
            await self.backend.awindow_adjust(permit.tpm_keys, permit.id, delta)
        except BackendUnavailable as exc:
            self._outage.failed(exc)
            return
        self._outage.answered()

    def usage(self) -> dict[str, Any]:
        """Use against limits per scope over the current window, for ``llm-adapter status``."""
        scopes: list[tuple[str | None, list[_Counter]]] = [(None, self._counters(None, 0))]
        scopes += [(d, self._counters(d, 0)) for d in self.limits.per_deployment]
        flat = [c for _, counters in scopes for c in counters]
        used = self.backend.window_take([[c.take for c in flat]], self.window_s, token="peek",
                                        dry_run=True).used if flat else ()
        values = iter(used)
        out: dict[str, Any] = {"window_s": self.window_s, "backend": self.backend.description,
                               "global": {}, "deployments": {}}
        for deployment, counters in scopes:
            entry = {c.take.key.rsplit(":", 1)[1]: {"used": next(values), "limit": c.take.limit}
                     for c in counters}
            if deployment is None:
                out["global"] = entry
            else:
                out["deployments"][deployment] = entry
        return out
