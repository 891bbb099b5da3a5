"""A private event loop in a daemon thread, so the sync API works anywhere.

``generate`` is called from plain scripts, from worker threads and from code that already runs
an event loop (where ``asyncio.run`` is forbidden). Running every sync call on one long-lived
loop of our own serves all three, and keeps litellm's pooled HTTP connections on one loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from functools import cache
from typing import Any, TypeVar

from ._fork import reset_in_child
from .errors import UsageError

T = TypeVar("T")


class LoopThread:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        reset_in_child(self, LoopThread._forget)

    def _forget(self) -> None:
        """In a forked child: the loop's thread did not survive; the next call starts anew."""
        self._lock = threading.Lock()
        self._loop = None
        self._thread = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever,
                                                name="llm-adapter-loop", daemon=True)
                self._thread.start()
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the private loop and wait for its result in the calling thread."""
        loop = self.loop()
        if threading.current_thread() is self._thread:
            coro.close()
            raise UsageError("the sync API was called from inside llm-adapter's own event loop; "
                             "use the async API (agenerate) there")
        return asyncio.run_coroutine_threadsafe(coro, loop).result()


@cache
def default_loop() -> LoopThread:
    return LoopThread()
