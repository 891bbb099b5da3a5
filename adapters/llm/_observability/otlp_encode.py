"""A generation span encoded as OTLP protobuf straight from its fields, without SDK span objects.

Writing a generation through the SDK (a ``TracerProvider``, ``propagate_attributes``, the
span processor's ``on_start``, ``LangfuseGeneration``, then the exporter's encoder) costs about
0.7 ms of CPU per call on the delivery thread, which competes with the calling threads for the
GIL. The attributes themselves come from a handful of pure SDK functions; this module calls the
same ones (``create_generation_attributes``, the propagation validators and serializers, the
exporter's value encoder) and sets the results in the order the SDK's span would hold them
(OpenTelemetry moves an attribute set again to the end), so the span is the one the SDK would
have sent, for about a tenth of the CPU. ``SpanBuilder`` uses the SDK's own path for what this
one does not cover (see ``Encoder.covers`` and ``Encoder.span``); a test compares the two.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .langfuse_sdk import internals, sdk_version

__all__ = ["Built", "Encoder", "Generation"]

# The span of one payload, ready to be put in a request: ((environment, release), the
# serialized protobuf Span).
Built = tuple[tuple[str, "str | None"], bytes]

# Settings that change what the SDK's span would hold or whether it is made at all: with any
# of them set, every span goes through the SDK.
_SDK_SETTINGS = ("OTEL_SDK_DISABLED", "OTEL_TRACES_SAMPLER", "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
                 "OTEL_ATTRIBUTE_COUNT_LIMIT", "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
                 "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT")
_LONG_NUMBER = re.compile(r"(?<![\d.])\d{16,}")   # may be an integer past 2**53
_DEPTH = 20                 # the SDK serializer's nesting limit
_KEYS_KEPT = 4096           # encoded attribute names kept (metadata keys are the caller's)
_MARGIN = 2                 # attributes set twice (the environment) counted again by the SDK


@dataclass(frozen=True, slots=True)
class Generation:
    """Everything a generation span is made of, as both ways of writing it take it."""

    name: str
    trace_id: int
    span_id: int
    parent_span_id: int
    start_ns: int
    end_ns: int
    trace: dict[str, Any]           # ``propagate_attributes`` arguments
    own: dict[str, Any]             # attributes set on the span before the generation's
    fields: dict[str, Any]          # ``LangfuseGeneration`` arguments


class Encoder:
    """OTLP spans and requests of generations, for one Langfuse client and project."""

    def __init__(self, client: Any, public_key: str, resource: Any) -> None:
        from opentelemetry.sdk.trace import SpanLimits

        sdk = internals()
        attributes, propagation = sdk.attributes, sdk.propagation

        self._client = client
        self._public_key = public_key
        self._base = resource
        self._resources: dict[tuple[str, str | None], tuple[Any, bytes]] = {}
        self._scope: bytes | None = None
        self._keys: dict[str, bytes] = {}       # attribute names, encoded
        # Looked up once: an import statement per span costs more than the span's own work.
        self._attr = attributes.LangfuseOtelSpanAttributes
        self._sdk = attributes
        self._propagation = propagation
        # The SDK's two JSON forms (``json.dumps`` makes an encoder per call).
        self._compact = json.JSONEncoder(ensure_ascii=False, allow_nan=False,
                                         separators=(",", ":")).encode
        self._spaced = json.JSONEncoder(allow_nan=False).encode
        limits = SpanLimits()
        self._room = limits.max_span_attributes - len(sdk.reserved_observation_keys) \
            - _MARGIN if isinstance(limits.max_span_attributes, int) else 0
        self.enabled = (getattr(client, "_mask", None) is None
                        and limits.max_span_attribute_length is None and self._room > 0
                        and not any(os.environ.get(name) for name in _SDK_SETTINGS))

    def covers(self, payload: str | bytes) -> bool:
        """Whether this payload may be encoded here: not when it may hold base64 media (the
        SDK uploads it apart and sends a reference), nor when the client masks or OTel
        settings change spans."""
        if not self.enabled:
            return False
        return (b"base64" not in payload) if isinstance(payload, bytes) \
            else ("base64" not in payload)

    def resource(self, environment: str, release: str | None) -> Any:
        """The SDK resource of spans sent for ``environment`` and ``release``."""
        return self._resource(environment, release)[0]

    def span(self, g: Generation) -> bytes | None:
        """The serialized protobuf ``Span`` of ``g``; None when the SDK would drop attributes
        to stay within the span limit (its path decides which) or a value is not plain."""
        Attr = self._attr
        attributes: dict[str, Any] = {}

        def put(key: str, value: Any) -> None:
            attributes.pop(key, None)           # as OpenTelemetry's BoundedAttributes does
            attributes[key] = value

        for key, value in self._propagated(g.trace):    # the processor's on_start
            put(key, value)
        put(Attr.IS_APP_ROOT, True)             # no exported parent in this process's spans
        for key, value in g.own.items():
            put(key, value)
        fields = dict(g.fields)
        own_environment, release = fields.pop("environment"), fields.pop("release")
        put(Attr.OBSERVATION_TYPE, "generation")
        found = attributes.get(Attr.ENVIRONMENT)    # a propagated one wins, as in the SDK
        environment = (found if isinstance(found, str) else None) or own_environment \
            or getattr(self._client, "_environment", None)
        if environment is not None:
            put(Attr.ENVIRONMENT, environment)
        release = release or getattr(self._client, "_release", None)
        if release is not None:
            put(Attr.RELEASE, release)
        # The SDK's serializer walks every value in Python; the values of a payload are plain
        # JSON, which the C encoder writes the same (``_json`` says when it would not).
        metadata = fields.pop("metadata")
        for name in ("usage_details", "cost_details", "model_parameters"):
            fields[name] = self._json(fields[name])
        written = self._sdk.create_generation_attributes(**fields, observation_type="generation")
        written.pop(Attr.OBSERVATION_TYPE, None)
        for key, value in written.items():
            if value is not None:
                put(key, value)
        if isinstance(metadata, dict):
            prefix = Attr.OBSERVATION_METADATA
            for key, value in metadata.items():
                if value is not None:
                    put(f"{prefix}.{key}", self._json(value, metadata=True))
        elif metadata is not None:
            return None
        if len(attributes) > self._room:
            return None
        status = b""
        if fields.get("level") == "ERROR":
            message = fields.get("status_message")
            status = (_field(2, message.encode()) if isinstance(message, str) and message
                      else b"") + b"\x18\x02"          # code: STATUS_CODE_ERROR
        keys = self._keys
        try:
            encoded = []
            for key, value in attributes.items():
                head = keys.get(key)
                if head is None:
                    head = _field(1, key.encode())
                    if len(keys) < _KEYS_KEPT:
                        keys[key] = head
                encoded.append(_field(9, head + _field(2, _field(1, value.encode())
                                                       if type(value) is str
                                                       else _value(value))))
        except _NotPlain:
            return None
        return b"".join((
            _field(1, g.trace_id.to_bytes(16, "big")), _field(2, g.span_id.to_bytes(8, "big")),
            _field(4, g.parent_span_id.to_bytes(8, "big")), _field(5, g.name.encode()),
            b"\x30\x01",                                # kind: SPAN_KIND_INTERNAL
            b"\x39", _FIXED64.pack(g.start_ns), b"\x41", _FIXED64.pack(g.end_ns),
            *encoded, _field(15, status),
            b"\x85\x01\x00\x01\x00\x00"))                # flags: parent is-remote known, local

    def _json(self, value: Any, *, metadata: bool = False) -> Any:
        """``value`` as the SDK's serializer writes it (``_serialize``, or
        ``_serialize_metadata_value`` for metadata), by the C encoder when the result is the
        same: plain JSON values without integers past JavaScript's safe range, NaN or
        infinities, nested less deeply than the serializer's limit."""
        if value is None or (isinstance(value, str) and not metadata):
            return value
        if type(value) is str:
            return self._compact(value)
        try:
            text = (self._compact if metadata else self._spaced)(value)
        except (TypeError, ValueError):
            text = None
        if text is None or _LONG_NUMBER.search(text) \
                or text.count("[") + text.count("{") >= _DEPTH:
            return self._sdk._serialize_metadata_value(value) if metadata \
                else self._sdk._serialize(value)
        return text

    def _propagated(self, trace: dict[str, Any]) -> list[tuple[str, Any]]:
        """The span attributes ``propagate_attributes(**trace)`` gives a span started inside
        it, in the order the SDK's processor sets them; invalid values dropped with the SDK's
        own warnings."""
        p, prefix = self._propagation, self._attr.TRACE_METADATA
        out: list[tuple[str, Any]] = []
        for key in p.propagated_keys:
            value = trace.get(key)
            if value is None:
                continue
            if key == "metadata":
                for name, item in value.items():
                    if item is None:
                        continue
                    text = p._serialize_metadata_value(item)
                    if p._validate_string_value(value=text, key=f"metadata.{name}"):
                        out.append((f"{prefix}.{name}", text))
                continue
            checked = p._validate_propagated_value(value=value, key=key)
            if checked is not None:
                out.append((p._get_propagated_span_key(key),
                            tuple(checked) if isinstance(checked, list) else checked))
        return out

    def request(self, spans: Sequence[Built]) -> bytes:
        """One serialized ``ExportTraceServiceRequest`` carrying ``spans`` (serialized
        ``Span`` messages), grouped by resource as the SDK's exporter groups them."""
        groups: dict[tuple[str, str | None], list[bytes]] = {}
        for key, span in spans:
            groups.setdefault(key, []).append(span)
        scope = _field(1, self._scope_of())
        out = []
        for key, group in groups.items():
            resource, encoded = self._resource(*key)
            scope_spans = scope + b"".join(_field(2, span) for span in group)
            out.append(_field(1, _field(1, encoded) + _field(2, scope_spans)
                              + (_field(3, resource.schema_url.encode())
                                 if resource.schema_url else b"")))
        return b"".join(out)

    def _resource(self, environment: str, release: str | None) -> tuple[Any, bytes]:
        found = self._resources.get((environment, release))
        if found is None:
            Attr = internals().attributes.LangfuseOtelSpanAttributes  # noqa: N806
            from opentelemetry.exporter.otlp.proto.common._internal import _encode_resource
            from opentelemetry.sdk.resources import Resource

            extra = {Attr.ENVIRONMENT: environment, Attr.RELEASE: release}
            resource = self._base.merge(Resource({k: v for k, v in extra.items()
                                                  if v is not None}))
            found = self._resources[(environment, release)] = \
                (resource, _encode_resource(resource).SerializeToString())
        return found

    def _scope_of(self) -> bytes:
        if self._scope is None:
            from opentelemetry.exporter.otlp.proto.common._internal import (
                _encode_instrumentation_scope)
            from opentelemetry.sdk.util.instrumentation import InstrumentationScope

            self._scope = _encode_instrumentation_scope(InstrumentationScope(
                internals().tracer_name, sdk_version(), None, {"public_key": self._public_key})
            ).SerializeToString()
        return self._scope




# -- protobuf wire format ---------------------------------------------------------------------
# The few shapes a generation span has, written as ``SerializeToString`` writes them (fields in
# number order, proto3 defaults left out, a oneof's value always written).
_FIXED64 = struct.Struct("<Q")
_DOUBLE = struct.Struct("<d")


class _NotPlain(Exception):
    """A value the span encoding here does not write (the SDK's path does)."""


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, data: bytes) -> bytes:
    """A length-delimited field (string, bytes, message); field numbers here are below 16."""
    size = len(data)
    if size < 0x80:
        return bytes((number << 3 | 2, size)) + data
    return bytes((number << 3 | 2,)) + _varint(size) + data


def _value(value: Any) -> bytes:
    """An ``AnyValue`` as the exporter's ``_encode_value`` makes it."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(1, value.encode())
    if isinstance(value, int):
        if not -2**63 <= value < 2**63:
            raise _NotPlain
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, (list, tuple)):
        return _field(5, b"".join(_field(1, _value(item)) for item in value))
    raise _NotPlain
