"""The end of the process: what is in flight is written down, then our threads stop.

Call records travel off the calling path (the recorder thread, the pipe to the recording
process, or with ``store.recorder: thread`` the sinks and the store writer of this process), on
daemon threads so that they never keep a process alive; nothing would drain them at exit. This
module does, once per process: an ``atexit`` hook (normal end, ``sys.exit``, an unhandled
exception, SIGINT's ``KeyboardInterrupt``) runs the registered closers stage by stage: records
(recorders, then sinks, then stores), then the event loop (litellm's HTTP clients closed on it,
its tasks finished, its thread joined), then in-process servers. Everything is done while the
interpreter is whole, so no finalizer has anything left to do (litellm's client finalizers
import modules, which hangs when a frozen daemon thread holds the import lock).

SIGTERM's default action kills the process without ``atexit``. A library must not take the
application's signals, so a handler is installed only where SIGTERM has its default action, and
only from the main thread: it drains the records (bounded) and then dies of SIGTERM as the
default would. An application with its own handler keeps it; its ``sys.exit`` runs ``atexit``.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable
from functools import cache
from typing import Any

from .fork import reset_in_child

__all__ = ["EXIT_TIMEOUT", "LOOPS", "RECORDS", "SERVERS", "SIGTERM_TIMEOUT", "STORES",
           "Lifecycle", "default_lifecycle"]

log = logging.getLogger("adapters.llm")

# Stages, run in this order: what a stage closes may still need what a later one holds.
RECORDS = 10        # recorders, then their sinks (Langfuse bounded), then their stores
STORES = 20         # stores opened on their own (reports, scores)
LOOPS = 30          # the private event loop: litellm's clients, tasks, its thread
SERVERS = 40        # the in-process provider simulator

EXIT_TIMEOUT = 10.0      # the whole drain at exit
SIGTERM_TIMEOUT = 5.0    # the records' drain on SIGTERM, before the process dies of it

Closer = Callable[[float], object]


class Lifecycle:
    """The closers to run at the end of the process, by stage; each gets the time left."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closers: list[tuple[int, int, Callable[[], Closer | None]]] = []
        self._added = 0
        self._atexit = False
        self._sigterm = False
        self._running = threading.Lock()     # one drain at a time (atexit, SIGTERM)
        reset_in_child(self, Lifecycle._forget_locks)

    def _forget_locks(self) -> None:
        """In a forked child: a lock a parent's thread held would stay locked for good. The
        hooks stay (inherited by the child); its closers find their owners reset."""
        self._lock = threading.Lock()
        self._running = threading.Lock()

    def install(self) -> None:
        """Register the ``atexit`` hook (once) and, where SIGTERM has its default action and
        this is the main thread, the SIGTERM handler. Cheap: called by every adapter."""
        if self._atexit and self._sigterm:
            return
        with self._lock:
            if not self._atexit:
                atexit.register(self._at_exit)
                self._atexit = True
            if not self._sigterm and threading.current_thread() is threading.main_thread():
                self._sigterm = True         # one attempt: a handler set later is not ours
                try:
                    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                        signal.signal(signal.SIGTERM, self._on_sigterm)
                except ValueError:           # not the main interpreter
                    log.debug("llm-adapter: no SIGTERM handler in a sub-interpreter")

    def run_first(self) -> None:
        """Move the ``atexit`` hook before every hook registered so far (``atexit`` runs the
        last registered first). Libraries that shut down at exit (the Langfuse SDK and
        OpenTelemetry, litellm's logging worker and client clean-up) register their hooks when
        first used, after ours: they would shut down before the records still to be handed
        to them were, and clean litellm's clients up on a loop that does not own them."""
        with self._lock:
            if self._atexit:
                atexit.unregister(self._at_exit)
                atexit.register(self._at_exit)

    def add(self, closer: Closer, *, stage: int) -> None:
        """Run ``closer(seconds_left)`` at the end of the process, in ``stage``.

        A bound method is held weakly (an object that is gone has nothing to close)."""
        ref: Callable[[], Closer | None]
        if hasattr(closer, "__self__") and hasattr(closer, "__func__"):
            ref = weakref.WeakMethod(closer)  # type: ignore[arg-type]
        else:
            ref = _Strong(closer)
        with self._lock:
            self._added += 1
            self._closers.append((stage, self._added, ref))

    def shutdown(self, timeout: float = EXIT_TIMEOUT, *, until: int | None = None) -> bool:
        """Run the closers (of the stages up to ``until``) within ``timeout``; True when each
        finished. Another drain running at the same time is waited for, not repeated."""
        deadline = time.monotonic() + timeout
        if not self._running.acquire(timeout=max(timeout, 0.0)):
            return False
        try:
            with self._lock:
                closers = sorted(self._closers, key=lambda c: (c[0], c[1]))
            ok = True
            for stage, _, ref in closers:
                if until is not None and stage > until:
                    break
                closer = ref()
                if closer is None:
                    continue
                left = max(deadline - time.monotonic(), 0.0)
                try:
                    ok = closer(left) is not False and ok
                except Exception:  # one closer failing must not stop the later stages; logged
                    log.exception("llm-adapter: closing %r at exit failed", closer)
                    ok = False
            return ok
        finally:
            self._running.release()

    def _at_exit(self) -> None:
        self.shutdown(EXIT_TIMEOUT)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        # The drain runs in a thread of its own, bounded: the main thread was interrupted at an
        # arbitrary point and may hold a lock the drain needs (it then waits out the bound).
        worker = threading.Thread(target=self.shutdown, args=(SIGTERM_TIMEOUT,),
                                  kwargs={"until": STORES}, name="llm-adapter-exit",
                                  daemon=True)
        worker.start()
        worker.join(SIGTERM_TIMEOUT + 0.5)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)       # dies as the default action would


class _Strong:
    """A plain function's reference (functions live as long as their module)."""

    def __init__(self, closer: Closer) -> None:
        self.closer = closer

    def __call__(self) -> Closer:
        return self.closer


@cache
def default_lifecycle() -> Lifecycle:
    """The process's lifecycle."""
    return Lifecycle()
