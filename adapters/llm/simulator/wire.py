"""The contract between the server and a provider wire format, plus shared framing helpers.

The server knows nothing about any provider's JSON: it routes a URL to a
:class:`WireFormat`, which parses the body into a :class:`~.content.ChatRequest`
and renders replies, stream frames and errors in that provider's shape.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .content import CachePrefix, ChatRequest, Reply, ToolSpec
from .state import Limits

CHAT_ENDPOINTS = frozenset({"chat", "generate", "responses"})
"""Endpoints answered by the model (faults, content, streaming); others answer at once."""

__all__ = [
    "CHAT_ENDPOINTS",
    "ErrorSpec",
    "Meta",
    "RequestError",
    "Route",
    "WireFormat",
    "bearer",
    "cache_prefix",
    "function_tools",
    "ndjson_frame",
    "new_id",
    "now_iso",
    "optional_int",
    "ranged",
    "reset_text",
    "sse_frame",
    "stop_list",
    "tool_spec",
]


class RequestError(ValueError):
    """The request cannot be served; answered in the provider's own format (400 unless told).

    ``param``, ``kind`` and ``code`` fill the provider's error fields where it has them.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        param: str | None = None,
        kind: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.kind = kind
        self.code = code

    def spec(self) -> ErrorSpec:
        return ErrorSpec(self.status, str(self), self.kind, self.code, self.param)


@dataclass(frozen=True)
class ErrorSpec:
    """One error answer: status, message and, where the caller chose them, type and code."""

    status: int
    message: str
    kind: str | None = None
    code: str | None = None
    param: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True)
class Meta:
    """Per-response facts that go into headers: the request id and the rate-limit window."""

    request_id: str
    limits: Limits | None = None
    retry_after: float | None = None


@dataclass(frozen=True)
class Route:
    """What the URL path says about the request (Gemini puts model and streaming in the path).

    ``endpoint`` is ``"chat"`` for the chat/messages/generate-content call and names
    any other endpoint (``"embeddings"``, ``"models"``, ...) a wire format serves.
    ``sse`` is False for a Gemini stream asked for without ``alt=sse`` (a JSON array).
    """

    model: str | None = None
    stream: bool | None = None
    endpoint: str = "chat"
    method: str = "POST"
    sse: bool = True


class WireFormat(Protocol):
    """One provider's HTTP dialect. Implementations are stateless."""

    name: str
    stream_content_type: str

    def match(self, method: str, path: str, query: Mapping[str, str]) -> Route | None:
        """The route for a path below ``/s/<scenario>/``, or None when it is not this provider's."""

    def api_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        """The credential the client sent, where this provider expects it."""

    def parse(self, body: Mapping[str, Any], route: Route) -> ChatRequest:
        """Reduce the provider request to a ChatRequest; raise RequestError when it is invalid."""

    def check(self, body: Mapping[str, Any], headers: Mapping[str, str], route: Route) -> None:
        """Raise RequestError for what the real provider refuses (``validate`` scenarios)."""

    def endpoint(self, route: Route, body: Mapping[str, Any], seed: int) -> dict[str, Any]:
        """The answer of a non-chat endpoint; raise RequestError when it is invalid."""

    def headers(self, meta: Meta) -> dict[str, str]:
        """The provider's request-id and rate-limit headers."""

    def stream_error(self, error: ErrorSpec, request_id: str) -> bytes:
        """The frame the provider sends when a stream fails after it started."""

    def render(self, request: ChatRequest, reply: Reply) -> dict[str, Any]:
        """The non-streaming response body."""

    def stream_frames(self, request: ChatRequest, reply: Reply, chunk_words: int) -> list[bytes]:
        """Every frame of the streamed response, terminator included, ready to write."""

    def error_body(self, error: ErrorSpec, request_id: str) -> dict[str, Any]:
        """The provider's error JSON."""

    def context_error(self, limit: int, used: int) -> ErrorSpec:
        """The error the provider sends when the input exceeds the context window."""

    def malformed_frame(self) -> bytes:
        """A stream frame the client cannot parse."""


def sse_frame(data: Mapping[str, Any] | str, event: str | None = None) -> bytes:
    """One server-sent event; ``data`` is JSON-encoded unless it is already a string."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {payload}\n\n".encode()


def reset_text(seconds: float) -> str:
    """A duration the way OpenAI's ``x-ratelimit-reset-*`` headers write it (``1m30s``)."""
    minutes, rest = divmod(max(0.0, seconds), 60.0)
    if minutes:
        return f"{int(minutes)}m{rest:.0f}s"
    if rest >= 1:
        return f"{rest:.3g}s"
    return f"{int(rest * 1000)}ms"


def ndjson_frame(data: Mapping[str, Any]) -> bytes:
    """One newline-delimited JSON line (Ollama's stream format)."""
    return (json.dumps(data, separators=(",", ":")) + "\n").encode()


def now_iso() -> str:
    """An RFC 3339 UTC timestamp with nanosecond-style precision, like Ollama's ``created_at``."""
    seconds = time.time()
    fraction = f".{int(seconds % 1 * 1e9):09d}Z"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + fraction


def optional_int(body: Mapping[str, Any], *keys: str) -> int | None:
    """The first of ``keys`` present in ``body``, which must be a positive int."""
    for key in keys:
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RequestError(f"{key} must be a positive integer, got {value!r}")
        return value
    return None


def bearer(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer`` header."""
    value = headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def tool_spec(name: object, schema: object, where: str) -> ToolSpec:
    """A ToolSpec, or RequestError naming ``where`` when the tool has no name."""
    if not isinstance(name, str) or not name:
        raise RequestError(f"{where}: a tool name is required")
    return ToolSpec(name, schema if isinstance(schema, Mapping) else {})


def function_tools(value: object) -> tuple[ToolSpec, ...]:
    """OpenAI-style ``[{type: function, function: {name, parameters}}]`` (Ollama's too)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RequestError("tools must be a list")
    specs = []
    for index, tool in enumerate(value):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping):
            raise RequestError(f"tools[{index}].function is required")
        where = f"tools[{index}].function"
        specs.append(tool_spec(function.get("name"), function.get("parameters"), where))
    return tuple(specs)


def cache_prefix(parts: object, tokens: int, *, explicit: bool = False) -> CachePrefix:
    """A cacheable prompt prefix identified by the JSON of everything in it."""
    canonical = json.dumps(parts, sort_keys=True, default=str).encode()
    return CachePrefix(hashlib.sha256(canonical).hexdigest(), tokens, explicit)


def new_id() -> str:
    """A fresh 24-character id: every response and tool call gets its own."""
    return secrets.token_hex(12)


def ranged(body: Mapping[str, Any], key: str, low: float, high: float) -> None:
    """RequestError when ``body[key]`` is present and not a number in ``[low, high]``."""
    value = body.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise RequestError(
            f"Invalid '{key}': {value!r} is not a number between {low:g} and {high:g}.",
            param=key, code="invalid_value" if isinstance(value, (int, float)) else "invalid_type",
        )


def stop_list(value: object, key: str = "stop") -> tuple[str, ...]:
    """Stop sequences given as one string or a list of strings."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise RequestError(f"{key} must be a string or a list of strings", param=key)
