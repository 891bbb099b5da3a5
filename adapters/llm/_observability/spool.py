"""Spans the Langfuse SDK exports itself (``llm.trace`` spans, the caller's own) are kept in
the store when Langfuse does not take them.

``SpoolingExporter`` sits where the SDK's OTLP exporter would. A batch Langfuse did not
acknowledge is written to the store's spool as the exact OTLP request bytes, so a replay carries
the original span ids and timestamps and Langfuse upserts instead of duplicating. While delivery
is failing it spools straight away (no waiting on a dead endpoint). The spool is replayed by
``Delivery`` with the outbox's rules: leased, split and quarantined when refused for its content,
retried with backoff otherwise. Calls' generations do not come this way: they are in the outbox.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .delivery import SPOOL_KIND

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    from .store import LocalStore

__all__ = ["KIND", "SpoolingExporter"]

log = logging.getLogger("adapters.llm")
KIND = SPOOL_KIND


class _Health(Protocol):
    @property
    def down(self) -> bool: ...

    def wake(self) -> None: ...


class SpoolingExporter(SpanExporter):
    """An OTLP exporter that keeps in the store what the endpoint did not acknowledge."""

    def __init__(self, inner: SpanExporter, store: LocalStore) -> None:
        self._inner = inner
        self._store = store
        self.health: _Health | None = None     # the Delivery: is Langfuse failing right now?
        self.spooled = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        health = self.health
        if health is not None and health.down:
            self._spool(spans, "Langfuse is failing; not waited on")
            return SpanExportResult.SUCCESS
        if self._inner.export(spans) is SpanExportResult.SUCCESS:
            return SpanExportResult.SUCCESS
        self._spool(spans, "export failed")
        return SpanExportResult.SUCCESS   # kept safely: the SDK must not drop or re-queue it

    def _spool(self, spans: Sequence[ReadableSpan], why: str) -> None:
        payload = encode_spans(spans).SerializeToString()
        self._store.spool.add(KIND, payload)
        self.spooled += len(spans)
        log.debug("llm-adapter: spooled %d span(s): %s", len(spans), why)
        if self.health is not None:
            self.health.wake()

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self._inner.force_flush(timeout_millis))

    def state(self) -> dict[str, Any]:
        return {"spooled_spans": self.spooled}
