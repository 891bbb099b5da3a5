"""A private event loop in a daemon thread, so the sync API works anywhere.

``generate`` is called from plain scripts, from worker threads and from code that already runs
an event loop (where ``asyncio.run`` is forbidden). Running every sync call on one long-lived
loop of our own serves all three, and keeps litellm's pooled HTTP connections on one loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Coroutine
from functools import cache
from typing import Any, TypeVar

from .fork import reset_in_child
from .lifecycle import LOOPS, default_lifecycle
from ..errors import UsageError

T = TypeVar("T")
log = logging.getLogger("adapters.llm")
_GRACE = 1.0        # at exit, how long work still running on the loop may take to finish


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
                default_lifecycle().add(self.close, stage=LOOPS)
            return self._loop

    def close(self, timeout: float = 5.0) -> bool:
        """Wind the loop down and join its thread: what still runs gets ``_GRACE`` seconds and
        is then cancelled, litellm's HTTP clients are closed on this loop, the default
        executor is joined. True when the thread ended in time. A later sync call starts a
        new loop."""
        from .._routing.litellm import forget_clients

        deadline = time.monotonic() + timeout
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return True
        if threading.current_thread() is thread:
            raise UsageError("the loop cannot be closed from its own thread")
        if loop.is_running():
            future = asyncio.run_coroutine_threadsafe(_wind_down(min(_GRACE, timeout)), loop)
            try:
                future.result(max(deadline - time.monotonic(), 0.0))
            except concurrent.futures.TimeoutError:
                log.warning("llm-adapter: the event loop did not wind down within %.1f s",
                            timeout)
            except Exception:  # winding down is best effort: the loop is stopped regardless
                log.exception("llm-adapter: winding the event loop down failed")
            loop.call_soon_threadsafe(loop.stop)
        thread.join(max(deadline - time.monotonic(), 0.0))
        if thread.is_alive():
            log.warning("llm-adapter: the event loop thread did not stop within %.1f s", timeout)
            return False
        loop.close()
        forget_clients()            # finalized now, from a thread with no running loop
        return True

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


async def _wind_down(grace: float) -> None:
    """Let the loop's other tasks finish (``grace`` seconds: background settlements among
    them), cancel the rest, close this loop's Redis clients and litellm's HTTP clients, then
    the async generators and the default executor: at exit no task is left pending ("Task was
    destroyed but it is pending") and no thread is left."""
    from .._routing.litellm import close_clients, stop_logging_worker

    await stop_logging_worker(grace)
    this = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not this]
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=grace)
    await _close_redis_clients()
    await close_clients()
    for _ in range(3):                  # what the closes scheduled (litellm's close tasks)
        await asyncio.sleep(0)
    rest = [t for t in asyncio.all_tasks() if t is not this]
    if rest:
        await asyncio.wait(rest, timeout=grace)
    loop = asyncio.get_running_loop()
    await loop.shutdown_asyncgens()
    await asyncio.wait_for(loop.shutdown_default_executor(), timeout=grace)


async def _close_redis_clients() -> None:
    """The budget and rate-limit Redis clients of this loop (the process's policy pool, if
    any was made), once the settlements that use them ended."""
    from .._traffic.policies import default_policies

    if not default_policies.cache_info().currsize:
        return
    try:
        await default_policies().aclose()
    except Exception:  # closing at exit is best effort; the process ends regardless. Logged
        log.exception("llm-adapter: closing the Redis clients at exit failed")
