"""Langfuse: one generation per call, grouped by ``llm.trace(...)``, nested under the caller's spans.

litellm's own Langfuse callback does not work with Langfuse SDK 5, so the adapter writes the
generations itself with the SDK. It does so from a background thread, after the call, from the
(masked) ``CallRecord``: the call pays for nothing but noting its parent span. The generation
gets the call's real start and end times and its parent (the ``llm.trace`` span, or whatever
OpenTelemetry span was current when the call was made), so nesting and timing are what they
were on the calling path.
"""

from __future__ import annotations

import base64
import contextvars
import json
import logging
import os
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._batching import BatchWorker
from ._redact import clip
from .masking import Masker
from .records import CallRecord

if TYPE_CHECKING:
    from .store import LocalStore

__all__ = ["LangfuseSink", "TraceScope", "current_parent", "langfuse_credentials", "sync_spool"]

log = logging.getLogger("adapters.llm")

DEFAULT_BASE_URL = "https://cloud.langfuse.com"


@dataclass(frozen=True)
class Credentials:
    public_key: str
    secret_key: str
    base_url: str

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/api/public/otel/v1/traces"

    def headers(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.public_key}:{self.secret_key}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}", "x-langfuse-public-key": self.public_key,
                "x-langfuse-sdk-name": "python", "x-langfuse-ingestion-version": "4"}


def langfuse_credentials(env: Mapping[str, str] | None = None) -> Credentials | None:
    """Keys and base URL from the environment (``LANGFUSE_BASE_URL``, ``LANGFUSE_HOST`` too)."""
    env = os.environ if env is None else env
    public, secret = env.get("LANGFUSE_PUBLIC_KEY"), env.get("LANGFUSE_SECRET_KEY")
    if not public or not secret:
        return None
    base = env.get("LANGFUSE_BASE_URL") or env.get("LANGFUSE_HOST") or DEFAULT_BASE_URL
    return Credentials(public, secret, base.rstrip("/"))


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
        if self.sink is not None:
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
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


# -- the sink --------------------------------------------------------------------------------
class LangfuseSink:
    """Writes a Langfuse generation per record, from its own thread."""

    name = "langfuse"
    wants_masked = True

    def __init__(self, credentials: Credentials, *, environment: str, store: LocalStore,
                 default_tags: Sequence[str] = (), timeout: float = 5.0,
                 retry_interval: float = 10.0, queue_size: int = 10_000) -> None:
        from langfuse import Langfuse
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        from .spool import SpoolingExporter

        self.credentials = credentials
        self.environment = environment
        self.default_tags = tuple(default_tags)
        headers = credentials.headers()
        self.exporter = SpoolingExporter(
            OTLPSpanExporter(endpoint=credentials.endpoint, headers=headers, timeout=timeout),
            store, credentials.endpoint, headers, retry_interval=retry_interval, timeout=timeout)
        self.client = Langfuse(public_key=credentials.public_key,
                               secret_key=credentials.secret_key, base_url=credentials.base_url,
                               environment=environment, span_exporter=self.exporter,
                               timeout=int(timeout))
        # The SDK's tracer: the public start_observation() cannot set a start time, and a
        # generation written after the call must carry the call's own.
        self._tracer = self.client._otel_tracer
        self._unpriced_warned: set[str] = set()
        # While Langfuse is away the worker also retries the spool when idle (rate-limited by
        # the exporter), so a backlog drains even if the application stops calling.
        self._worker: BatchWorker[CallRecord] = BatchWorker(
            "llm-adapter-langfuse", self._write_all, queue_size=queue_size,
            idle=self._retry_spool)

    def emit(self, record: CallRecord) -> None:
        self._worker.put(record)

    def flush(self, timeout: float) -> bool:
        written = self._worker.drain(timeout)
        self.client.flush()
        if self.exporter.down:
            self.exporter.try_replay(force=True)
        return written and not self.exporter.down

    def _retry_spool(self) -> None:
        if self.exporter.down or self.exporter.backlog:
            self.exporter.try_replay()

    def _write_all(self, records: list[CallRecord]) -> None:
        for record in records:
            try:
                self._write(record)
            except Exception:  # one bad record must not stop the others; logged with its id
                log.exception("llm-adapter: could not write call %s to Langfuse", record.call_id)

    # -- trace spans ----------------------------------------------------------------------------
    def open_trace_span(self, scope: TraceScope) -> Any:
        from langfuse import propagate_attributes
        from langfuse.types import TraceContext

        context = TraceContext(trace_id=scope.trace_id)
        if scope.parent_span_id:
            context["parent_span_id"] = scope.parent_span_id
        masker = scope.masker or Masker()
        ident = masker.identifier
        name = ident(scope.name)
        with propagate_attributes(**self._trace_attributes(
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

    # -- generations ----------------------------------------------------------------------------
    def _write(self, r: CallRecord) -> None:
        from langfuse import LangfuseGeneration, propagate_attributes
        from opentelemetry import trace

        attributes = self._trace_attributes(r.user_id, r.session_id, r.tags, r.trace_name,
                                            _trace_metadata(r))
        parent = trace.NonRecordingSpan(trace.SpanContext(
            trace_id=int(r.trace_id, 16),
            span_id=int(r.parent_span_id, 16) if r.parent_span_id else _random_span_id(),
            is_remote=False, trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED)))
        with propagate_attributes(**attributes), trace.use_span(parent):
            span = self._tracer.start_span(name=f"llm {r.model_group}",
                                           start_time=int(r.started_at * 1e9))
        if r.parent_span_id is None:
            span.set_attribute("langfuse.internal.as_root", True)
        if r.prompt_source == "langfuse" and r.prompt_name and r.prompt_version:
            # Links the generation to the prompt version (only prompts Langfuse served).
            span.set_attribute("langfuse.observation.prompt.name", r.prompt_name)
            span.set_attribute("langfuse.observation.prompt.version", r.prompt_version)
        generation = LangfuseGeneration(
            otel_span=span, langfuse_client=self.client, environment=r.environment,
            input=_as_json(r.input), output=_as_json(_output(r)),
            metadata=_generation_metadata(r),
            model=r.provider_model or r.deployment or r.model_group,
            model_parameters=_parameters(r.model_parameters),
            usage_details=_usage(r), cost_details=self._cost(r),
            completion_start_time=_at(r.started_at + r.ttft_ms / 1000) if r.ttft_ms else None,
            level="ERROR" if r.status != "ok" else None,
            status_message=(f"{r.error_kind}: {r.error_message}" if r.status != "ok" else None))
        generation.end(end_time=int(r.ended_at * 1e9))

    def _trace_attributes(self, user_id: str | None, session_id: str | None,
                          tags: Sequence[str], name: str | None,
                          metadata: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"environment": self.environment}
        if user_id:
            out["user_id"] = user_id
        if session_id:
            out["session_id"] = session_id
        merged = list(dict.fromkeys([*self.default_tags, *tags]))
        if merged:
            out["tags"] = merged
        if name:
            out["trace_name"] = name
        if metadata:
            out["metadata"] = {k: v if isinstance(v, str) else str(v) for k, v in metadata.items()}
        return out

    def _cost(self, r: CallRecord) -> dict[str, float] | None:
        if r.cost_details is None:
            if r.status == "ok" and not r.cache_hit:
                model = r.provider_model or r.deployment or r.model_group
                if model not in self._unpriced_warned:
                    self._unpriced_warned.add(model)
                    log.warning("llm-adapter: no price known for %s; its calls are sent to "
                                "Langfuse without cost (set input_cost_per_token and "
                                "output_cost_per_token in its model_info)", model)
            return None
        d = r.cost_details
        cost = {"input": d["input"], "input_cached_tokens": d["cached"],
                "input_cache_creation": d["cache_write"], "output": d["output"],
                "total": d["total"]}
        if d.get("hedge"):                          # lost hedges, billed apart from the answer
            cost["hedge"] = d["hedge"]
        return cost


def sync_spool(store: LocalStore, credentials: Credentials | None = None) -> tuple[int, int]:
    """Deliver what Langfuse did not acknowledge earlier; returns (sent, remaining)."""
    from .spool import KIND, replay

    credentials = credentials or langfuse_credentials()
    if credentials is None:
        return 0, store.spool_count(KIND)
    return replay(store, credentials.endpoint, credentials.headers())


def _usage(r: CallRecord) -> dict[str, int]:
    u = r.usage
    usage = {"input": u.input_tokens, "output": u.output_tokens - u.reasoning_tokens}
    if u.cached_tokens:
        usage["input_cached_tokens"] = u.cached_tokens
    if u.cache_write_tokens:
        usage["input_cache_creation"] = u.cache_write_tokens
    if u.reasoning_tokens:
        usage["output_reasoning_tokens"] = u.reasoning_tokens
    return usage


def _output(r: CallRecord) -> Any:
    if r.tool_calls:
        return {"role": "assistant", "content": r.output, "tool_calls": r.tool_calls}
    return r.output


def _trace_metadata(r: CallRecord) -> dict[str, Any]:
    out: dict[str, Any] = {k: v for k, v in (("agent", r.agent), ("stage", r.stage)) if v}
    out.update({k: v for k, v in r.metadata.items() if isinstance(v, (str, int, float, bool))})
    return out


def _generation_metadata(r: CallRecord) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "call_id": r.call_id, "model_group": r.model_group, "deployment": r.deployment,
        "provider": r.provider, "latency_ms": round(r.latency_ms, 2),
        "attempts": [{"deployment": a.deployment, "outcome": a.outcome, "error": a.error_kind,
                      "status": a.status, "latency_ms": None if a.latency_ms is None
                      else round(a.latency_ms, 1), **({"cost": a.cost} if a.cost else {})}
                     for a in r.attempts],
    }
    for key, value in (("agent", r.agent), ("stage", r.stage), ("prompt_name", r.prompt_name),
                       ("prompt_version", r.prompt_version), ("prompt_variant", r.prompt_variant),
                       ("cache_hit", r.cache_hit or None), ("cost_saved", r.cost_saved),
                       ("hedged", r.hedged or None)):
        if value is not None:
            meta[key] = value
    meta.update(r.metadata)
    return meta


def _as_json(value: Any) -> Any:
    """``value`` as the JSON text the SDK would make of it, made by the C encoder: the SDK's
    serializer visits every object in Python, the costliest step of writing a generation (a
    string passes through it unchanged). Left to the SDK when it holds base64 media, which the
    SDK uploads apart, or what plain JSON cannot carry."""
    if value is None or isinstance(value, str):
        return value
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return value
    return value if ";base64," in text or '"base64"' in text else text


def _parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if isinstance(v, (str, int, float, bool)) or v is None}


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def _random_span_id() -> int:
    # An id for a parent nobody sees, not a secret: OpenTelemetry's own generator, not uuid4
    # (a getrandom() syscall per record on the writer thread).
    return random.getrandbits(64) or 1
