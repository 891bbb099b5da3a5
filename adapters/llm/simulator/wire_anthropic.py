"""Anthropic Messages wire format (``POST .../v1/messages``), plus count_tokens and models.

Streams use Anthropic's named SSE events (``message_start`` ... ``message_stop``),
which clients parse by event type, so the sequence mirrors the real API exactly,
``ping`` after the first ``content_block_start`` included.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from . import validation
from .content import (
    ChatRequest,
    Choice,
    FinishReason,
    OutputSpec,
    Reply,
    ToolSpec,
    count_tokens,
    join_texts,
    split_fixed,
    split_text,
)
from .embeddings import LISTED_MODELS
from .wire import (
    ErrorSpec,
    Meta,
    RequestError,
    Route,
    bearer,
    cache_prefix,
    optional_int,
    sse_frame,
    stop_list,
    tool_spec,
)

__all__ = ["AnthropicWire"]

_PATHS = frozenset({"v1/messages", "messages"})

_STOP_REASONS: Mapping[FinishReason, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
}

_Block = tuple[dict[str, Any], list[dict[str, Any]]]

_ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",  # Anthropic's real overload status; 503 stays a plain api_error
}


def _block_texts(content: object, *, tool_results: bool) -> list[str]:
    """Texts of a content value; with ``tool_results`` only tool results, else only text blocks."""
    if isinstance(content, str):
        return [] if tool_results else [content]
    if not isinstance(content, list):
        return []
    texts = []
    for block in content:
        if not isinstance(block, Mapping):
            continue
        kind = block.get("type")
        if tool_results and kind == "tool_result":
            texts.append("\n".join(_block_texts(block.get("content"), tool_results=False)))
        elif not tool_results and kind == "text":
            texts.append(str(block.get("text", "")))
    return texts


def _tool_choice(value: object) -> str | None:
    if not isinstance(value, Mapping):
        return None
    kind = value.get("type")
    if kind == "any":
        return "required"
    if kind == "tool" and isinstance(value.get("name"), str):
        return str(value["name"])
    return "none" if kind == "none" else None


def _tools(value: object) -> tuple[ToolSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(tool, Mapping) for tool in value):
        raise RequestError("tools: a list of tool objects is required")
    return tuple(
        tool_spec(tool.get("name"), tool.get("input_schema"), f"tools[{index}]")
        for index, tool in enumerate(value)
    )


def _output(body: Mapping[str, Any]) -> OutputSpec | None:
    """``output_config.format`` (current SDKs) or the beta ``output_format``."""
    config = body.get("output_config")
    format_ = config.get("format") if isinstance(config, Mapping) else None
    format_ = format_ or body.get("output_format")
    if isinstance(format_, Mapping) and format_.get("type") == "json_schema":
        schema = format_.get("schema")
        return OutputSpec(schema if isinstance(schema, Mapping) else {})
    return None


def _thinking(value: object) -> int | None:
    if not isinstance(value, Mapping) or value.get("type") not in ("enabled", "adaptive"):
        return None
    budget = value.get("budget_tokens")
    return budget if isinstance(budget, int) and not isinstance(budget, bool) else 0


def _breakpoints(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """Each ``cache_control`` marks the end of a cached prefix: tools, then system, then
    messages."""
    seen: list[Any] = []
    tokens = 0
    found = []
    system = body.get("system")
    system_blocks = system if isinstance(system, list) else [system] if system else []
    units: list[tuple[object, str]] = [(tool, "") for tool in body.get("tools") or []]
    units += [(block, "") for block in system_blocks]
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, Mapping) else None
        blocks = content if isinstance(content, list) else [content]
        units += [(block, str(message.get("role"))) for block in blocks]
    for unit, role in units:
        seen.append([role, unit])
        if isinstance(unit, str):
            tokens += count_tokens(unit)
        elif isinstance(unit, Mapping):
            tokens += count_tokens(str(unit.get("text", "")))
            tokens += sum(count_tokens(t) for t in _block_texts([unit], tool_results=True))
            if unit.get("cache_control"):
                found.append(cache_prefix([body.get("model"), seen], tokens, explicit=True))
    return tuple(found)


def _sse(data: Mapping[str, Any]) -> bytes:
    """Anthropic names every event after its ``type``."""
    return sse_frame(data, str(data["type"]))


def _rfc3339(seconds_from_now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds_from_now))


class AnthropicWire:
    """Messages API: ``x-api-key`` auth, content blocks, named SSE events, typed errors."""

    name = "anthropic"
    stream_content_type = "text/event-stream"

    def match(self, method: str, path: str, query: Mapping[str, str]) -> Route | None:
        if path in _PATHS and method == "POST":
            return Route(method=method)
        path = path.removeprefix("v1/")
        if path == "messages/count_tokens" and method == "POST":
            return Route(endpoint="count_tokens", method=method)
        if path == "models" and method == "GET":
            return Route(endpoint="models", method=method)
        if path.startswith("models/") and method == "GET":
            return Route(model=path.removeprefix("models/"), endpoint="model", method=method)
        return None

    def api_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return headers.get("x-api-key") or bearer(headers)

    def check(self, body: Mapping[str, Any], headers: Mapping[str, str], route: Route) -> None:
        validation.check_anthropic(body, headers)

    def parse(self, body: Mapping[str, Any], route: Route) -> ChatRequest:
        model = body.get("model")
        messages = body.get("messages")
        if not isinstance(model, str) or not model:
            raise RequestError("model: Field required")
        if not isinstance(messages, list) or not messages:
            raise RequestError("messages: at least one message is required")
        if not all(isinstance(m, Mapping) for m in messages):
            raise RequestError("messages: every message must be an object")
        max_tokens = optional_int(body, "max_tokens")
        if max_tokens is None and route.endpoint == "chat":
            raise RequestError("max_tokens: Field required")
        system = body.get("system")
        system_texts = [system] if isinstance(system, str) else \
            _block_texts(system, tool_results=False)
        texts = list(system_texts)
        for message in messages:
            texts += _block_texts(message.get("content"), tool_results=False)
            texts += _block_texts(message.get("content"), tool_results=True)
        users = [m for m in messages if m.get("role") == "user"]
        last_user = _block_texts(users[-1].get("content"), tool_results=False) if users else []
        last = messages[-1]
        is_user = last.get("role") == "user"
        results = _block_texts(last.get("content"), tool_results=True) if is_user else []
        choice = body.get("tool_choice")
        serial = isinstance(choice, Mapping) and bool(choice.get("disable_parallel_tool_use"))
        return ChatRequest(
            model=model,
            texts=join_texts(texts),
            last_user_text="\n".join(last_user),
            stream=bool(body.get("stream")),
            tools=_tools(body.get("tools")),
            tool_choice=_tool_choice(choice),
            tool_result="\n".join(results) if results else None,
            max_tokens=max_tokens,
            body=body,
            system_text="\n".join(system_texts),
            output=_output(body),
            stop=stop_list(body.get("stop_sequences"), "stop_sequences"),
            parallel_tools=not serial,
            thinking=_thinking(body.get("thinking")),
            prefixes=_breakpoints(body),
        )

    def endpoint(self, route: Route, body: Mapping[str, Any], seed: int) -> dict[str, Any]:
        if route.endpoint == "count_tokens":
            return {"input_tokens": self.parse(body, route).input_tokens}
        if route.endpoint == "model":
            return self._model(route.model or "")
        models = [self._model(name) for name in LISTED_MODELS["anthropic"]]
        return {"data": models, "has_more": False, "first_id": models[0]["id"],
                "last_id": models[-1]["id"]}

    @staticmethod
    def _model(name: str) -> dict[str, Any]:
        return {"type": "model", "id": name, "display_name": name,
                "created_at": "2025-01-01T00:00:00Z"}

    @staticmethod
    def _usage(reply: Reply, output_tokens: int) -> dict[str, Any]:
        written = reply.cache_write_tokens
        return {
            "input_tokens": reply.input_tokens - reply.cached_tokens - written,
            "output_tokens": output_tokens,
            "cache_read_input_tokens": reply.cached_tokens,
            "cache_creation_input_tokens": written,
            "cache_creation": {"ephemeral_5m_input_tokens": written,
                               "ephemeral_1h_input_tokens": 0},
            "service_tier": "standard",
        }

    def _message(self, request: ChatRequest, reply: Reply, content: list[Any]) -> dict[str, Any]:
        choice = reply.choices[0]
        stop_reason = "stop_sequence" if choice.stop_sequence else _STOP_REASONS[choice.finish]
        return {
            "id": f"msg_{reply.id}",
            "type": "message",
            "role": "assistant",
            "model": request.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": choice.stop_sequence,
            "usage": self._usage(reply, reply.output_tokens),
        }

    @staticmethod
    def _signature(choice: Choice) -> str:
        return f"sim-signature-{count_tokens(choice.thinking)}"

    def render(self, request: ChatRequest, reply: Reply) -> dict[str, Any]:
        choice = reply.choices[0]
        content: list[dict[str, Any]] = []
        if choice.thinking:
            content.append({"type": "thinking", "thinking": choice.thinking,
                            "signature": self._signature(choice)})
        if choice.text or not choice.tool_calls:
            content.append({"type": "text", "text": choice.text})
        for call in choice.tool_calls:
            tool_use = {"type": "tool_use", "id": f"toolu_{call.id}", "name": call.name}
            content.append({**tool_use, "input": dict(call.arguments)})
        return self._message(request, reply, content)

    def _stream_blocks(self, reply: Reply, chunk_words: int) -> list[_Block]:
        """Each content block as its ``content_block_start`` payload and its deltas."""
        choice = reply.choices[0]
        blocks: list[_Block] = []
        if choice.thinking:
            pieces = split_text(choice.thinking, chunk_words)
            deltas = [{"type": "thinking_delta", "thinking": p} for p in pieces]
            deltas.append({"type": "signature_delta", "signature": self._signature(choice)})
            blocks.append(({"type": "thinking", "thinking": "", "signature": ""}, deltas))
        if choice.text or not choice.tool_calls:
            pieces = split_text(choice.text, chunk_words)
            text = {"type": "text", "text": ""}
            blocks.append((text, [{"type": "text_delta", "text": p} for p in pieces]))
        for call in choice.tool_calls:  # the input starts empty and arrives as JSON fragments
            tool_use = {"type": "tool_use", "id": f"toolu_{call.id}", "name": call.name}
            pieces = split_fixed(call.arguments_json)
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
            blocks.append(({**tool_use, "input": {}}, deltas))
        return blocks

    def stream_frames(self, request: ChatRequest, reply: Reply, chunk_words: int) -> list[bytes]:
        message = self._message(request, reply, [])
        start = {**message, "stop_reason": None, "stop_sequence": None,
                 "usage": self._usage(reply, 1)}
        frames = [_sse({"type": "message_start", "message": start})]
        for index, (block, deltas) in enumerate(self._stream_blocks(reply, chunk_words)):
            at = {"index": index}
            frames.append(_sse({"type": "content_block_start", **at, "content_block": block}))
            if index == 0:
                frames.append(_sse({"type": "ping"}))
            frames += [_sse({"type": "content_block_delta", **at, "delta": d}) for d in deltas]
            frames.append(_sse({"type": "content_block_stop", **at}))
        stop = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
        usage = self._usage(reply, reply.output_tokens)
        usage.pop("cache_creation")
        usage.pop("service_tier")
        frames.append(_sse({"type": "message_delta", "delta": stop, "usage": usage}))
        frames.append(_sse({"type": "message_stop"}))
        return frames

    def error_body(self, error: ErrorSpec, request_id: str) -> dict[str, Any]:
        status = error.status
        kind = error.kind or _ERROR_TYPES.get(
            status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": error.message},
                "request_id": f"req_{request_id}"}

    def headers(self, meta: Meta) -> dict[str, str]:
        headers = {"request-id": f"req_{meta.request_id}"}
        limits = meta.limits
        if limits is not None:
            reset = _rfc3339(limits.reset_s)
            for kind, limit, remaining in (
                ("requests", limits.requests_limit, limits.requests_remaining),
                ("tokens", limits.tokens_limit, limits.tokens_remaining),
                ("input-tokens", limits.tokens_limit, limits.tokens_remaining),
                ("output-tokens", limits.tokens_limit, limits.tokens_limit),
            ):
                headers[f"anthropic-ratelimit-{kind}-limit"] = str(limit)
                headers[f"anthropic-ratelimit-{kind}-remaining"] = str(remaining)
                headers[f"anthropic-ratelimit-{kind}-reset"] = reset
        return headers

    def stream_error(self, error: ErrorSpec, request_id: str) -> bytes:
        body = self.error_body(error, request_id)
        return sse_frame(body, "error")

    def context_error(self, limit: int, used: int) -> ErrorSpec:
        return ErrorSpec(400, f"prompt is too long: {used} tokens > {limit} maximum")

    def malformed_frame(self) -> bytes:
        return (
            b"event: content_block_delta\n"
            b'data: {"type":"content_block_delta","index":0,"delta":{"text":"tru\n\n'
        )
