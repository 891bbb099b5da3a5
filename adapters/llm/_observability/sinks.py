"""The record sinks a config writes to, assembled the same way in the calling process and in
the recording process, and their orderly end."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from .recording import Sink
from .tracing import LangfuseSink

__all__ = ["SINK_EXIT_TIMEOUT", "StoreSink", "close_parts", "record_sinks", "together"]

log = logging.getLogger("adapters.llm")

SINK_EXIT_TIMEOUT = 5.0     # a sink's share at exit (Langfuse: what it did not take stays stored)


def record_sinks(store: Any, langfuse: LangfuseSink | None, *, keep_calls: bool,
                 masked: bool) -> list[Sink]:
    """The store (with Langfuse's outbox row committed beside each call), or Langfuse alone
    when the store keeps no calls (its outbox still lives in the store)."""
    if keep_calls:
        return [StoreSink(store, masked=masked, langfuse=langfuse)]
    return [langfuse] if langfuse is not None else []


class StoreSink:
    """The calls row of each record and, with Langfuse on, its outbox row (the masked
    record), queued as one item so the store commits them in one transaction."""

    name = "store"

    def __init__(self, store: Any, *, masked: bool, langfuse: LangfuseSink | None = None) -> None:
        self.store = store
        self.wants_masked = masked
        self.langfuse = langfuse
        if langfuse is not None:
            self.emit_pair = self._emit_pair

    def emit(self, record: Any) -> None:
        self.store.write(record)

    def _emit_pair(self, record: Any, masked: Any) -> None:
        assert self.langfuse is not None
        if not self.langfuse.sampled(masked):       # langfuse.sample_rate: the store keeps it
            self.store.write(record)
            return
        self.store.write_with_outbox(record, self.langfuse.entry(masked))

    def emit_batch(self, pairs: list[tuple[Any, Any]]) -> None:
        """The recorder's batch as one item of the writer's queue: one wake-up of the writer
        and one transaction for all of it, not one per call."""
        langfuse = self.langfuse
        if langfuse is None:
            self.store.write_batch([(record, None) for record, _ in pairs])
        else:
            # langfuse.sample_rate: a trace left out is still stored, with no outbox row.
            self.store.write_batch([(record, langfuse.entry(masked) if langfuse.sampled(masked)
                                     else None) for record, masked in pairs])

    def flush(self, timeout: float) -> bool:
        if self.langfuse is None:
            return bool(self.store.flush(timeout))
        return self.langfuse.flush(timeout)          # commits, then delivers


def close_parts(sinks: list[Sink], stores: list[Any], deadline: float) -> bool:
    """Flush each sink (at most ``SINK_EXIT_TIMEOUT`` each) and close it if it has
    ``close()``, all sinks at the same time (each recording process commits on its own), then
    close each store (at least a second each, whatever the sinks took)."""

    def end(sink: Sink) -> bool:
        left = min(max(deadline - time.monotonic(), 0.0), SINK_EXIT_TIMEOUT)
        ok = _step(sink.name, "flush", lambda: sink.flush(left))
        closer = getattr(sink, "close", None)
        if callable(closer):
            ok = _step(sink.name, "close", closer) and ok
        return ok

    ok = together([partial(end, sink) for sink in sinks], deadline + 2.0)
    for store in stores:
        if store is not None:
            ok = bool(store.close(max(deadline - time.monotonic(), 1.0))) and ok
    return ok


def together(steps: list[Callable[[], bool]], deadline: float) -> bool:
    """Run ``steps`` at the same time (one thread each beyond the first) and wait for them
    until ``deadline``: True when each finished and returned True. A step still running at the
    deadline is left to finish on its own (its thread is a daemon)."""
    if len(steps) <= 1:
        return all(step() for step in steps)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda s=step: results.append(s() is not False),
                                name="llm-adapter-exit", daemon=True) for step in steps[1:]]
    for thread in threads:
        thread.start()
    ok = steps[0]() is not False
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0.0))
    return ok and len(results) == len(threads) and all(results)


def _step(sink: str, what: str, action: Any) -> bool:
    """One sink's flush or close at the end: logged, never raised (the others still run)."""
    try:
        return action() is not False
    except sqlite3.Error as exc:    # the store's file went away or broke: say so in one line
        log.warning("llm-adapter: the %s sink could not %s at exit: %s", sink, what, exc)
        return False
    except Exception:  # a sink failing at exit must not keep the store from closing; logged
        log.exception("llm-adapter: the %s sink failed to %s at exit", sink, what)
        return False
