"""Nothing lost when Langfuse is down: span batches it did not take wait in the local store.

``SpoolingExporter`` sits where the Langfuse SDK's OTLP exporter would. A batch Langfuse did not
acknowledge is written to the store's spool as the exact OTLP request bytes, so a replay carries
the original span ids and timestamps and Langfuse upserts instead of duplicating. After a
failure the exporter spools straight away (no more waiting on a dead endpoint: the SDK's span
queue would overflow and drop) until a replay gets through; a replay is tried every
``retry_interval`` seconds and by ``llm-adapter traces sync``. Memory stays bounded: what is
not acknowledged is on disk, not in a queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

if TYPE_CHECKING:
    import httpx
    from opentelemetry.sdk.trace import ReadableSpan

    from .store import LocalStore

__all__ = ["SpoolingExporter", "replay"]

log = logging.getLogger("adapters.llm")
KIND = "otlp-traces"


def replay(store: LocalStore, endpoint: str, headers: Mapping[str, str], *,
           timeout: float = 5.0, limit: int = 100,
           client: httpx.Client | None = None) -> tuple[int, int]:
    """Send spooled batches oldest first until one fails; returns (sent, remaining).

    ``client``: one to reuse (building one costs ≈ 20 ms of CPU, mostly its TLS context),
    else one is made for this replay."""
    import httpx

    sent = 0
    with (httpx.Client(timeout=timeout) if client is None else nullcontext(client)) as client:
        while True:
            items = store.spool_items(KIND, limit=limit)
            if not items:
                break
            done: list[int] = []
            failed = False
            for item in items:
                try:
                    response = client.post(endpoint, content=item.payload, headers={
                        **headers, "Content-Type": "application/x-protobuf"})
                except httpx.HTTPError as exc:
                    store.spool_failed(item.id, f"{type(exc).__name__}: {exc}")
                    failed = True
                    break
                if response.status_code >= 300:
                    store.spool_failed(item.id, f"HTTP {response.status_code}")
                    failed = True
                    break
                done.append(item.id)
            store.spool_delete(done)
            sent += len(done)
            if failed:
                break
    return sent, store.spool_count(KIND)


class SpoolingExporter(SpanExporter):
    """An OTLP exporter that keeps in the store what the endpoint did not acknowledge."""

    def __init__(self, inner: SpanExporter, store: LocalStore, endpoint: str,
                 headers: Mapping[str, str], *, retry_interval: float = 10.0,
                 timeout: float = 5.0) -> None:
        self._inner = inner
        self._store = store
        self._endpoint = endpoint
        self._headers = dict(headers)
        self._retry_interval = retry_interval
        self._timeout = timeout
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._client: httpx.Client | None = None       # for replays, made on the first
        self._last_try = 0.0
        self.spooled = 0
        self.replayed = 0
        # A backlog from an earlier run is delivered before anything new.
        self._backlog = store.spool_count(KIND) > 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._down_since is not None or self._backlog:
            if not self.try_replay():
                self._spool(spans, "Langfuse unreachable earlier; not retried yet")
                return SpanExportResult.SUCCESS
        result = self._inner.export(spans)
        if result is SpanExportResult.SUCCESS:
            return result
        self._spool(spans, "export failed")
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("llm-adapter: Langfuse did not accept traces; keeping them in the local "
                        "store and retrying every %.0f s (`llm-adapter traces sync` sends now)",
                        self._retry_interval)
        return SpanExportResult.SUCCESS   # kept safely: the SDK must not drop or re-queue it

    def try_replay(self, *, force: bool = False) -> bool:
        """Send the spool if it is time to; True when nothing is left in it."""
        now = time.monotonic()
        if not force and now - self._last_try < self._retry_interval:
            return False
        with self._lock:
            self._last_try = now
            if self._client is None:
                import httpx

                self._client = httpx.Client(timeout=self._timeout)
            sent, remaining = replay(self._store, self._endpoint, self._headers,
                                     timeout=self._timeout, client=self._client)
        self.replayed += sent
        if remaining == 0:
            if self._down_since is not None:
                log.warning("llm-adapter: Langfuse reachable again; %d spooled batch(es) "
                            "delivered", self.replayed)
            self._down_since = None
            self._backlog = False
            return True
        return False

    def _spool(self, spans: Sequence[ReadableSpan], why: str) -> None:
        payload = encode_spans(spans).SerializeToString()
        self._store.spool_add(KIND, payload)
        self.spooled += len(spans)
        log.debug("llm-adapter: spooled %d span(s): %s", len(spans), why)

    def shutdown(self) -> None:
        self._inner.shutdown()
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self._inner.force_flush(timeout_millis))

    @property
    def down(self) -> bool:
        return self._down_since is not None

    @property
    def backlog(self) -> bool:
        return self._backlog

    def state(self) -> dict[str, Any]:
        return {"down": self.down, "spooled_spans": self.spooled, "replayed_batches": self.replayed}
