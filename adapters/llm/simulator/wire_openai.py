"""OpenAI Chat Completions wire format (``POST .../chat/completions``).

Also what most OpenAI-compatible servers speak, so it doubles as the generic
``openai/<model>`` endpoint for any deployment. The other OpenAI endpoints
(embeddings, models) are in ``endpoints_openai.py``; the Responses API in
``wire_responses.py``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from . import endpoints_openai, validation
from .content import (
    ChatRequest,
    Choice,
    OutputSpec,
    Reply,
    count_tokens,
    join_texts,
    split_fixed,
    split_text,
    token_pieces,
)
from .wire import (
    ErrorSpec,
    Meta,
    RequestError,
    Route,
    bearer,
    cache_prefix,
    function_tools,
    optional_int,
    reset_text,
    sse_frame,
    stop_list,
)

__all__ = ["OpenAIWire", "openai_error", "openai_headers"]

_REASONING_MODELS = re.compile(r"^(?:o\d|gpt-5)")
_CHAT_PATHS = frozenset({"chat/completions", "v1/chat/completions"})

_ERROR_KINDS: Mapping[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def message_text(content: object) -> str:
    """Text of a message ``content``: a string or a list of parts (non-text parts are skipped)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, Mapping) and part.get("type", "text") in ("text", "input_text")
        )
    return ""


def _tool_choice(value: object) -> str | None:
    if isinstance(value, str):
        return None if value == "auto" else value
    if isinstance(value, Mapping):
        function = value.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            return str(function["name"])
        if isinstance(value.get("name"), str):
            return str(value["name"])
    return None


def _output(value: object) -> OutputSpec | None:
    if not isinstance(value, Mapping):
        return None
    kind = value.get("type")
    if kind == "json_object":
        return OutputSpec(None)
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        return OutputSpec(schema if isinstance(schema, Mapping) else {})
    return None


def _reasoning(model: str, effort: object) -> int | None:
    """Reasoning models (o-series, gpt-5) think unless told not to; others when asked."""
    if effort in ("none", "minimal"):
        return None
    if effort is not None or _REASONING_MODELS.match(model):
        return 0
    return None


def openai_error(error: ErrorSpec) -> dict[str, Any]:
    """OpenAI's error body; the caller's type and code win over the status's usual ones."""
    fallback = ("server_error" if error.status >= 500 else "invalid_request_error", None)
    kind, code = _ERROR_KINDS.get(error.status, fallback)
    body = {
        "message": error.message,
        "type": error.kind or kind,
        "param": error.param,
        "code": error.code or code,
    }
    return {"error": body}


def openai_headers(meta: Meta) -> dict[str, str]:
    headers = {"x-request-id": f"req_{meta.request_id}", "openai-processing-ms": "1"}
    limits = meta.limits
    if limits is not None:
        reset = reset_text(limits.reset_s)
        headers.update({
            "x-ratelimit-limit-requests": str(limits.requests_limit),
            "x-ratelimit-remaining-requests": str(limits.requests_remaining),
            "x-ratelimit-reset-requests": reset,
            "x-ratelimit-limit-tokens": str(limits.tokens_limit),
            "x-ratelimit-remaining-tokens": str(limits.tokens_remaining),
            "x-ratelimit-reset-tokens": reset,
        })
    return headers


def _logprobs(text: str, top: int) -> dict[str, Any]:
    """Deterministic log probabilities per token, ``top`` alternatives each."""
    content = []
    for piece in token_pieces(text):
        logprob = -round(0.01 * (len(piece.strip()) % 7 + 1), 4)
        alternatives = [
            {"token": piece if rank == 0 else f"{piece}{rank}",
             "logprob": logprob if rank == 0 else logprob - rank,
             "bytes": list((piece if rank == 0 else f"{piece}{rank}").encode())}
            for rank in range(top)
        ]
        content.append({"token": piece, "logprob": logprob, "bytes": list(piece.encode()),
                        "top_logprobs": alternatives})
    return {"content": content, "refusal": None}


class OpenAIWire:
    """Chat Completions: Bearer auth, ``chat.completion`` objects, SSE ending in ``[DONE]``."""

    name = "openai"
    stream_content_type = "text/event-stream"

    def match(self, method: str, path: str, query: Mapping[str, str]) -> Route | None:
        if path in _CHAT_PATHS:
            return Route(method=method)
        return endpoints_openai.match(method, path)

    def api_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return bearer(headers) or headers.get("api-key")

    def check(self, body: Mapping[str, Any], headers: Mapping[str, str], route: Route) -> None:
        if route.endpoint == "chat":
            validation.check_openai(body)

    def endpoint(self, route: Route, body: Mapping[str, Any], seed: int) -> dict[str, Any]:
        return endpoints_openai.answer(route, body, seed)

    def parse(self, body: Mapping[str, Any], route: Route) -> ChatRequest:
        model = body.get("model")
        messages = body.get("messages")
        if not isinstance(model, str) or not model:
            raise RequestError("you must provide a model parameter", param="model")
        if not isinstance(messages, list) or not messages:
            raise RequestError("messages must be a non-empty list", param="messages")
        if not all(isinstance(m, Mapping) for m in messages):
            raise RequestError("every message must be an object", param="messages")
        texts = join_texts(message_text(m.get("content")) for m in messages)
        users = [m for m in messages if m.get("role") == "user"]
        system = [m for m in messages if m.get("role") in ("system", "developer")]
        last = messages[-1]
        earlier = list(messages[:-1])
        earlier_tokens = sum(count_tokens(message_text(m.get("content"))) for m in earlier)
        top = body.get("top_logprobs")
        logprobs = (top if isinstance(top, int) else 0) if body.get("logprobs") else None
        return ChatRequest(
            model=model,
            texts=texts,
            last_user_text=message_text(users[-1].get("content")) if users else "",
            stream=bool(body.get("stream")),
            tools=function_tools(body.get("tools")),
            tool_choice=_tool_choice(body.get("tool_choice")),
            tool_result=message_text(last.get("content")) if last.get("role") == "tool" else None,
            max_tokens=optional_int(body, "max_completion_tokens", "max_tokens"),
            body=body,
            system_text="\n".join(message_text(m.get("content")) for m in system),
            output=_output(body.get("response_format")),
            stop=stop_list(body.get("stop")),
            n=optional_int(body, "n") or 1,
            parallel_tools=body.get("parallel_tool_calls") is not False,
            thinking=_reasoning(model, body.get("reasoning_effort")),
            logprobs=logprobs,
            prefixes=(cache_prefix([model, earlier, body.get("tools")], earlier_tokens),),
        )

    def _envelope(self, request: ChatRequest, reply: Reply, kind: str) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{reply.id}",
            "object": kind,
            "created": int(time.time()),
            "model": request.model,
            "system_fingerprint": "fp_simulator",
            "service_tier": "default",
        }

    @staticmethod
    def _usage(reply: Reply) -> dict[str, Any]:
        return {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.total_tokens,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": reply.thinking_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    @staticmethod
    def _calls(choice: Choice) -> list[dict[str, Any]]:
        return [
            {
                "id": f"call_{call.id}",
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json},
            }
            for call in choice.tool_calls
        ]

    def render(self, request: ChatRequest, reply: Reply) -> dict[str, Any]:
        choices = []
        for index, choice in enumerate(reply.choices):
            content = choice.text or None  # OpenAI sends null content with tool calls
            message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
            if choice.tool_calls:
                message["tool_calls"] = self._calls(choice)
            logprobs = _logprobs(choice.text, request.logprobs) \
                if request.logprobs is not None else None
            choices.append({"index": index, "message": message, "logprobs": logprobs,
                            "finish_reason": choice.finish})
        envelope = self._envelope(request, reply, "chat.completion")
        return {**envelope, "choices": choices, "usage": self._usage(reply)}

    def stream_frames(self, request: ChatRequest, reply: Reply, chunk_words: int) -> list[bytes]:
        envelope = self._envelope(request, reply, "chat.completion.chunk")
        frames = []
        for index, choice in enumerate(reply.choices):

            def chunk(delta: Mapping[str, Any], finish: str | None = None,
                      index: int = index) -> bytes:
                item = {"index": index, "delta": dict(delta), "logprobs": None,
                        "finish_reason": finish}
                return sse_frame({**envelope, "choices": [item]})

            frames.append(chunk({"role": "assistant", "content": ""}))
            frames += [chunk({"content": piece}) for piece in split_text(choice.text, chunk_words)]
            for number, call in enumerate(choice.tool_calls):
                head = {"index": number, "id": f"call_{call.id}", "type": "function"}
                opening = {**head, "function": {"name": call.name, "arguments": ""}}
                frames.append(chunk({"tool_calls": [opening]}))
                frames += [
                    chunk({"tool_calls": [{"index": number, "function": {"arguments": piece}}]})
                    for piece in split_fixed(call.arguments_json)
                ]
            frames.append(chunk({}, choice.finish))
        options = request.body.get("stream_options")
        if isinstance(options, Mapping) and options.get("include_usage"):
            frames.append(sse_frame({**envelope, "choices": [], "usage": self._usage(reply)}))
        frames.append(sse_frame("[DONE]"))
        return frames

    def error_body(self, error: ErrorSpec, request_id: str) -> dict[str, Any]:
        return openai_error(error)

    def headers(self, meta: Meta) -> dict[str, str]:
        return openai_headers(meta)

    def stream_error(self, error: ErrorSpec, request_id: str) -> bytes:
        return sse_frame(openai_error(error))

    def context_error(self, limit: int, used: int) -> ErrorSpec:
        message = (
            f"This model's maximum context length is {limit} tokens. However, your messages "
            f"resulted in {used} tokens. Please reduce the length of the messages."
        )
        return ErrorSpec(400, message, "invalid_request_error", "context_length_exceeded",
                         "messages")

    def malformed_frame(self) -> bytes:
        return b'data: {"id":"chatcmpl-sim","choices":[{"delta":{"content":"tru\n\n'
