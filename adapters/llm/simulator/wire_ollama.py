"""Ollama chat wire format (``POST .../api/chat``).

Ollama streams newline-delimited JSON rather than SSE, reports counts and
durations in the final ``done`` line, and returns tool arguments as objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .content import ChatRequest, Reply, join_texts, split_text, text_of
from .wire import RequestError, Route, function_tools, ndjson_frame, now_iso, optional_int

__all__ = ["OllamaWire"]

_NS_PER_TOKEN = 1_000_000  # pretend 1 ms per token so the durations look plausible


class OllamaWire:
    """``/api/chat``: no auth, NDJSON streaming, ``done``/``done_reason`` and eval counts."""

    name = "ollama"
    stream_content_type = "application/x-ndjson"

    def match(self, path: str) -> Route | None:
        return Route() if path == "api/chat" else None

    def api_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return "ollama"  # Ollama has no authentication; the key check never refuses it

    def parse(self, body: Mapping[str, Any], route: Route) -> ChatRequest:
        model = body.get("model")
        messages = body.get("messages")
        if not isinstance(model, str) or not model:
            raise RequestError("model is required")
        if not isinstance(messages, list) or not all(isinstance(m, Mapping) for m in messages):
            raise RequestError("messages must be a list of objects")
        options = body.get("options")
        limit = optional_int(options, "num_predict") if isinstance(options, Mapping) else None
        users = [m for m in messages if m.get("role") == "user"]
        last = messages[-1] if messages else {}
        return ChatRequest(
            model=model,
            texts=join_texts(text_of(m.get("content")) for m in messages),
            last_user_text=text_of(users[-1].get("content")) if users else "",
            stream=bool(body.get("stream", True)),  # Ollama streams unless told not to
            tools=function_tools(body.get("tools")),
            tool_result=text_of(last.get("content")) if last.get("role") == "tool" else None,
            max_tokens=limit,
            body=body,
        )

    @staticmethod
    def _final(request: ChatRequest, reply: Reply, message: dict[str, Any]) -> dict[str, Any]:
        prompt_ns = reply.input_tokens * _NS_PER_TOKEN
        eval_ns = reply.output_tokens * _NS_PER_TOKEN
        return {
            "model": request.model,
            "created_at": now_iso(),
            "message": message,
            "done_reason": "length" if reply.finish == "length" else "stop",
            "done": True,
            "total_duration": prompt_ns + eval_ns,
            "load_duration": 0,
            "prompt_eval_count": reply.input_tokens,
            "prompt_eval_duration": prompt_ns,
            "eval_count": reply.output_tokens,
            "eval_duration": eval_ns,
        }

    @staticmethod
    def _tool_calls(reply: Reply) -> list[dict[str, Any]]:
        call = reply.tool_call
        if call is None:
            return []
        return [{"function": {"name": call.name, "arguments": dict(call.arguments)}}]

    def render(self, request: ChatRequest, reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.tool_call is not None:
            message["tool_calls"] = self._tool_calls(reply)
        return self._final(request, reply, message)

    def stream_frames(self, request: ChatRequest, reply: Reply, chunk_words: int) -> list[bytes]:
        def line(content: str, **extra: Any) -> bytes:
            message = {"role": "assistant", "content": content, **extra}
            return ndjson_frame(
                {"model": request.model, "created_at": now_iso(), "message": message, "done": False}
            )

        frames = [line(piece) for piece in split_text(reply.text, chunk_words)]
        if reply.tool_call is not None:
            frames.append(line("", tool_calls=self._tool_calls(reply)))
        final = self._final(request, reply, {"role": "assistant", "content": ""})
        return [*frames, ndjson_frame(final)]

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"error": message}

    def context_error(self, limit: int, used: int) -> tuple[int, dict[str, Any]]:
        # Ollama itself silently truncates; llama.cpp's wording is used so clients can tell.
        message = f"the request ({used} tokens) exceeds the available context size ({limit} tokens)"
        return 400, {"error": message}

    def malformed_frame(self) -> bytes:
        return b'{"model":"sim","message":{"role":"assistant","content":"tru\n'
