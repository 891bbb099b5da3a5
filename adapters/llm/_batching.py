"""A bounded queue drained in batches by one daemon thread.

Waking a Python thread per item costs more than the item's work (each wake-up is a GIL hand-off
that the calling thread waits on), so the worker sleeps ``interval`` seconds between drains and
takes everything queued at once. ``put`` never blocks: a full queue drops and counts.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("adapters.llm")


class BatchWorker(Generic[T]):
    def __init__(self, name: str, handle: Callable[[list[T]], None], *, interval: float = 0.05,
                 queue_size: int = 10_000, idle: Callable[[], None] | None = None) -> None:
        self.name = name
        self._idle = idle
        self.dropped = 0
        self._handle = handle
        self._interval = interval
        self._queue: queue.Queue[T] = queue.Queue(maxsize=queue_size)
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._pending = 0                  # queued or being handled
        self._thread: threading.Thread | None = None

    def put(self, item: T) -> None:
        """Queue ``item``; never blocks, never raises."""
        if self._thread is None:
            self._start()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("llm-adapter: %s queue full, %d item(s) dropped so far",
                            self.name, self.dropped)
            return
        with self._lock:
            self._pending += 1

    def drain(self, timeout: float) -> bool:
        """Handle everything queued so far now; True when it was all handled in time."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while self._pending and time.monotonic() < deadline:
            time.sleep(0.002)
            self._wake.set()
        return not self._pending

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            batch: list[T] = []
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if not batch:
                if self._idle is not None:
                    self._guarded(self._idle, "idle work")
                continue
            try:
                self._guarded(lambda: self._handle(batch), f"a batch of {len(batch)}")
            finally:
                with self._lock:
                    self._pending -= len(batch)

    def _guarded(self, work: Callable[[], None], what: str) -> None:
        try:
            work()
        except Exception:  # the worker must outlive a bad batch; it is logged
            log.exception("llm-adapter: %s failed on %s", self.name, what)
