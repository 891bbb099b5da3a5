"""Cooldowns: which deployments are resting, and resting those too slow to wait for.

litellm cools a deployment down when it fails; the walk asks here before each group, so a call
during an outage skips it without sending a request. Two things litellm never sees count too:
a stream cut off for sending no first chunk in time, and a deployment that keeps losing hedge
races (it answers, but only after a request sent later to another one did). Each is a strike;
``limit`` strikes in a row rest the deployment for the router's ``cooldown_time``, as a failure
would, unless it is the last way left to an answer. An answer clears its strikes.

Reading litellm's store costs more than it seems: its native read lets go of the interpreter
lock, and getting it back from a busy thread (litellm builds each request on one) takes up to
the 5 ms switch interval, with the event loop stalled. So the walk reads a view of it, taken
again only when it may have changed: after a failure this process saw (litellm cools
deployments down only on failures) or a record written here, and, when Redis shares the store
with other processes, at most ``SHARED_REFRESH`` seconds old.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from .. import errors
from .litellm import cooldown_store, cooldowns_shared
from .._config.loader import Deployment
from .._observability.records import Attempt

__all__ = ["Cooldowns", "reason"]

SHARED_REFRESH = 1.0                # s: how stale a view of a store other processes write may be
SETTLE = 2.0                        # s after a failure during which every read goes to the store
SLOW_STATUS = 408                   # how litellm's cooldown record files a slow deployment
_SLOW = "too slow: "                # prefix of the reason kept in the record
_OWN = "rested: "                   # ... of a failure rested here that litellm does not rest


class Cooldowns:
    """The cooldown state of one Router, read and written through litellm's own store (in
    Redis when the router has one, so every process skips a resting deployment)."""

    def __init__(self, router: Any, deployments: Mapping[str, Deployment],
                 group_ids: Mapping[str, tuple[str, ...]],
                 chains: Mapping[str, tuple[str, ...]], cooldown_time: float) -> None:
        self._store = cooldown_store(router)
        self._deployments = deployments
        self._group_ids = group_ids
        self._chains = chains
        self._cooldown_time = cooldown_time
        self._lock = threading.Lock()   # a Gateway may serve several event loops' threads
        self._strikes: dict[str, int] = {}
        self._all_ids = sorted({i for ids in group_ids.values() for i in ids})
        self._shared = cooldowns_shared(self._store)
        # (monotonic time it is good until, active records by id); replaced whole, never edited
        self._view: tuple[float, dict[str, dict[str, Any]]] = (0.0, {})
        self._settle_until = 0.0

    def changed(self) -> None:
        """Something may have cooled a deployment down (litellm records it after the failure
        surfaced, so for ``SETTLE`` seconds every read goes to the store)."""
        self._settle_until = time.monotonic() + SETTLE
        self._view = (0.0, {})

    def cooling(self, group: str) -> dict[str, dict[str, Any]]:
        """Deployments of ``group`` now cooling down, by id, with litellm's cooldown record."""
        active = self._active()
        if not active:
            return {}
        now = time.time()
        return {i: dict(active[i]) for i in self._group_ids.get(group, ())
                if i in active and _ends(active[i], now) > now}

    def _active(self) -> dict[str, dict[str, Any]]:
        until, active = self._view
        now = time.monotonic()
        if now < until:
            return active
        active = {dep_id: dict(info)
                  for dep_id, info in self._store.get_active_cooldowns(self._all_ids, None)}
        if now >= self._settle_until:
            self._view = (now + SHARED_REFRESH if self._shared else float("inf"), active)
        return active

    def healthy(self, group: str) -> bool:
        """Whether ``group`` has a deployment that is usable and not cooling down."""
        ids = self._group_ids.get(group, ())
        return bool(ids) and len(self.cooling(group)) < len(ids)

    def spare(self, group: str, busy: set[str]) -> str | None:
        """A deployment of ``group`` that is not in ``busy`` and not resting, if any."""
        ids = self._group_ids.get(group, ())
        if len(ids) < 2:
            return None
        resting = self.cooling(group)
        return next((i for i in ids if i not in busy and i not in resting), None)

    def skip(self, group: str, attempts: list[Attempt], failures: list[errors.ProviderError],
             waits: list[float]) -> bool:
        """Whether every deployment of ``group`` is resting; if so each is recorded as skipped,
        with the time left until it is back."""
        ids = self._group_ids.get(group, ())
        cooling = self.cooling(group) if ids else {}
        if not ids or len(cooling) < len(ids):
            return False
        now = time.time()
        for dep_id, info in cooling.items():
            left = max(_ends(info, now) - now, 0.0)
            status = _int(info.get("status_code"))
            waits.append(left)
            attempts.append(Attempt(
                deployment=dep_id, model_group=group, provider=self._deployments[dep_id].provider,
                outcome="skipped", error_kind="cooldown", status=status, latency_ms=0.0,
                message=f"cooling down for {left:.1f}s after {reason(info)}"))
            failures.append(errors.ProviderError(
                f"{dep_id} is cooling down", status=status, deployment=dep_id, model_group=group,
                kind="cooldown", latency_ms=0.0))
        return True

    def strike(self, dep_id: str | None, limit: int, why: str) -> bool:
        """One more "too slow" for ``dep_id``; at ``limit`` in a row it is cooled down (True)."""
        if dep_id is None or dep_id not in self._deployments or limit < 1:
            return False
        with self._lock:
            count = self._strikes[dep_id] = self._strikes.get(dep_id, 0) + 1
            if count < limit:
                return False
            del self._strikes[dep_id]
        if not self._others_can_answer(dep_id):
            return False                # slow beats nothing: the only way left stays open
        self._store.add_deployment_to_cooldown(
            model_id=dep_id, original_exception=TimeoutError(_SLOW + why),
            exception_status=SLOW_STATUS, cooldown_time=self._cooldown_time)
        self.changed()
        return True

    def rest(self, dep_id: str, why: str) -> bool:
        """Cool ``dep_id`` down now for a failure litellm never cools (a local server that
        refuses connections), unless it is the last way left to an answer."""
        if dep_id not in self._deployments or not self._others_can_answer(dep_id):
            return False
        self._store.add_deployment_to_cooldown(
            model_id=dep_id, original_exception=ConnectionError(_OWN + why),
            exception_status=None, cooldown_time=self._cooldown_time)
        self.changed()
        return True

    def lift(self, dep_ids: tuple[str, ...], since: float) -> None:
        """Undo the cooldowns litellm set on ``dep_ids`` since ``since`` (wall clock): they were
        for a request litellm could not build, which says nothing about the deployment."""
        for dep_id, info in self._store.get_active_cooldowns(list(dep_ids), None):
            if float(info.get("timestamp", 0.0)) >= since:
                # An inactive record replaces the active one, in Redis too when there is one.
                self._store.cooldown_store.put(dep_id, {**info, "cooldown_time": 0.0}, 1.0)
        self.changed()

    def clear(self, dep_id: str) -> None:
        """``dep_id`` answered in time: its strikes start over."""
        if self._strikes:               # the common case is a read of an empty dict
            with self._lock:
                self._strikes.pop(dep_id, None)

    def _others_can_answer(self, dep_id: str) -> bool:
        group = self._deployments[dep_id].model_name
        return self.spare(group, {dep_id}) is not None or \
            any(self.healthy(g) for g in self._chains.get(group, ()))


def reason(info: Mapping[str, Any]) -> str:
    """Why a deployment rests, from litellm's cooldown record: "HTTP 503", or what was slow."""
    received = str(info.get("exception_received") or "")
    for prefix in (_SLOW, _OWN):
        if received.startswith(prefix):
            return received[len(prefix):]
    status = _int(info.get("status_code"))
    return f"HTTP {status}" if status else "a failure"


def _ends(info: Mapping[str, Any], now: float) -> float:
    """When (wall clock) the cooldown in litellm's record ``info`` ends."""
    try:
        return float(info.get("timestamp", now)) + float(info.get("cooldown_time", 0))
    except (TypeError, ValueError):
        return 0.0                      # unreadable: litellm decides, and its refusal is classified


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
