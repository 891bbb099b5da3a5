"""A call's outbox payload and the Langfuse generation span built from it.

The payload is the masked ``CallRecord`` as JSON plus what the sink added when it was recorded
(environment, default tags, release). Spans are built from it at delivery time, as often as a
delivery is tried, and always come out the same: span id = ``call_id[:16]``, the record's trace
id, parent and timestamps. A re-send therefore upserts the generation in Langfuse.

The span's attributes are the SDK's own. Most spans are encoded directly (``_otlp_encode``):
the SDK's attribute functions, set in the order its span would hold them, written as OTLP
protobuf without span objects, at a fraction of the CPU. The rest (base64 media, a client
mask, ``OTEL_*`` span settings, more attributes than the span limit) is written by
``LangfuseGeneration`` and ``propagate_attributes`` on spans of a private ``TracerProvider``
whose only processor is ``_Collecting``. That processor subclasses the SDK's
``LangfuseSpanProcessor`` to keep its ``on_start`` (propagated trace attributes, the app-root
mark) and replaces its batch queue by a list; ``__init__`` sets only the fields ``on_start``
reads (the SDK's own provider has a 2,048-span queue, which is what dropped generations). A
test holds the two paths to the same bytes, so an SDK that changes its attributes fails it
rather than drifting silently.

Fields over Langfuse's size limits are cut before export (``FIELD_CAP``), with a visible
marker, so a huge prompt arrives truncated instead of getting its batch refused.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .langfuse_sdk import internals, sdk_version
from .otlp_encode import Built, Generation
from .record_values import SHAPE, plain_values
from .records import Attempt, CallRecord, Usage

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, Span

__all__ = ["FIELD_CAP", "TRUNCATED", "SpanBuilder", "payload_of"]

log = logging.getLogger("adapters.llm")

# Langfuse's OTLP endpoint refuses (413) bodies over its configured maximum and warns above
# 16 MB per request; deployments behind a proxy often stop at a few MB, and inputs or outputs
# over 1 MB are where users report truncation and "Body exceeded 1mb limit" refusals. So each of
# input, output, metadata and status message is cut to 1 MB (UTF-8 of its JSON) and a request
# carries at most 4 MB of payload (see ``delivery``).
FIELD_CAP = 1_000_000
TRUNCATED = "[truncated by llm-adapter"
_PAYLOAD_VERSION = 1
_RECORD_FIELDS = frozenset(SHAPE[0])
_PAYLOAD_JSON = json.JSONEncoder(ensure_ascii=False, default=str).encode   # one, not one a call


def payload_of(record: CallRecord, *, environment: str, default_tags: Sequence[str],
               release: str | None) -> str:
    """The outbox payload of a (masked) record: JSON text SQLite always stores."""
    body = {"v": _PAYLOAD_VERSION, "environment": environment,
            "default_tags": list(default_tags), "release": release,
            "record": _plain(record)}
    text = _PAYLOAD_JSON(body)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:      # a lone surrogate: kept visible as its escape, not lost
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _plain(record: CallRecord) -> dict[str, Any]:
    """The record as JSON-ready values; ``dataclasses.asdict`` would deep-copy every message."""
    names, usage, attempt = SHAPE
    out = dict(zip(names, plain_values(record)))
    out["usage"] = dict(zip(usage, out["usage"]))
    out["attempts"] = [dict(zip(attempt, a)) for a in out["attempts"]]
    return out


def _record_from(data: Mapping[str, Any]) -> CallRecord:
    values = {k: v for k, v in data.items() if k in _RECORD_FIELDS}
    values["usage"] = Usage(**values.get("usage") or {})
    values["attempts"] = [Attempt(**a) for a in values.get("attempts") or []]
    values["tags"] = tuple(values.get("tags") or ())
    return CallRecord(**values)


def _make_collecting_processor(public_key: str) -> Any:
    """The SDK's span processor with a list instead of its batch queue (see the docstring)."""
    sdk = internals()

    class _Collecting(sdk.span_processor):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:       # not super().__init__(): no queue, no thread
            self.public_key = public_key
            self._should_export_span = sdk.is_default_export_span
            self._app_root_lock = threading.Lock()
            self._span_export_expectation_by_id: dict[str, bool] = {}
            self.spans: list[ReadableSpan] = []

        def on_end(self, span: ReadableSpan) -> None:
            self.spans.append(span)
            self._cleanup_app_root_state(span)

        def shutdown(self) -> None:
            self.spans.clear()

        def force_flush(self, timeout_millis: int | None = None) -> bool:
            return True

    return _Collecting()


class _NextIds:
    """Span ids chosen by the builder (the call's own), trace ids never needed: every span
    is started under a parent carrying the record's trace id."""

    def __init__(self) -> None:
        import random

        self.span_id = 0
        self._random = random.Random()

    def generate_span_id(self) -> int:
        return self.span_id or self._random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._random.getrandbits(128) or 1


class SpanBuilder:
    """Builds the generation span of outbox payloads as OTLP protobuf; thread-safe.

    A payload is encoded directly (``_otlp_encode``: the SDK's attribute functions, no span
    objects, a tenth of the CPU); one the direct path does not cover (base64 media, which the
    SDK uploads apart; a client-side mask; span limits, samplers or attribute limits set
    through ``OTEL_*``; more attributes than the span limit leaves room for) goes through the
    SDK's span machinery as before. Both give the same span.
    """

    def __init__(self, client: Any, public_key: str) -> None:
        from .otlp_encode import Encoder

        self.client = client                # the Langfuse client LangfuseGeneration writes for
        self.public_key = public_key
        self._lock = threading.Lock()
        self._tracers: dict[tuple[str, str | None], tuple[Any, Any, _NextIds]] = {}
        self._unpriced_warned: set[str] = set()
        from opentelemetry.sdk.resources import Resource

        # The detected resource (host, process, SDK), made now: its detectors run in a thread
        # pool, which takes no work once the interpreter begins to exit (delivery at exit).
        self._resource = Resource.create({})
        self._encoder = Encoder(client, public_key, self._resource)

    def build(self, payload: str | bytes) -> Built:
        """The span of one payload; raises ValueError (or the SDK's error) when it cannot."""
        data = json.loads(payload)
        if not isinstance(data, dict) or not isinstance(data.get("record"), dict):
            raise ValueError("not an outbox payload")
        record = _record_from(data["record"])
        environment = str(data.get("environment") or record.environment)
        release = data.get("release")
        generation = self._generation(record, environment, data.get("default_tags") or (),
                                      release)
        key = (environment, release)
        if self._encoder.covers(payload):
            span = self._encoder.span(generation)
            if span is not None:
                return key, span
        return key, self._sdk_span(generation, environment, release)

    def request(self, spans: Sequence[Built]) -> bytes:
        """One OTLP export request (serialized) carrying ``spans``."""
        return self._encoder.request(spans)

    def _sdk_span(self, g: Generation, environment: str, release: str | None) -> bytes:
        """The span as the SDK's own ``LangfuseGeneration`` writes it, encoded."""
        from opentelemetry.exporter.otlp.proto.common._internal.trace_encoder import (
            _encode_span)

        with self._lock:
            tracer, processor, ids = self._tracer(environment, release)
            ids.span_id = g.span_id
            try:
                self._write(tracer, g)
            finally:
                ids.span_id = 0
            spans, processor.spans = processor.spans, []
        if len(spans) != 1:
            raise ValueError(f"building the generation gave {len(spans)} spans")
        return _encode_span(spans[0]).SerializeToString()

    def _tracer(self, environment: str, release: str | None) -> tuple[Any, Any, _NextIds]:
        found = self._tracers.get((environment, release))
        if found is None:
            from opentelemetry.sdk.trace import TracerProvider

            ids = _NextIds()
            processor = _make_collecting_processor(self.public_key)
            provider = TracerProvider(
                resource=self._encoder.resource(environment, release),
                id_generator=ids, shutdown_on_exit=False)  # type: ignore[arg-type]
            provider.add_span_processor(processor)
            tracer = provider.get_tracer(internals().tracer_name, sdk_version(),
                                         attributes={"public_key": self.public_key})
            found = self._tracers[(environment, release)] = (tracer, processor, ids)
        return found

    def _generation(self, r: CallRecord, environment: str, default_tags: Sequence[str],
                    release: str | None) -> Generation:
        """What the generation of ``r`` is made of, whichever path writes it."""
        truncated: list[str] = []
        metadata = _generation_metadata(r)
        inputs, output = _fit_json(r.input, "input", truncated), \
            _fit_json(_output(r), "output", truncated)
        status = _fit(f"{r.error_kind}: {r.error_message}", "status_message", truncated) \
            if r.status != "ok" else None
        metadata = _fit(metadata, "metadata", truncated)
        if truncated:
            metadata = {**metadata, "truncated": truncated}
        own: dict[str, Any] = {}
        if r.parent_span_id is None:
            own["langfuse.internal.as_root"] = True
        if r.prompt_source == "langfuse" and r.prompt_name and r.prompt_version:
            # Links the generation to the prompt version (only prompts Langfuse served).
            own["langfuse.observation.prompt.name"] = r.prompt_name
            own["langfuse.observation.prompt.version"] = r.prompt_version
        return Generation(
            name=f"llm {r.model_group}", trace_id=int(r.trace_id, 16),
            span_id=int(r.span_id or r.call_id[:16], 16),
            # The parent of a call made outside any span is nobody's: its id is derived from
            # the call id so every re-send carries the same one.
            parent_span_id=int(r.parent_span_id, 16) if r.parent_span_id
            else int(r.call_id[16:32] or "1", 16) or 1,
            start_ns=int(r.started_at * 1e9), end_ns=int(r.ended_at * 1e9),
            trace=trace_attributes(environment, default_tags, r.user_id, r.session_id,
                                   r.tags, r.trace_name, _trace_metadata(r)),
            own=own,
            fields=dict(
                environment=r.environment, release=release, input=inputs, output=output,
                metadata=metadata, model=r.provider_model or r.deployment or r.model_group,
                model_parameters=_parameters(r.model_parameters),
                usage_details=_usage(r), cost_details=self._cost(r),
                completion_start_time=_at(r.started_at + r.ttft_ms / 1000) if r.ttft_ms
                else None,
                level="ERROR" if r.status != "ok" else None,
                status_message=status))

    def _write(self, tracer: Any, g: Generation) -> None:
        from langfuse import LangfuseGeneration, propagate_attributes
        from opentelemetry import trace

        parent = trace.NonRecordingSpan(trace.SpanContext(
            trace_id=g.trace_id, span_id=g.parent_span_id, is_remote=False,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED)))
        with propagate_attributes(**g.trace), trace.use_span(parent):
            span: Span = tracer.start_span(name=g.name, start_time=g.start_ns)
        for key, value in g.own.items():
            span.set_attribute(key, value)
        generation = LangfuseGeneration(otel_span=span, langfuse_client=self.client,
                                        **g.fields)
        generation.end(end_time=g.end_ns)

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


def trace_attributes(environment: str, default_tags: Sequence[str], user_id: str | None,
                      session_id: str | None, tags: Sequence[str], name: str | None,
                      metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``propagate_attributes`` arguments: trace-level fields of a call or an ``llm.trace``."""
    out: dict[str, Any] = {"environment": environment}
    if user_id:
        out["user_id"] = user_id
    if session_id:
        out["session_id"] = session_id
    merged = list(dict.fromkeys([*default_tags, *tags]))
    if merged:
        out["tags"] = merged
    if name:
        out["trace_name"] = name
    if metadata:
        out["metadata"] = {k: v if isinstance(v, str) else str(v) for k, v in metadata.items()}
    return out


# -- fitting Langfuse's limits ------------------------------------------------------------------
def _fit(value: Any, name: str, truncated: list[str], cap: int = FIELD_CAP) -> Any:
    """``value`` with its longest strings cut (each with a marker) so its JSON fits ``cap``
    bytes; ``name`` is added to ``truncated`` when anything was cut."""
    if value is None or _size(value) <= cap:
        return value
    truncated.append(name)
    longest = _longest(value)
    limit = max(cap // 2, 1)
    while longest > 0:
        limit = min(limit, longest)
        fitted = _cut(value, limit)
        if _size(fitted) <= cap or limit <= 64:
            return fitted
        limit = int(limit * 0.7)
    return value


def _fit_json(value: Any, name: str, truncated: list[str]) -> Any:
    """``_as_json(value)``, fitted to ``FIELD_CAP`` when it is over it."""
    text = _as_json(value)
    if isinstance(text, str) and len(text) > FIELD_CAP // 4 and _size(text) > FIELD_CAP:
        return _as_json(_fit(value, name, truncated))
    return text


def _size(value: Any) -> int:
    """Bytes of ``value`` as sent: a string as UTF-8, anything else as ASCII JSON."""
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode("utf-8", "replace"))
    return len(json.dumps(value, default=str))


def _longest(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        return max((_longest(v) for v in value.values()), default=0)
    if isinstance(value, (list, tuple)):
        return max((_longest(v) for v in value), default=0)
    return 0


def _cut(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        if len(value) <= limit:
            return value
        return (f"{value[:limit]} …{TRUNCATED}: {len(value) - limit:,} of {len(value):,} "
                f"characters cut to fit Langfuse's size limit]")
    if isinstance(value, Mapping):
        return {k: _cut(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_cut(v, limit) for v in value]
    return value


# -- the generation's fields ----------------------------------------------------------------------
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
