"""Anthropic Messages wire format (``POST .../v1/messages``).

Streams use Anthropic's named SSE events (``message_start`` ... ``message_stop``),
which clients parse by event type, so the sequence mirrors the real API exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .content import ChatRequest, FinishReason, Reply, ToolSpec, join_texts, split_fixed, split_text
from .wire import RequestError, Route, bearer, optional_int, sse_frame, tool_spec

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


def _sse(data: Mapping[str, Any]) -> bytes:
    """Anthropic names every event after its ``type``."""
    return sse_frame(data, str(data["type"]))


class AnthropicWire:
    """Messages API: ``x-api-key`` auth, content blocks, named SSE events, typed errors."""

    name = "anthropic"
    stream_content_type = "text/event-stream"

    def match(self, path: str) -> Route | None:
        return Route() if path in _PATHS else None

    def api_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return headers.get("x-api-key") or bearer(headers)

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
        if max_tokens is None:
            raise RequestError("max_tokens: Field required")
        system = body.get("system")
        texts = [system] if isinstance(system, str) else _block_texts(system, tool_results=False)
        for message in messages:
            texts += _block_texts(message.get("content"), tool_results=False)
            texts += _block_texts(message.get("content"), tool_results=True)
        users = [m for m in messages if m.get("role") == "user"]
        last_user = _block_texts(users[-1].get("content"), tool_results=False) if users else []
        last = messages[-1]
        is_user = last.get("role") == "user"
        results = _block_texts(last.get("content"), tool_results=True) if is_user else []
        return ChatRequest(
            model=model,
            texts=join_texts(texts),
            last_user_text="\n".join(last_user),
            stream=bool(body.get("stream")),
            tools=_tools(body.get("tools")),
            tool_choice=_tool_choice(body.get("tool_choice")),
            tool_result="\n".join(results) if results else None,
            max_tokens=max_tokens,
            body=body,
        )

    @staticmethod
    def _usage(reply: Reply, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": reply.input_tokens,
            "output_tokens": output_tokens,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
        }

    def _message(self, request: ChatRequest, reply: Reply, content: list[Any]) -> dict[str, Any]:
        return {
            "id": f"msg_{reply.id}",
            "type": "message",
            "role": "assistant",
            "model": request.model,
            "content": content,
            "stop_reason": _STOP_REASONS[reply.finish],
            "stop_sequence": None,
            "usage": self._usage(reply, reply.output_tokens),
        }

    def render(self, request: ChatRequest, reply: Reply) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if reply.text or reply.tool_call is None:
            content.append({"type": "text", "text": reply.text})
        call = reply.tool_call
        if call is not None:
            tool_use = {"type": "tool_use", "id": f"toolu_{call.id}", "name": call.name}
            content.append({**tool_use, "input": dict(call.arguments)})
        return self._message(request, reply, content)

    @staticmethod
    def _stream_blocks(reply: Reply, chunk_words: int) -> list[_Block]:
        """Each content block as its ``content_block_start`` payload and its deltas."""
        blocks: list[_Block] = []
        if reply.text or reply.tool_call is None:
            pieces = split_text(reply.text, chunk_words)
            text = {"type": "text", "text": ""}
            blocks.append((text, [{"type": "text_delta", "text": p} for p in pieces]))
        call = reply.tool_call
        if call is not None:  # the input starts empty and arrives as JSON fragments
            tool_use = {"type": "tool_use", "id": f"toolu_{call.id}", "name": call.name}
            pieces = split_fixed(call.arguments_json)
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
            blocks.append(({**tool_use, "input": {}}, deltas))
        return blocks

    def stream_frames(self, request: ChatRequest, reply: Reply, chunk_words: int) -> list[bytes]:
        message = self._message(request, reply, [])
        start = {**message, "stop_reason": None, "usage": self._usage(reply, 0)}
        frames = [_sse({"type": "message_start", "message": start}), _sse({"type": "ping"})]
        for index, (block, deltas) in enumerate(self._stream_blocks(reply, chunk_words)):
            at = {"index": index}
            frames.append(_sse({"type": "content_block_start", **at, "content_block": block}))
            frames += [_sse({"type": "content_block_delta", **at, "delta": d}) for d in deltas]
            frames.append(_sse({"type": "content_block_stop", **at}))
        stop = {"stop_reason": _STOP_REASONS[reply.finish], "stop_sequence": None}
        usage = {"output_tokens": reply.output_tokens}
        frames.append(_sse({"type": "message_delta", "delta": stop, "usage": usage}))
        frames.append(_sse({"type": "message_stop"}))
        return frames

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def context_error(self, limit: int, used: int) -> tuple[int, dict[str, Any]]:
        return 400, self.error_body(400, f"prompt is too long: {used} tokens > {limit} maximum")

    def malformed_frame(self) -> bytes:
        return (
            b"event: content_block_delta\n"
            b'data: {"type":"content_block_delta","index":0,"delta":{"text":"tru\n\n'
        )
