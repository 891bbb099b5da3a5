"""OpenAI Chat Completions wire format (``POST .../chat/completions``).

Also what most OpenAI-compatible servers speak, so it doubles as the generic
``openai/<model>`` endpoint for any deployment.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .content import ChatRequest, Reply, join_texts, split_fixed, split_text
from .wire import RequestError, Route, bearer, function_tools, optional_int, sse_frame

__all__ = ["OpenAIWire"]

_PATHS = frozenset({"chat/completions", "v1/chat/completions"})

_ERROR_KINDS: Mapping[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def _message_text(content: object) -> str:
    """Text of a message ``content``: a string or a list of parts (non-text parts are skipped)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, Mapping) and part.get("type", "text") == "text"
        )
    return ""


def _tool_choice(value: object) -> str | None:
    if isinstance(value, str):
        return None if value == "auto" else value
    if isinstance(value, Mapping):
        function = value.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            return str(function["name"])
    return None


class OpenAIWire:
    """Chat Completions: Bearer auth, ``chat.completion`` objects, SSE ending in ``[DONE]``."""

    name = "openai"
    stream_content_type = "text/event-stream"

    def match(self, path: str) -> Route | None:
        return Route() if path in _PATHS else None

    def api_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return bearer(headers) or headers.get("api-key")

    def parse(self, body: Mapping[str, Any], route: Route) -> ChatRequest:
        model = body.get("model")
        messages = body.get("messages")
        if not isinstance(model, str) or not model:
            raise RequestError("you must provide a model parameter")
        if not isinstance(messages, list) or not messages:
            raise RequestError("messages must be a non-empty list")
        if not all(isinstance(m, Mapping) for m in messages):
            raise RequestError("every message must be an object")
        texts = join_texts(_message_text(m.get("content")) for m in messages)
        users = [m for m in messages if m.get("role") == "user"]
        last = messages[-1]
        return ChatRequest(
            model=model,
            texts=texts,
            last_user_text=_message_text(users[-1].get("content")) if users else "",
            stream=bool(body.get("stream")),
            tools=function_tools(body.get("tools")),
            tool_choice=_tool_choice(body.get("tool_choice")),
            tool_result=_message_text(last.get("content")) if last.get("role") == "tool" else None,
            max_tokens=optional_int(body, "max_completion_tokens", "max_tokens"),
            body=body,
        )

    def _envelope(self, request: ChatRequest, reply: Reply, kind: str) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{reply.id}",
            "object": kind,
            "created": int(time.time()),
            "model": request.model,
            "system_fingerprint": "fp_simulator",
        }

    @staticmethod
    def _usage(reply: Reply) -> dict[str, int]:
        return {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.total_tokens,
        }

    def render(self, request: ChatRequest, reply: Reply) -> dict[str, Any]:
        content = reply.text or None  # OpenAI sends null content with tool calls
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        if reply.tool_call is not None:
            call = reply.tool_call
            message["tool_calls"] = [
                {
                    "id": f"call_{call.id}",
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments_json},
                }
            ]
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish}
        envelope = self._envelope(request, reply, "chat.completion")
        return {**envelope, "choices": [choice], "usage": self._usage(reply)}

    def stream_frames(self, request: ChatRequest, reply: Reply, chunk_words: int) -> list[bytes]:
        envelope = self._envelope(request, reply, "chat.completion.chunk")

        def chunk(delta: Mapping[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": dict(delta), "logprobs": None, "finish_reason": finish}
            return sse_frame({**envelope, "choices": [choice]})

        frames = [chunk({"role": "assistant", "content": ""})]
        frames += [chunk({"content": piece}) for piece in split_text(reply.text, chunk_words)]
        if reply.tool_call is not None:
            call = reply.tool_call
            head = {"index": 0, "id": f"call_{call.id}", "type": "function"}
            opening = {**head, "function": {"name": call.name, "arguments": ""}}
            frames.append(chunk({"tool_calls": [opening]}))
            frames += [
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                for piece in split_fixed(call.arguments_json)
            ]
        frames.append(chunk({}, reply.finish))
        options = request.body.get("stream_options")
        if isinstance(options, Mapping) and options.get("include_usage"):
            frames.append(sse_frame({**envelope, "choices": [], "usage": self._usage(reply)}))
        frames.append(sse_frame("[DONE]"))
        return frames

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        fallback = ("server_error" if status >= 500 else "invalid_request_error", None)
        kind, code = _ERROR_KINDS.get(status, fallback)
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}

    def context_error(self, limit: int, used: int) -> tuple[int, dict[str, Any]]:
        message = (
            f"This model's maximum context length is {limit} tokens. However, your messages "
            f"resulted in {used} tokens. Please reduce the length of the messages."
        )
        error = {
            "message": message,
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
        return 400, {"error": error}

    def malformed_frame(self) -> bytes:
        return b'data: {"id":"chatcmpl-sim","choices":[{"delta":{"content":"tru\n\n'
