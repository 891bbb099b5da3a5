"""Budget settlements the backend did not take: kept in the process, bounded, retried later.

A call that has its answer is never failed by its settlement. When Redis is away at that
moment, the settle (or release) waits here and is retried when Redis answers again. A settle
that timed out may have run in Redis after all (a hung Redis runs it when it resumes); its
retry adds only to counters that still hold the call's reservation, so it never counts twice.
A connection refused or closed counts as not run: a Redis killed mid-command kept nothing,
unless it persists every write (AOF ``always``), where such a retry may count one call twice.
Beyond ``max_late`` waiting, the oldest are dropped, and what they spent is said in a warning:
nothing is lost silently.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .counters import Backend, Outage
from ..errors import BackendUnavailable

__all__ = ["Late", "SettleLater"]

log = logging.getLogger("adapters.llm.budgets")


@dataclass(frozen=True)
class Late:
    """A settle or release the backend did not take."""

    keys: tuple[tuple[str, float | None], ...]
    token: str
    amount: int                 # nano-dollars; 0: only the reservation to drop
    held_only: bool             # the first try may have run: add only where still reserved
    rosters: tuple[tuple[str, str, float | None], ...] = ()   # listed again, for reports


class SettleLater:
    """What waits for one backend, in order; one retry pass at a time."""

    def __init__(self, backend: Backend, outage: Outage, *, max_late: int,
                 usd: Callable[[int], str]) -> None:
        self.backend = backend
        self.max_late = max_late
        self._outage = outage
        self._usd = usd
        self._lock = threading.Lock()
        self._late: deque[Late] = deque()
        self._nano = 0
        self._dropped = [0, 0]              # calls, nano-dollars dropped from a full list
        self._retrying = False
        self._task: asyncio.Task[int] | None = None

    @property
    def waiting(self) -> tuple[int, int]:
        """(settlements waiting, their spend in nano-dollars)."""
        with self._lock:
            return len(self._late), self._nano

    def defer(self, late: Late, exc: BackendUnavailable, *, warn: bool = True) -> None:
        """Keep ``late`` within ``max_late``; warn once per outage (``warn``)."""
        with self._lock:
            self._late.append(late)
            self._nano += late.amount
            first_drop = False
            while len(self._late) > self.max_late:
                dropped = self._late.popleft()
                self._nano -= dropped.amount
                first_drop = first_drop or self._dropped[0] == 0
                self._dropped[0] += 1
                self._dropped[1] += dropped.amount
            spend = self._nano
        if warn:
            self._outage.warn(f"{exc}; budgets could not be settled: what answered calls "
                              f"spent ({self._usd(spend)} so far) waits in this process and is "
                              "added when it answers again")
        if first_drop:
            log.warning("more than %d budget settlements are waiting for %s; the oldest are "
                        "dropped (their spend is not counted in budgets)", self.max_late,
                        self.backend.description)

    def answered(self, *, sync: bool) -> None:
        """The backend answered a call: retry what waits (on the loop: in the background)."""
        if not self._late:
            return
        if sync:
            self.retry()
        elif self._task is None or self._task.done() or self._task.get_loop().is_closed():
            self._task = asyncio.get_running_loop().create_task(self.aretry())

    def retry(self) -> int:
        """Retry in order until the backend fails again; how many still wait."""
        if not self._claim():
            return len(self._late)
        try:
            while self._late:
                late = self._late[0]
                try:
                    self.backend.settle(list(late.keys), token=late.token, actual=late.amount,
                                        held_only=late.held_only)
                except BackendUnavailable:
                    break
                self._done(late)
                if late.rosters:            # a Redis that restarted empty lists them again
                    try:
                        self.backend.enroll(late.rosters)
                    except BackendUnavailable as exc:   # only reports miss it: never settle twice
                        log.debug("budget roster not restored: %s", exc)
        finally:
            self._retrying = False
        return len(self._late)

    async def aretry(self) -> int:
        """``retry`` on the event loop."""
        if not self._claim():
            return len(self._late)
        try:
            while self._late:
                late = self._late[0]
                try:
                    await self.backend.asettle(list(late.keys), token=late.token,
                                               actual=late.amount, held_only=late.held_only)
                except BackendUnavailable:
                    break
                self._done(late)
                if late.rosters:
                    try:
                        await self.backend.aenroll(late.rosters)
                    except BackendUnavailable as exc:   # as in retry()
                        log.debug("budget roster not restored: %s", exc)
        finally:
            self._retrying = False
        return len(self._late)

    def _claim(self) -> bool:
        with self._lock:
            if self._retrying:
                return False
            self._retrying = True
            return True

    def _done(self, late: Late) -> None:
        with self._lock:
            if self._late and self._late[0] is late:   # not dropped from a full list meanwhile
                self._late.popleft()
                self._nano -= late.amount
            empty = not self._late
            dropped, self._dropped = self._dropped, [0, 0]
        if empty:
            log.info("budget settlements that waited for %s are added", self.backend.description)
        if dropped[0]:
            log.warning("%d budget settlements (%s) were dropped while %s was away: more than "
                        "%d were waiting", dropped[0], self._usd(dropped[1]),
                        self.backend.description, self.max_late)
