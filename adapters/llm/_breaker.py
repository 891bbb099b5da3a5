"""One circuit breaker, for every server the package may find away: Redis (limits, budgets,
the cache), Langfuse's prompts API and Langfuse's trace intake.

Closed until a failure; then open: callers are refused without any I/O, except one probe at a
time once ``probe_s`` has passed, whose answer closes it again. With ``max_probe_s`` the wait
doubles after each failure in a row, up to ``max_probe_s``; ``jitter`` spreads it so processes
that failed together do not all probe together; a server's own ``Retry-After`` lengthens it.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

__all__ = ["Breaker"]


class Breaker:
    """Whether to talk to one server now; thread-safe."""

    def __init__(self, probe_s: float = 1.0, *, max_probe_s: float | None = None,
                 jitter: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        if not probe_s >= 0 or not (max_probe_s is None or max_probe_s >= 0) \
                or not 0 <= jitter < 1:
            raise ValueError(f"a breaker needs probe_s >= 0, max_probe_s >= 0 and 0 <= jitter "
                             f"< 1, got probe_s={probe_s!r}, max_probe_s={max_probe_s!r}, "
                             f"jitter={jitter!r}")
        self.probe_s = probe_s
        self.max_probe_s = max_probe_s      # None: every wait is probe_s
        self.jitter = jitter
        self.failures = 0                   # in a row; 0 while closed
        self._clock = clock
        self._lock = threading.Lock()
        self._next_probe = 0.0
        self._down_since: float | None = None
        self._probing = False

    @property
    def closed(self) -> bool:
        return self.failures == 0

    def down_for(self) -> float:
        """Seconds since the outage began (0 while closed)."""
        since = self._down_since
        return 0.0 if since is None else self._clock() - since

    def retry_in(self) -> float:
        """Seconds until a probe may go (0 while closed or when one may go now)."""
        return 0.0 if self.closed else max(self._next_probe - self._clock(), 0.0)

    def admit(self) -> bool:
        """Whether this caller may talk to the server now (closed, or it is the probe).

        An admitted probe must end in ``succeeded``, ``failed`` or ``abandoned``."""
        with self._lock:
            if self.failures == 0:
                return True
            if self._probing or self._clock() < self._next_probe:
                return False
            self._probing = True
            return True

    def succeeded(self) -> None:
        """The server answered: close."""
        with self._lock:
            self.failures = 0
            self._down_since = None
            self._probing = False

    def failed(self, retry_after: float | None = None) -> None:
        """The server is away: open, for the next wait (at least ``retry_after`` seconds)."""
        with self._lock:
            now = self._clock()
            self.failures += 1
            if self._down_since is None:
                self._down_since = now
            wait = self.probe_s
            if self.max_probe_s is not None:
                wait = min(self.probe_s * 2 ** min(self.failures - 1, 60), self.max_probe_s)
            if self.jitter:
                wait *= random.uniform(1 - self.jitter, 1 + self.jitter)
            if retry_after is not None:
                wait = max(wait, retry_after)
            self._next_probe = now + wait
            self._probing = False

    def abandoned(self) -> None:
        """The caller stopped without an answer either way (cancelled): another may probe."""
        with self._lock:
            self._probing = False
