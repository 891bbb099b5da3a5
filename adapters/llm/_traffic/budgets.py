"""Budgets in USD per user, session, agent, tag or environment, per UTC day, week, month or ever.

Before a call is sent, its estimated cost is reserved in every budget it falls under, in one
atomic step: if any would be crossed nothing is reserved and ``BudgetExceeded`` says which. After
the call the reservation is replaced by the real cost. Spend lives in the ``Backend``, so
processes sharing Redis share budgets. Amounts are counted in nano-dollars: whole numbers add up
exactly, where ten times $0.10 in floats is not $1.00.

    budgets:
      soft_threshold: 0.8        # report a Crossing when a budget is 80 % spent (default 0.8)
      fail_open: false           # Redis away: refuse calls (default), or allow them with a warning
      limits:
        - {scope: user, limit: 5.00, period: day}              # each user: $5 a day
        - {scope: agent, id: matching, limit: 50, period: month}   # only that agent

Every rule that matches a call applies (a rule with an ``id`` can only tighten a general one).

Redis away: a budgeted call is refused with ``BackendUnavailable`` (fail closed; at once while
the breaker is open), or goes on unchecked with ``fail_open``. Settling never raises into a call
that has its answer: what Redis did not take waits in this process (``_settle_later``) and is
added when it answers again; a release that failed is retried alike, and until then the
reservation's hold time bounds what it keeps reserved.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from .counters import Backend, BackendUnavailable, Hold, Outage, Reserved, Settled, Soft
from .._config.settings import PERIODS, SCOPES
from .settle_later import Late, SettleLater
from ..errors import BudgetExceeded, UsageError

if TYPE_CHECKING:
    from .._config.loader import Config

__all__ = ["BudgetRule", "Budgets", "Crossing", "PERIODS", "Reservation", "SCOPES"]

_NANO = 1_000_000_000


@dataclass(frozen=True)
class BudgetRule:
    scope: str                  # one of SCOPES
    limit: float                # USD per period
    period: str                 # one of PERIODS
    id: str | None = None       # only this user/tag/...; None: each value separately
    key: str = ""               # where it is configured (budgets.limits[0]), for messages


@dataclass(frozen=True)
class Crossing:
    """A budget passed its soft threshold; reported once per budget and period."""

    rule: BudgetRule
    id: str                     # the user, session, agent, tag or environment
    spent: float
    limit: float
    threshold: float
    resets_at: str | None


@dataclass(frozen=True)
class _Counter:
    rule: BudgetRule
    value: str
    key: str
    roster: str
    expires_at: float | None    # when the backend may drop it: a day after the period ends
    resets_at: str | None


@dataclass(eq=False)
class Reservation:
    """What ``check_and_reserve`` held for one call; settle or release it exactly once."""

    estimate: float
    counters: tuple[_Counter, ...] = field(repr=False)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    done: bool = False
    held: bool = False          # the backend holds it (False: no rule applied, or it was away)

    @property
    def budgets(self) -> list[str]:
        """The budgets this call counts against, e.g. ``user 'alice' per day``."""
        return [f"{c.rule.scope} {c.value!r} per {c.rule.period}" for c in self.counters]


def _period(period: str, now: float) -> tuple[str, datetime | None]:
    """(label, start of the next period) of the UTC calendar period holding ``now``."""
    day = datetime.fromtimestamp(now, timezone.utc).replace(hour=0, minute=0, second=0,
                                                             microsecond=0)
    if period == "day":
        return day.strftime("%Y-%m-%d"), day + timedelta(days=1)
    if period == "week":
        start = day - timedelta(days=day.weekday())
        return start.strftime("w%Y-%m-%d"), start + timedelta(days=7)
    if period == "month":
        start = day.replace(day=1)
        return start.strftime("%Y-%m"), (start + timedelta(days=32)).replace(day=1)
    return "total", None


def _usd(x: float) -> str:
    return f"${x:.2f}" if round(x, 2) == x else f"${x:.6f}".rstrip("0")


class Budgets:
    """Checks, reserves and settles the budgets of one config.

    ``namespace`` separates spend: budgets are shared by processes that use the same backend
    and namespace (by default the environment name). A reservation not settled within
    ``hold_s`` seconds (its process died) stops counting.
    """

    def __init__(self, rules: Sequence[BudgetRule], backend: Backend, *, namespace: str,
                 soft_threshold: float = 0.8, fail_open: bool = False, hold_s: float = 900.0,
                 clock: Callable[[], float] = time.time, max_late: int = 10_000) -> None:
        self.rules = tuple(rules)
        self.backend = backend
        self.namespace = namespace
        self.soft_threshold = soft_threshold
        self.hold_s = hold_s
        self._clock = clock
        self._outage = Outage(fail_open, "calls are not checked against budgets (their spend "
                                         "is added when it answers again)")
        self._later = SettleLater(backend, self._outage, max_late=max_late,
                                  usd=lambda nano: _usd(nano / _NANO))

    @classmethod
    def from_config(cls, config: Config, backend: Backend, *,
                    namespace: str | None = None) -> Budgets | None:
        """The ``budgets`` section (the active profile's keys override it); None without rules."""
        settings = _settings(config)
        if not settings.get("limits"):
            return None
        return cls(settings["limits"], backend, namespace=namespace or config.environment,
                   soft_threshold=settings.get("soft_threshold", 0.8),
                   fail_open=settings.get("fail_open", False))

    # ------------------------------------------------------------------------------ counters

    def _counter(self, rule: BudgetRule, value: str, now: float) -> _Counter:
        label, nxt = _period(rule.period, now)
        where = f"{{{self.namespace}}}:budget:{rule.scope}:{rule.period}:{label}"
        return _Counter(rule, value, f"{where}:{value}", f"{where}:roster",
                        None if nxt is None else nxt.timestamp() + 86400,
                        None if nxt is None else nxt.isoformat())

    def _match(self, values: Mapping[str, Sequence[str]], now: float) -> list[_Counter]:
        out = []
        for rule in self.rules:
            for value in dict.fromkeys(v for v in values[rule.scope] if v):
                if rule.id is None or rule.id == value:
                    out.append(self._counter(rule, value, now))
        return out

    # ---------------------------------------------------------------------------------- calls

    def check_and_reserve(self, *, user: str | None, session: str | None, agent: str | None,
                          tags: Sequence[str], environment: str,
                          estimated_cost: float) -> Reservation:
        """Reserve ``estimated_cost`` in every matching budget, or raise ``BudgetExceeded``.

        Nothing is reserved when any budget would be crossed. Budgets of a scope the call does
        not name (no user, ...) do not apply. The backend away: ``BackendUnavailable`` (failing
        closed). ``acheck_and_reserve`` is the same for the event loop.
        """
        reservation, holds = self._prepare(user, session, agent, tags, environment,
                                           estimated_cost)
        if not holds:
            return reservation
        try:
            reserved = self.backend.reserve(holds, token=reservation.id, hold_s=self.hold_s)
        except BackendUnavailable as exc:
            return self._unreserved(reservation, exc)
        self._answered(sync=True)
        return self._reserved(reservation, reserved)

    async def acheck_and_reserve(self, *, user: str | None, session: str | None,
                                 agent: str | None, tags: Sequence[str], environment: str,
                                 estimated_cost: float) -> Reservation:
        reservation, holds = self._prepare(user, session, agent, tags, environment,
                                           estimated_cost)
        if not holds:
            return reservation
        try:
            reserved = await self.backend.areserve(holds, token=reservation.id,
                                                   hold_s=self.hold_s)
        except BackendUnavailable as exc:
            return self._unreserved(reservation, exc)
        self._answered(sync=False)
        return self._reserved(reservation, reserved)

    def _prepare(self, user: str | None, session: str | None, agent: str | None,
                 tags: Sequence[str], environment: str, estimated_cost: float
                 ) -> tuple[Reservation, list[Hold]]:
        if not math.isfinite(estimated_cost) or estimated_cost < 0:
            raise UsageError(f"estimated_cost must be a number >= 0 (USD), got {estimated_cost!r}")
        values = {"user": [user or ""], "session": [session or ""], "agent": [agent or ""],
                  "tag": list(tags), "environment": [environment]}
        reservation = Reservation(estimated_cost, tuple(self._match(values, self._clock())))
        amount = round(estimated_cost * _NANO)
        return reservation, [Hold(c.key, round(c.rule.limit * _NANO), amount, c.expires_at,
                                  c.roster, c.value) for c in reservation.counters]

    def _reserved(self, reservation: Reservation, reserved: Reserved) -> Reservation:
        if not reserved.ok:
            reservation.done = True
            i = reserved.blocking
            raise self._exceeded(reservation.counters[i], reserved.spent[i] / _NANO,
                                 reserved.reserved[i] / _NANO, reservation.estimate)
        reservation.held = True
        return reservation

    def _unreserved(self, reservation: Reservation, exc: BackendUnavailable) -> Reservation:
        """Refuse the call (failing closed) or let it go on unchecked (failing open)."""
        if exc.maybe_applied:       # Redis may hold it after all: drop it when it answers
            keys, _ = self._keys(reservation, soft=False)
            self._later.defer(Late(tuple(keys), reservation.id, 0, True), exc, warn=False)
        if not self._outage.fail_open:
            reservation.done = True
            raise BackendUnavailable(
                f"{exc}; the call's budgets cannot be checked, so it was not sent (or set "
                "budgets.fail_open: true to let calls go on unchecked, or remove the budgets "
                "section)", maybe_applied=exc.maybe_applied) from exc
        self._outage.failed(exc)
        return reservation

    def _exceeded(self, counter: _Counter, spent: float, reserved: float,
                  estimate: float) -> BudgetExceeded:
        rule = counter.rule
        in_flight = f" (+ {_usd(reserved)} reserved by calls in flight)" if reserved else ""
        when = (f"it resets at {counter.resets_at}" if counter.resets_at else
                "it never resets")
        per = "in total" if rule.period == "total" else f"per {rule.period}"
        where, fix = (f" ({rule.key})", f"{rule.key}.limit") if rule.key else ("", "its limit")
        return BudgetExceeded(
            f"budget exceeded: {rule.scope} {counter.value!r} has spent {_usd(spent)}{in_flight} "
            f"of its {_usd(rule.limit)} {per}{where}; this call's estimated {_usd(estimate)} "
            f"would cross it. Nothing was sent; {when} (or raise {fix})",
            scope=rule.scope, spent=spent, limit=rule.limit, resets_at=counter.resets_at)

    def settle(self, reservation: Reservation, actual_cost: float | None) -> list[Crossing]:
        """Replace the estimate by ``actual_cost``; return soft thresholds newly crossed.

        ``actual_cost=None`` (the price is unknown) keeps the estimate as spent: an unpriced
        model must not spend outside every budget. Never raises ``BackendUnavailable``: what
        the backend did not take is added when it answers again. ``asettle``: the same on the
        event loop.
        """
        amount, keys, softs = self._settling(reservation, actual_cost)
        if not keys:
            return []
        try:
            settled = self.backend.settle(keys, token=reservation.id, actual=amount,
                                          softs=[s for s, _ in softs])
        except BackendUnavailable as exc:
            self._defer(reservation, keys, amount, exc)
            return []
        self._answered(sync=True)
        return self._crossings(softs, settled)

    async def asettle(self, reservation: Reservation, actual_cost: float | None
                      ) -> list[Crossing]:
        amount, keys, softs = self._settling(reservation, actual_cost)
        if not keys:
            return []
        try:
            settled = await self.backend.asettle(keys, token=reservation.id, actual=amount,
                                                 softs=[s for s, _ in softs])
        except BackendUnavailable as exc:
            self._defer(reservation, keys, amount, exc)
            return []
        self._answered(sync=False)
        return self._crossings(softs, settled)

    def _defer(self, reservation: Reservation, keys: list[tuple[str, float | None]],
               amount: int, exc: BackendUnavailable) -> None:
        """A settlement the backend did not take, kept to be added when it answers again."""
        self._later.defer(Late(tuple(keys), reservation.id, amount,
                               exc.maybe_applied and reservation.held,
                               self._rosters(reservation)), exc)

    def _settling(self, reservation: Reservation, actual_cost: float | None
                  ) -> tuple[int, list[tuple[str, float | None]], list[tuple[Soft, _Counter]]]:
        actual = reservation.estimate if actual_cost is None else actual_cost
        if not math.isfinite(actual) or actual < 0:
            raise UsageError(f"actual_cost must be a number >= 0 (USD) or None, got {actual!r}")
        keys, softs = self._keys(reservation, soft=True)
        reservation.done = True
        return round(actual * _NANO), keys, softs

    @staticmethod
    def _rosters(reservation: Reservation) -> tuple[tuple[str, str, float | None], ...]:
        return tuple((c.roster, c.value, c.expires_at) for c in reservation.counters)

    def _crossings(self, softs: list[tuple[Soft, _Counter]], settled: Settled) -> list[Crossing]:
        return [Crossing(c.rule, c.value, settled.spent[s.counter] / _NANO, c.rule.limit,
                         self.soft_threshold, c.resets_at)
                for (s, c), crossed in zip(softs, settled.crossed) if crossed]

    def release(self, reservation: Reservation) -> None:
        """Drop the reservation: the call failed before anything was billed.

        Never raises ``BackendUnavailable``; ``arelease``: the same on the event loop.
        """
        keys, _ = self._keys(reservation, soft=False)
        reservation.done = True
        if not keys or not reservation.held:
            return
        try:
            self.backend.settle(keys, token=reservation.id, actual=0)
        except BackendUnavailable as exc:
            self._later.defer(Late(tuple(keys), reservation.id, 0, True), exc)
        else:
            self._answered(sync=True)

    async def arelease(self, reservation: Reservation) -> None:
        keys, _ = self._keys(reservation, soft=False)
        reservation.done = True
        if not keys or not reservation.held:
            return
        try:
            await self.backend.asettle(keys, token=reservation.id, actual=0)
        except BackendUnavailable as exc:
            self._later.defer(Late(tuple(keys), reservation.id, 0, True), exc)
        else:
            self._answered(sync=False)

    # ------------------------------------------------------------------------ late settling

    @property
    def late(self) -> tuple[int, float]:
        """(settlements waiting for the backend, their spend in USD)."""
        waiting, nano = self._later.waiting
        return waiting, nano / _NANO

    def reconcile(self) -> int:
        """Retry the settlements waiting for the backend; how many still wait."""
        return self._later.retry()

    async def areconcile(self) -> int:
        """``reconcile`` on the event loop."""
        return await self._later.aretry()

    def _answered(self, *, sync: bool) -> None:
        """The backend answered: the outage is over; add what waited for it."""
        self._outage.answered()
        self._later.answered(sync=sync)

    def _keys(self, reservation: Reservation, *, soft: bool
              ) -> tuple[list[tuple[str, float | None]], list[tuple[Soft, _Counter]]]:
        """Unique (key, expires_at) of a reservation and a soft threshold per counter."""
        if reservation.done:
            raise UsageError("this reservation was already settled or released; settle or "
                             "release each reservation once")
        keys: dict[str, int] = {}
        softs = []
        for c in reservation.counters:
            i = keys.setdefault(c.key, len(keys))
            limit = round(c.rule.limit * _NANO)
            if soft:
                softs.append((Soft(i, round(self.soft_threshold * limit),
                                   f"soft:{limit}:{self.soft_threshold}"), c))
        expiry = {c.key: c.expires_at for c in reservation.counters}
        return [(k, expiry[k]) for k in keys], softs

    def usage(self) -> list[dict[str, Any]]:
        """Every budget of the current periods with its spend, for ``llm-adapter status``."""
        now = self._clock()
        counters = []
        for rule in self.rules:
            values = [rule.id] if rule.id else self.backend.members(
                self._counter(rule, "", now).roster)
            counters += [self._counter(rule, v, now) for v in values]
        balances = self.backend.balances([c.key for c in counters]) if counters else []
        return [{"scope": c.rule.scope, "id": c.value, "spent": spent / _NANO,
                 "reserved": reserved / _NANO, "limit": c.rule.limit, "period": c.rule.period,
                 "resets_at": c.resets_at, "rule": c.rule.key}
                for c, (spent, reserved) in zip(counters, balances)]


# ---------------------------------------------------------------------------------- config


def _settings(config: Config) -> dict[str, Any]:
    """The ``budgets`` section as resolved at load (the profile's keys over the file's)."""
    s = config.settings.budgets
    return {"soft_threshold": s.soft_threshold, "fail_open": s.fail_open,
            "limits": [BudgetRule(r.scope, r.limit, r.period, r.id, r.key) for r in s.limits]}
