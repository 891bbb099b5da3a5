"""A bounded queue drained in batches by one daemon thread.

Waking a Python thread per item costs more than the item's work (each wake-up is a GIL hand-off
that the calling thread waits on), so the worker lets a batch gather for ``interval`` seconds
and takes everything queued at once: an item waits at most ``interval`` plus the handling of
its batch (the durability window). While items keep coming the worker just sleeps ``interval``
between batches (one wake-up per batch, nothing on the calling path); once idle it waits to be
woken by the first item of the next batch, so an idle worker costs nothing. ``put`` never
blocks: a full queue drops and counts.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("adapters.llm")

_SAFETY_WAKE = 1.0          # an idle worker looks at its queue this often even if never woken


class BatchWorker(Generic[T]):
    def __init__(self, name: str, handle: Callable[[list[T]], None], *, interval: float = 0.01,
                 queue_size: int = 10_000, idle: Callable[[], None] | None = None,
                 idle_interval: float = 0.05) -> None:
        self.name = name
        self._idle = idle
        self._idle_interval = idle_interval
        self.dropped = 0
        self._handle = handle
        self._interval = interval
        self._queue: queue.Queue[T] = queue.Queue(maxsize=queue_size)
        self._wake = threading.Event()
        self._signalled = False            # the worker was woken for the items now queued
        self._hurry = False                # a drain waits: no gathering
        self._stopping = False
        self._lock = threading.Lock()
        self._pending = 0                  # queued or being handled
        self._thread: threading.Thread | None = None

    def put(self, item: T) -> None:
        """Queue ``item``; never blocks, never raises."""
        if self._stopping:
            self._count_drop("stopped")
            return
        if self._thread is None:
            self.start()
        with self._lock:
            self._pending += 1
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            with self._lock:
                self._pending -= 1
            self._count_drop("full")
            return
        if not self._signalled:            # the first item of a batch wakes the worker
            self._signalled = True
            self._wake.set()

    def drain(self, timeout: float) -> bool:
        """Handle everything queued so far now; True when it was all handled in time."""
        deadline = time.monotonic() + timeout
        self._hurry = True
        try:
            self._wake.set()
            while self._pending and time.monotonic() < deadline:
                time.sleep(0.002)
                self._wake.set()
        finally:
            self._hurry = False
        return not self._pending

    def stop(self, timeout: float) -> bool:
        """Handle what is queued, then end the thread; True when it ended in time.

        Later ``put`` calls drop and count: this is for the end of the process."""
        self._stopping = True
        thread = self._thread
        if thread is None:
            return True
        self._wake.set()
        thread.join(max(timeout, 0.0))
        if thread.is_alive():
            log.warning("llm-adapter: %s did not finish within %.1f s; %d item(s) not handled",
                        self.name, timeout, self._pending)
            return False
        return True

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def _count_drop(self, why: str) -> None:
        self.dropped += 1
        if self.dropped % 1000 == 1:
            reason = "queue full" if why == "full" else "closed at the end of the process"
            log.warning("llm-adapter: %s %s, %d item(s) dropped so far", self.name, reason,
                        self.dropped)

    def _run(self) -> None:
        busy = False                # items kept coming: gather the next batch without a wake-up
        while True:
            woken = busy
            if not busy:
                woken = self._wake.wait(self._idle_interval if self._idle is not None
                                        else _SAFETY_WAKE)
                self._wake.clear()
            if woken and not (self._hurry or self._stopping):
                time.sleep(self._interval)             # let the batch gather
            batch: list[T] = []
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if batch:
                busy = True                            # _signalled stays set: puts stay quiet
                try:
                    self._guarded(partial(self._handle, batch), f"a batch of {len(batch)}")
                finally:
                    with self._lock:
                        self._pending -= len(batch)
            else:
                self._signalled = False                # idle: the next item wakes the worker
                busy = not self._queue.empty()         # one came in between: not idle after all
                if busy:
                    self._signalled = True
                if not busy and self._idle is not None and not self._stopping:
                    self._guarded(self._idle, "idle work")
            if self._stopping and self._queue.empty():
                return

    def _guarded(self, work: Callable[[], None], what: str) -> None:
        try:
            work()
        except Exception:  # the worker must outlive a bad batch; it is logged
            log.exception("llm-adapter: %s failed on %s", self.name, what)
