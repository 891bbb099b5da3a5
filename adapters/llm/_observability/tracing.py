"""Langfuse: one generation per call, grouped by ``llm.trace(...)``, under the caller's spans.

litellm's own Langfuse callback does not work with Langfuse SDK 5, so the adapter writes the
generations itself, with the SDK's attribute logic, from the (masked) ``CallRecord``: the call
pays for nothing but noting its parent span. The store is the outbox: a call's payload is
committed with its ``calls`` row and ``Delivery`` sends it from there, so no in-memory queue is
the only copy of a record. The generation gets the call's real start and end times, its parent
(the ``llm.trace`` span, or whatever OpenTelemetry span was current when the call was made) and
the call's own span id, so nesting and timing are what they were on the calling path and a
re-send upserts.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .credentials import Credentials, langfuse_credentials
from .redact import clip
from .masking import Masker
from .records import CallRecord

if TYPE_CHECKING:
    from .delivery import Delivery, DeliveryState
    from .store import LocalStore, OutboxEntry

__all__ = ["LangfuseSink", "TraceScope", "current_parent", "langfuse_credentials", "sync"]

log = logging.getLogger("adapters.llm")

# -- grouping calls into traces -------------------------------------------------------------
@dataclass
class TraceScope:
    """``with llm.trace("Trigger Handler", session_id=..., user_id=...):`` (or ``async with``).

    Calls made inside share one Langfuse trace under a span named ``name``; session, user, tags
    and metadata apply to each of them unless a call's own metadata says otherwise.
    """

    name: str
    session_id: str | None = None
    user_id: str | None = None
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    trace_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    span_id: str | None = None
    parent_span_id: str | None = None
    sink: LangfuseSink | None = None
    masker: Masker | None = None        # what the span's attributes pass through for Langfuse
    _token: contextvars.Token[TraceScope | None] | None = field(default=None, repr=False)
    _span: Any = field(default=None, repr=False)

    def __enter__(self) -> TraceScope:
        outer = current_parent()
        if outer is not None:
            self.trace_id, self.parent_span_id = outer
        if self.sink is not None and trace_sampled(self.trace_id, self.sink.sample_rate):
            self._span = self.sink.open_trace_span(self)
        self._token = _SCOPE.set(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._token is not None:
            _SCOPE.reset(self._token)
            self._token = None
        if self._span is not None and self.sink is not None:
            self.sink.close_trace_span(self._span, error=exc, masker=self.masker)

    async def __aenter__(self) -> TraceScope:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.__exit__(exc_type, exc, tb)


_SCOPE: contextvars.ContextVar[TraceScope | None] = contextvars.ContextVar(
    "llm_adapter_trace", default=None)


def current_scope() -> TraceScope | None:
    return _SCOPE.get()


def current_parent() -> tuple[str, str | None] | None:
    """(trace id, parent span id) of the innermost ``llm.trace`` or OpenTelemetry span."""
    scope = _SCOPE.get()
    if scope is not None:
        return scope.trace_id, scope.span_id or scope.parent_span_id
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:       # not imported: no span can be open (and no import per call)
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


# -- the sink --------------------------------------------------------------------------------
class LangfuseSink:
    """A Langfuse generation per record, delivered from the store's outbox.

    ``entry(record)`` is the outbox row the store commits with the call's row (``emit`` queues
    it alone when the store keeps no calls); ``flush`` delivers what the outbox holds;
    ``close`` stops the delivery thread.
    """

    name = "langfuse"
    wants_masked = True

    def __init__(self, credentials: Credentials, *, environment: str, store: LocalStore,
                 default_tags: Sequence[str] = (), timeout: float = 5.0,
                 retry_interval: float = 10.0, sample_rate: float | None = None,
                 deliver: bool = True) -> None:
        """``deliver=False``: the outbox is delivered elsewhere (the recording process); this
        sink then carries ``llm.trace`` spans only, and ``state`` asks ``remote_state``."""
        from langfuse import Langfuse
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        from .spool import SpoolingExporter

        self.credentials = credentials
        self.environment = environment
        self.default_tags = tuple(default_tags)
        self.store = store
        self.sample_rate = 1.0 if sample_rate is None else sample_rate
        self._timeout, self._retry_interval = timeout, retry_interval
        # The SDK's own pipeline carries llm.trace spans and scores only; what it does not
        # deliver is spooled in the store.
        self.exporter = SpoolingExporter(
            OTLPSpanExporter(endpoint=credentials.endpoint, headers=credentials.headers(),
                             timeout=timeout), store)
        self.client = Langfuse(public_key=credentials.public_key,
                               secret_key=credentials.secret_key, base_url=credentials.base_url,
                               environment=environment, span_exporter=self.exporter,
                               timeout=int(timeout))
        self._release: str | None = getattr(self.client, "_release", None)
        self.delivery: Delivery | None = None
        self.remote_state: Callable[[], DeliveryState | None] | None = None
        if deliver:
            self.start_delivery()

    def start_delivery(self) -> None:
        """Deliver the store's outbox and spool from a thread of this process, the backlog of
        earlier processes first."""
        from .delivery import Delivery
        from .langfuse_spans import SpanBuilder

        if self.delivery is not None:
            return
        self.delivery = Delivery(self.store, self.credentials,
                                 SpanBuilder(self.client, self.credentials.public_key),
                                 timeout=self._timeout, retry_interval=self._retry_interval)
        self.exporter.health = self.delivery
        self.store.on_outbox_commit(self.delivery.wake)
        self.delivery.start()

    def entry(self, record: CallRecord) -> OutboxEntry:
        """The outbox row of a masked record."""
        from .langfuse_spans import payload_of
        from .store import OutboxEntry

        return OutboxEntry(record.call_id, self.credentials.public_key,
                           payload_of(record, environment=self.environment,
                                      default_tags=self.default_tags, release=self._release),
                           time.time())

    def sampled(self, record: CallRecord) -> bool:
        """Whether ``langfuse.sample_rate`` sends this record's trace. Decided by the trace id
        alone, so every record of one trace and its ``llm.trace`` span go, or stay, together
        (the store keeps every call either way)."""
        return trace_sampled(record.trace_id, self.sample_rate)

    def emit(self, record: CallRecord) -> None:
        if self.sampled(record):
            self.store.write_with_outbox(None, self.entry(record))

    def flush(self, timeout: float) -> bool:
        """Deliver what the outbox and spool hold, within ``timeout``; True only when Langfuse
        acknowledged all of it (nothing pending, nothing quarantined), else says why."""
        deadline = time.monotonic() + timeout
        committed = self.store.flush(timeout)
        self.client.flush()              # llm.trace spans and scores, through the SDK
        delivery = self.delivery
        if delivery is None:
            return committed
        while True:
            got_through = delivery.deliver(deadline)
            state = delivery.state()
            if state.ok or not got_through or not (state.pending or state.spool_pending) \
                    or time.monotonic() >= deadline:
                break
            time.sleep(0.05)             # rows another process is sending: wait for its ack
        if committed and state.ok:
            return True
        log.warning("llm-adapter: not everything reached Langfuse: %s%s", state.why(),
                    "" if committed else "; the store had not committed every call in time")
        return False

    def close(self) -> None:
        """Stop the delivery thread and close its HTTP client; what is not delivered stays
        in the store for the next process or `llm-adapter traces sync`."""
        if self.delivery is not None:
            self.delivery.close()

    def state(self) -> DeliveryState:
        """What waits for Langfuse (asked of the recording process when it delivers)."""
        from .delivery import state_of

        if self.delivery is not None:
            return self.delivery.state()
        remote = self.remote_state() if self.remote_state is not None else None
        return remote if remote is not None else state_of(self.store, self.credentials.public_key)

    # -- trace spans ----------------------------------------------------------------------------
    def open_trace_span(self, scope: TraceScope) -> Any:
        from langfuse import propagate_attributes
        from langfuse.types import TraceContext

        from .langfuse_spans import trace_attributes

        context = TraceContext(trace_id=scope.trace_id)
        if scope.parent_span_id:
            context["parent_span_id"] = scope.parent_span_id
        masker = scope.masker or Masker()
        ident = masker.identifier
        name = ident(scope.name)
        with propagate_attributes(**trace_attributes(
                self.environment, self.default_tags,
                ident(scope.user_id) if scope.user_id else None,
                ident(scope.session_id) if scope.session_id else None,
                [ident(t) for t in scope.tags], name, masker(scope.metadata))):
            span = self.client.start_observation(as_type="span", name=name, trace_context=context)
        scope.trace_id, scope.span_id = span.trace_id, span.id
        return span

    def close_trace_span(self, span: Any, *, error: BaseException | None,
                         masker: Masker | None = None) -> None:
        if error is not None:
            text = (masker or Masker()).text(f"{type(error).__name__}: {error}")
            span.update(level="ERROR", status_message=clip(text, limit=500))
        span.end()


def sync(store: LocalStore, credentials: Credentials | None = None, *,
         retry_quarantined: bool = False) -> DeliveryState | None:
    """Deliver what the store holds for Langfuse now (``llm-adapter traces sync``); None
    when no Langfuse keys are set."""
    from langfuse import Langfuse

    from .delivery import Delivery, sync_all
    from .langfuse_spans import SpanBuilder

    credentials = credentials or langfuse_credentials()
    if credentials is None:
        return None
    client = Langfuse(public_key=credentials.public_key, secret_key=credentials.secret_key,
                      base_url=credentials.base_url)
    delivery = Delivery(store, credentials, SpanBuilder(client, credentials.public_key))
    try:
        return sync_all(delivery, retry_quarantined=retry_quarantined)
    finally:
        delivery.close()


def trace_sampled(trace_id: str, rate: float) -> bool:
    """Whether a trace is in the ``rate`` share: its first 48 bits (random in a uuid4 hex id
    and in an OpenTelemetry one alike; a uuid4's low bits are not) below ``rate`` of their
    range."""
    if rate >= 1.0:
        return True
    try:
        head = int(trace_id[:12], 16)
    except ValueError:
        return True         # no trace id to decide by: keep it
    return head < round(rate * 2 ** 48)
