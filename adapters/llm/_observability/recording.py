"""Call records, from the call to the sinks, off the calling path.

The call builds a raw ``CallRecord``. When the only sink is the recording process and the
record is small, the call masks it and writes it to the process's pipe itself (one
non-blocking write, ~0.1 ms: no thread to wake, and nothing left in this process for a SIGKILL
to lose). Otherwise it drops the record in a bounded queue (microseconds); one thread masks the
queued records in batches and hands them to each sink (local store, Langfuse). A sink that
fails is logged and counted, never raised into the call; a full queue drops and counts rather
than blocking it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from functools import partial
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from .batching import BatchWorker
from ..errors import LLMAdapterError, ProviderError
from .masking import Masker
from .records import CallRecord, LLMResponse

__all__ = ["Recorder", "Sink", "build_record", "hand_over"]

log = logging.getLogger("adapters.llm")


class Sink(Protocol):
    """Where records go. ``emit`` must be quick and thread-safe (enqueue, do the work later);
    ``flush(timeout)`` delivers what was emitted, within ``timeout`` seconds, True when done.
    A sink may also have ``close()``: called once at the end of the process, after its flush.

    A sink that also needs the masked record beside the one it chose (the store, writing the
    Langfuse outbox row with the call's row) has ``emit_pair(record, masked)``, used instead;
    one with ``emit_batch([(record, masked), ...])`` gets the recorder's whole batch at once
    (each record alone, as above, if that raises: it must take all or nothing).
    """

    name: str
    wants_masked: bool              # False: only secrets are removed (e.g. store with store: false)

    def emit(self, record: CallRecord) -> None: ...

    def flush(self, timeout: float) -> bool: ...


class Recorder:
    """Masks records and fans them out to the sinks (see the module doc)."""

    def __init__(self, sinks: list[Sink], masker: Masker, secrets_only: Masker,
                 queue_size: int = 10_000) -> None:
        self.sinks = sinks
        self.masker = masker
        self.secrets_only = secrets_only
        self._one_version = masker == secrets_only
        self.failures: dict[str, int] = {}
        self._worker: BatchWorker[CallRecord] = BatchWorker(
            "llm-adapter-recorder", self._handle, queue_size=queue_size)
        # The recording process alone: a small record is masked and written to its pipe by
        # the call itself, which wakes no thread (each wake-up takes the GIL from the calls)
        # and leaves no window in which a SIGKILL loses a call that returned.
        only = sinks[0] if len(sinks) == 1 else None
        self._now: Callable[[CallRecord, CallRecord], bool] | None = getattr(
            only, "emit_now", None)

    @property
    def dropped(self) -> int:
        return self._worker.dropped

    def record(self, record: CallRecord) -> None:
        """Hand ``record`` to the sinks (the recording process's pipe, at once, when it takes
        it without waiting) or queue it for the thread; never blocks, never raises."""
        if not self.sinks:
            return
        now = self._now
        if now is not None and _small(record):
            try:
                masked, plain = self._pair(record)
                if now(masked if self.sinks[0].wants_masked else plain, masked):
                    return
            except Exception:  # the thread's way below says what fails, once per batch
                log.debug("llm-adapter: a record went the recorder thread's way", exc_info=True)
        self._worker.put(record)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued record reached the sinks and the sinks delivered it."""
        deadline = time.monotonic() + timeout
        done = self._worker.drain(timeout)
        for sink in self.sinks:
            left = max(deadline - time.monotonic(), 0.0)
            done = _guard(sink, self.failures, partial(sink.flush, left)) is True and done
        return done

    def close(self, timeout: float = 5.0) -> bool:
        """Hand every queued record to the sinks and stop the thread (the sinks stay open:
        they are flushed and closed by their owner). True when all was handed over in time;
        records queued later are dropped and counted. Safe to call twice."""
        return self._worker.stop(timeout)

    def _handle(self, batch: list[CallRecord]) -> None:
        hand_over(self.sinks, [self._pair(record) for record in batch], self.failures)

    def _pair(self, record: CallRecord) -> tuple[CallRecord, CallRecord]:
        """(masked, secrets-only) versions of ``record``: one object when they are the same."""
        masked = _masked(record, self.masker)
        if self._one_version:
            return masked, masked
        return masked, _masked(record, self.secrets_only)


_SMALL_TEXT = 2_000     # characters of prompt and answer masked on the calling path, at most


def _small(record: CallRecord) -> bool:
    """Whether masking ``record`` is quick enough for the call to do it (plain text of a few
    thousand characters; anything larger or richer goes to the thread)."""
    size = len(record.output or "")
    for message in record.input:
        content = message.get("content") if isinstance(message, dict) else None
        if content is not None and not isinstance(content, str):
            return False
        size += len(content or "")
    return size <= _SMALL_TEXT and not record.tool_calls


def hand_over(sinks: list[Sink], pairs: list[tuple[CallRecord, CallRecord]],
              failures: dict[str, int]) -> None:
    """Give each sink its version of each (masked, secrets-only) pair: the whole batch at
    once where it can take it, else record by record; a sink that fails is logged and
    counted in ``failures``, never raised."""
    for sink in sinks:
        whole = getattr(sink, "emit_batch", None)
        if whole is not None:
            chosen = [(m if sink.wants_masked else p, m) for m, p in pairs]
            try:
                whole(chosen)           # one hand-over (one store transaction) per batch
                continue
            except Exception:  # one record it could not take: each alone, as below
                log.debug("llm-adapter: the %s sink took the batch record by record",
                          sink.name, exc_info=True)
        for masked, plain in pairs:
            chosen_one = masked if sink.wants_masked else plain
            pair = getattr(sink, "emit_pair", None)
            if pair is not None:
                _guard(sink, failures, partial(pair, chosen_one, masked))
            else:
                _guard(sink, failures, partial(sink.emit, chosen_one))


def _guard(sink: Sink, failures: dict[str, int], action: Callable[[], object]) -> object:
    try:
        return action()
    except Exception:  # a sink must never take the calls down; it is logged and counted
        count = failures[sink.name] = failures.get(sink.name, 0) + 1
        if count == 1 or count % 100 == 0:
            log.exception("llm-adapter: the %s sink failed (%d time(s))", sink.name, count)
        return None


def _masked(record: CallRecord, masker: Masker) -> CallRecord:
    """``record`` as a sink may see it; identifiers that hold patient data become pseudonyms, so
    what is grouped by them (costs by user, session trees) still groups. ``record`` itself when
    masking changes nothing in it."""
    def ident(value: Any) -> Any:
        return masker.identifier(value) if isinstance(value, str) and value else value

    def text(value: str | None) -> str | None:
        return masker.text(value) if value else value

    changed: dict[str, Any] = {}
    for name in ("session_id", "user_id", "agent", "stage", "trace_name"):
        value = getattr(record, name)
        masked = ident(value)
        if masked != value:             # a remembered identifier is equal, not the same
            changed[name] = masked
    tags = tuple(ident(t) for t in record.tags)
    if tags != record.tags:
        changed["tags"] = tags
    for name, masked in (("input", masker(record.input)), ("output", text(record.output)),
                         ("tool_calls", masker(record.tool_calls)),
                         ("metadata", masker(record.metadata)),
                         ("error_message", text(record.error_message))):
        if masked is not getattr(record, name):
            changed[name] = masked
    attempts = [dataclasses.replace(a, message=message)
                if a.message and (message := masker.text(a.message)) is not a.message else a
                for a in record.attempts]
    if any(m is not a for m, a in zip(attempts, record.attempts)):
        changed["attempts"] = attempts
    return dataclasses.replace(record, **changed) if changed else record


_KNOWN_KEYS = ("session_id", "user_id", "agent", "stage", "tags", "trace_name")


def build_record(*, call_id: str, group: str, environment: str, messages: list[dict[str, Any]],
                 params: Mapping[str, Any], metadata: Mapping[str, Any] | None,
                 scope: Any, parent: tuple[str, str | None], started_at: float,
                 response: LLMResponse | None = None, error: LLMAdapterError | None = None,
                 stream: bool = False, prompt: Any = None) -> CallRecord:
    """The record of one call, from what the caller asked and what came back (or failed)."""
    meta = dict(metadata or {})
    tags = tuple(meta.get("tags") or ()) + tuple(getattr(scope, "tags", ()) or ())
    extra = {k: v for k, v in meta.items() if k not in _KNOWN_KEYS}
    scope_meta = getattr(scope, "metadata", None) or {}
    trace_id, parent_span = parent
    ended = time.time()
    record = CallRecord(
        call_id=call_id, trace_id=trace_id, span_id=call_id[:16], parent_span_id=parent_span,
        started_at=started_at, ended_at=ended, environment=environment, model_group=group,
        status="ok" if error is None else "error",
        latency_ms=response.latency_ms if response else (ended - started_at) * 1000,
        session_id=meta.get("session_id") or getattr(scope, "session_id", None),
        user_id=meta.get("user_id") or getattr(scope, "user_id", None),
        agent=meta.get("agent"), stage=meta.get("stage"),
        trace_name=meta.get("trace_name") or getattr(scope, "name", None),
        tags=tuple(dict.fromkeys(tags)), metadata={**scope_meta, **extra},
        input=messages, stream=stream,
        model_parameters={k: v for k, v in params.items() if k not in ("tools", "messages")},
    )
    if prompt is not None:
        record.prompt_name, record.prompt_version = prompt.name, prompt.version
        record.prompt_variant, record.prompt_source = prompt.variant, prompt.source
    if response is not None:
        record.deployment, record.provider = response.deployment, response.provider
        record.provider_model, record.ttft_ms = response.provider_model, response.ttft_ms
        record.answered_group = response.answered_group
        record.usage, record.cost, record.cost_details = response.usage, response.cost, \
            response.cost_details
        record.output, record.attempts = response.content, list(response.attempts)
        record.cache_hit, record.cost_saved = response.cache_hit, response.cost_saved
        record.hedged = response.hedged
        record.tool_calls = [{"id": t.id, "type": "function",
                              "function": {"name": t.name, "arguments": t.arguments}}
                             for t in response.tool_calls]
    if error is not None:
        record.error_kind = getattr(error, "kind", None) or type(error).__name__
        record.error_message = str(error)
        if isinstance(error, ProviderError):
            record.attempts = list(error.attempts)
            record.deployment = error.deployment
    return record
