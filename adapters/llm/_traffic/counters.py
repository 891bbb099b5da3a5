"""Shared counters for rate limits and budgets: in this process, or in Redis for many.

Like an HTTP transport, ``Backend`` is a narrow interface with two implementations, so the
limiter and budgets hold no storage logic. Every check-and-take is one atomic step (a lock in
memory, one Lua script in Redis): two callers can never both take the last unit.

Rate windows are exact sliding logs (one entry per take, plus a running sum), so the time until
there is room is exact, not a fixed-minute guess. Budget counters hold ``spent`` and
reservations; each reservation has a hold time, so a process killed mid-call does not keep its
reservation forever. By default Redis scripts use Redis's clock (``TIME``), so hosts with skewed
clocks still agree; ``now`` arguments are for tests. The ``a...`` methods are for the event loop:
there the Redis backend never blocks (``_redis_link``).
"""

from __future__ import annotations

import abc
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from ..errors import BackendUnavailable

__all__ = ["Backend", "BackendUnavailable", "Hold", "MemoryBackend", "Outage", "Reserved",
           "Settled", "Soft", "Take", "Taken"]

log = logging.getLogger(__name__)


class Take(NamedTuple):
    key: str
    limit: float
    amount: float


class Taken(NamedTuple):
    ok: bool
    choice: int             # which alternative group was taken; -1 when none or not ok
    retry_after: float      # seconds until there is room; 0 when ok; inf: it can never fit
    blocking: int           # the counter to wait for (all groups flattened); -1 when ok
    used: tuple[float, ...]  # per counter, flattened, before this take


class Hold(NamedTuple):
    key: str
    limit: float
    amount: float
    expires_at: float | None   # unix time after which the counter may be dropped; None: never
    roster: str                # a set naming the members counted this period (for reports)
    member: str


class Reserved(NamedTuple):
    ok: bool
    blocking: int                # the first hold that would cross its limit; -1 when ok
    spent: tuple[float, ...]     # per hold, before this reservation
    reserved: tuple[float, ...]  # per hold: other calls' reservations still in flight


class Soft(NamedTuple):
    counter: int    # index into the keys given to ``settle``
    at: float       # the spent amount that crosses the threshold
    flag: str       # kept on the counter, so a crossing is reported once per counter


class Settled(NamedTuple):
    spent: tuple[float, ...]
    crossed: tuple[bool, ...]   # per Soft: newly crossed by this settle


class Backend(abc.ABC):
    """Atomic counters; every method raises ``BackendUnavailable`` when its store is away."""

    description = "backend"

    @abc.abstractmethod
    def window_take(self, groups: Sequence[Sequence[Take]], window_s: float, *, token: str,
                    dry_run: bool = False, now: float | None = None) -> Taken:
        """Take group 0 and the first later group with room, all or nothing, in one step."""

    async def awindow_take(self, groups: Sequence[Sequence[Take]], window_s: float, *,
                           token: str, dry_run: bool = False, now: float | None = None) -> Taken:
        return self.window_take(groups, window_s, token=token, dry_run=dry_run, now=now)

    @abc.abstractmethod
    def window_adjust(self, keys: Sequence[str], token: str, delta: float) -> None:
        """Change what ``token`` took in each window by ``delta`` (if still in the window)."""

    async def awindow_adjust(self, keys: Sequence[str], token: str, delta: float) -> None:
        self.window_adjust(keys, token, delta)

    @abc.abstractmethod
    def reserve(self, holds: Sequence[Hold], *, token: str, hold_s: float,
                now: float | None = None) -> Reserved:
        """Reserve every hold if ``spent + reserved + amount <= limit`` for all, else none."""

    async def areserve(self, holds: Sequence[Hold], *, token: str, hold_s: float,
                       now: float | None = None) -> Reserved:
        return self.reserve(holds, token=token, hold_s=hold_s, now=now)

    @abc.abstractmethod
    def settle(self, keys: Sequence[tuple[str, float | None]], *, token: str, actual: float,
               softs: Sequence[Soft] = (), held_only: bool = False) -> Settled:
        """Drop ``token``'s reservation on each (key, expires_at); add ``actual`` to spent.

        ``held_only``: add only to counters still holding the reservation (a retry of a settle
        that timed out, which Redis may have run already).
        """

    async def asettle(self, keys: Sequence[tuple[str, float | None]], *, token: str,
                      actual: float, softs: Sequence[Soft] = (),
                      held_only: bool = False) -> Settled:
        return self.settle(keys, token=token, actual=actual, softs=softs, held_only=held_only)

    @abc.abstractmethod
    def balances(self, keys: Sequence[str]) -> list[tuple[float, float]]:
        """(spent, reserved) per budget counter."""

    @abc.abstractmethod
    def members(self, roster: str) -> list[str]:
        """The members ``reserve`` recorded in a roster."""

    @abc.abstractmethod
    def enroll(self, entries: Sequence[tuple[str, str, float | None]]) -> None:
        """Record (roster, member, expires_at) as ``reserve`` does (for a late settlement)."""

    async def aenroll(self, entries: Sequence[tuple[str, str, float | None]]) -> None:
        self.enroll(entries)

    @abc.abstractmethod
    def ping(self) -> float:
        """Round-trip seconds."""

    def close(self) -> None:  # noqa: B027 - optional: only a backend with connections has any
        """Release connections."""


def _decide(waits: Sequence[tuple[float, int]]) -> tuple[bool, int, float, int]:
    """(ok, choice, retry_after, blocking) from each group's (longest wait, its counter)."""
    alternatives = waits[1:]
    fits = [i for i, (w, _) in enumerate(alternatives) if w == 0]
    if waits[0][0] == 0 and (fits or not alternatives):
        return True, fits[0] if fits else -1, 0.0, -1
    soonest = min(alternatives, key=lambda w: w[0], default=(0.0, -1))
    retry, who = max(waits[0], soonest, key=lambda w: w[0])
    return False, -1, retry, who


# ------------------------------------------------------------------------------------ in memory


@dataclass
class _Log:
    """One sliding window: (time, token) in time order, amounts by token, and their sum."""

    entries: deque[tuple[float, str]] = field(default_factory=deque)
    amounts: dict[str, float] = field(default_factory=dict)
    total: float = 0.0

    def used(self, cutoff: float) -> float:
        while self.entries and self.entries[0][0] <= cutoff:
            self.total -= self.amounts.pop(self.entries.popleft()[1], 0.0)
        return self.total

    def wait(self, limit: float, amount: float, used: float, now: float, window: float) -> float:
        need = used + amount - limit
        if amount > limit or need <= 0:
            return math.inf if amount > limit else 0.0
        for ts, token in self.entries:
            need -= self.amounts.get(token, 0.0)
            if need <= 0:
                return max(ts + window - now, 0.0)
        return window


@dataclass
class _Account:
    spent: float = 0.0
    holds: dict[str, tuple[float, float]] = field(default_factory=dict)  # token: (amount, until)
    flags: set[str] = field(default_factory=set)
    expires_at: float | None = None

    def reserved(self, now: float) -> float:
        for token in [t for t, (_, until) in self.holds.items() if until <= now]:
            del self.holds[token]
        return sum((a for a, _ in self.holds.values()), 0.0)


class MemoryBackend(Backend):
    """Counters for one process, behind one lock."""

    description = "in-process counters"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: dict[str, _Log] = {}
        self._accounts: dict[str, _Account] = {}
        self._rosters: dict[str, tuple[set[str], float | None]] = {}
        self._swept = time.time()

    def window_take(self, groups: Sequence[Sequence[Take]], window_s: float, *, token: str,
                    dry_run: bool = False, now: float | None = None) -> Taken:
        t = time.time() if now is None else now
        with self._lock:
            logs = [[self._logs.setdefault(k.key, _Log()) for k in g] for g in groups]
            used = [[lg.used(t - window_s) for lg in g] for g in logs]
            waits, flat = [], 0
            for g, takes in enumerate(groups):
                waits.append(max(((logs[g][i].wait(k.limit, k.amount, used[g][i], t, window_s),
                                   flat + i) for i, k in enumerate(takes)), default=(0.0, -1)))
                flat += len(takes)
            ok, choice, retry, who = _decide(waits)
            taking = [] if not ok or dry_run else [0, choice + 1] if choice >= 0 else [0]
            for g in taking:
                for k, lg in zip(groups[g], logs[g]):
                    lg.entries.append((max(t, lg.entries[-1][0]) if lg.entries else t, token))
                    lg.amounts[token] = lg.amounts.get(token, 0.0) + k.amount
                    lg.total += k.amount
        return Taken(ok, choice, retry, who, tuple(u for g in used for u in g))

    def window_adjust(self, keys: Sequence[str], token: str, delta: float) -> None:
        with self._lock:
            for log in (self._logs.get(k) for k in keys):
                if log is not None and token in log.amounts:
                    log.amounts[token] += delta
                    log.total += delta

    def _account(self, key: str, now: float) -> _Account:
        account = self._accounts.get(key)
        if account is None or (account.expires_at is not None and account.expires_at <= now):
            account = self._accounts[key] = _Account()
        return account

    def reserve(self, holds: Sequence[Hold], *, token: str, hold_s: float,
                now: float | None = None) -> Reserved:
        t = time.time() if now is None else now
        with self._lock:
            self._sweep(t)
            accounts = [self._account(h.key, t) for h in holds]
            spent = tuple(a.spent for a in accounts)
            reserved = tuple(a.reserved(t) for a in accounts)
            for i, h in enumerate(holds):
                if spent[i] + reserved[i] + h.amount > h.limit:
                    return Reserved(False, i, spent, reserved)
            for h, account in zip(holds, accounts):
                account.holds[token] = (h.amount, t + hold_s)
                account.expires_at = h.expires_at
                members = self._rosters.get(h.roster, (set(), None))[0]
                self._rosters[h.roster] = (members | {h.member}, h.expires_at)
        return Reserved(True, -1, spent, reserved)

    def settle(self, keys: Sequence[tuple[str, float | None]], *, token: str, actual: float,
               softs: Sequence[Soft] = (), held_only: bool = False) -> Settled:
        now = time.time()
        with self._lock:
            accounts = [self._account(key, now) for key, _ in keys]
            for account, (_, expires_at) in zip(accounts, keys):
                held = account.holds.pop(token, None) is not None
                if actual and (held or not held_only):
                    account.spent += actual
                    account.expires_at = expires_at
            crossed = []
            for soft in softs:
                account = accounts[soft.counter]
                crossed.append(account.spent >= soft.at and soft.flag not in account.flags)
                if crossed[-1]:
                    account.flags.add(soft.flag)
        return Settled(tuple(a.spent for a in accounts), tuple(crossed))

    def balances(self, keys: Sequence[str]) -> list[tuple[float, float]]:
        now = time.time()
        with self._lock:
            return [(a.spent, a.reserved(now)) for a in (self._account(k, now) for k in keys)]

    def members(self, roster: str) -> list[str]:
        with self._lock:
            members, expires_at = self._rosters.get(roster, (set(), None))
            return [] if expires_at is not None and expires_at <= time.time() else sorted(members)

    def enroll(self, entries: Sequence[tuple[str, str, float | None]]) -> None:
        with self._lock:
            for roster, member, expires_at in entries:
                members = self._rosters.get(roster, (set(), None))[0]
                self._rosters[roster] = (members | {member}, expires_at)

    def ping(self) -> float:
        return 0.0

    def _sweep(self, now: float) -> None:
        """Once a minute, drop counters of past periods so a long-lived process stays small."""
        if now - self._swept >= 60:
            self._swept = now
            for key in [k for k, a in self._accounts.items() if (a.expires_at or now) < now]:
                del self._accounts[key]
            for key in [k for k, (_, e) in self._rosters.items() if (e or now) < now]:
                del self._rosters[key]


# ---------------------------------------------------------------------------------------- Redis

class Outage:
    """How a limiter or budget goes on when its backend is away: fail closed (raise), or open.

    The backend's breaker makes every call during an outage fail at once, so going on costs
    nothing; this only decides whether to raise, and warns once per outage.
    """

    def __init__(self, fail_open: bool, consequence: str) -> None:
        self.fail_open = fail_open
        self.consequence = consequence
        self._warned = False

    def failed(self, exc: BackendUnavailable) -> None:
        """Raise ``exc`` when failing closed; else warn (once per outage) and return."""
        if not self.fail_open:
            raise exc
        self.warn(f"{exc}; {self.consequence} until it is back")

    def warn(self, message: str) -> None:
        """Log ``message`` unless this outage was already reported."""
        if not self._warned:
            self._warned = True
            log.warning("%s", message)

    def answered(self) -> None:
        self._warned = False
