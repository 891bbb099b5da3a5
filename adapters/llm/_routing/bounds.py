"""A time bound on the awaits of a ``with`` block: ``asyncio.timeout`` entered without ``async``.

Every call runs its router call under one (and a stream under a second, for its first chunk).
``asyncio.timeout``'s ``async with`` makes a coroutine for each enter and exit and goes
through its general ``reschedule``; on a path taken once per call that was ~30 us of its CPU.
``Bound`` holds one timer handle and keeps ``asyncio.timeout``'s rules: the task is cancelled
when the time is up, and only that cancellation becomes a ``TimeoutError`` at the block's end;
a cancellation of the caller's own stays a cancellation.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

__all__ = ["Bound"]

_NEW, _ENTERED, _EXPIRING, _EXPIRED, _EXITED = range(5)


class Bound:
    """``with Bound(seconds):`` inside a task; ``None``: no bound (nothing is scheduled)."""

    __slots__ = ("_seconds", "_task", "_handle", "_cancelling", "_state")

    def __init__(self, seconds: float | None) -> None:
        self._seconds = seconds
        self._handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._state = _NEW

    def __enter__(self) -> Bound:
        if self._state != _NEW:
            raise RuntimeError("a Bound is entered once")
        self._state = _ENTERED
        if self._seconds is None:
            return self
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a Bound is used inside a task")
        loop = task.get_loop()
        self._task = task
        self._cancelling = task.cancelling()
        self._handle = loop.call_at(loop.time() + self._seconds, self._expire) \
            if self._seconds > 0 else loop.call_soon(self._expire)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._state == _EXPIRING:
            self._state = _EXPIRED
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc
        elif self._state == _ENTERED:
            self._state = _EXITED

    def expired(self) -> bool:
        """Whether the time was up (the block's ``TimeoutError`` came from this bound)."""
        return self._state in (_EXPIRING, _EXPIRED)

    def _expire(self) -> None:
        self._handle = None
        self._task.cancel()
        self._state = _EXPIRING
