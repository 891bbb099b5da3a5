"""The contract between the server and a provider wire format, plus shared framing helpers.

The server knows nothing about any provider's JSON: it routes a URL to a
:class:`WireFormat`, which parses the body into a :class:`~.content.ChatRequest`
and renders replies, stream frames and errors in that provider's shape.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .content import ChatRequest, Reply, ToolSpec

__all__ = [
    "RequestError",
    "Route",
    "WireFormat",
    "bearer",
    "function_tools",
    "ndjson_frame",
    "now_iso",
    "optional_int",
    "sse_frame",
    "tool_spec",
]


class RequestError(ValueError):
    """The request body cannot be served; answered as a 400 in the provider's own format."""


@dataclass(frozen=True)
class Route:
    """What the URL path says about the request (Gemini puts model and streaming in the path)."""

    model: str | None = None
    stream: bool | None = None


class WireFormat(Protocol):
    """One provider's HTTP dialect. Implementations are stateless."""

    name: str
    stream_content_type: str

    def match(self, path: str) -> Route | None:
        """The route for a path below ``/s/<scenario>/``, or None when it is not this provider's."""

    def api_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        """The credential the client sent, where this provider expects it."""

    def parse(self, body: Mapping[str, Any], route: Route) -> ChatRequest:
        """Reduce the provider request to a ChatRequest; raise RequestError when it is invalid."""

    def render(self, request: ChatRequest, reply: Reply) -> dict[str, Any]:
        """The non-streaming response body."""

    def stream_frames(self, request: ChatRequest, reply: Reply, chunk_words: int) -> list[bytes]:
        """Every frame of the streamed response, terminator included, ready to write."""

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        """The provider's error JSON for an HTTP status."""

    def context_error(self, limit: int, used: int) -> tuple[int, dict[str, Any]]:
        """Status and body the provider sends when the input exceeds the context window."""

    def malformed_frame(self) -> bytes:
        """A stream frame the client cannot parse."""


def sse_frame(data: Mapping[str, Any] | str, event: str | None = None) -> bytes:
    """One server-sent event; ``data`` is JSON-encoded unless it is already a string."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {payload}\n\n".encode()


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
