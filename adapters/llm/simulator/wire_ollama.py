"""Ollama wire format: ``/api/chat`` and ``/api/generate``, plus embed, tags and show.

Ollama streams newline-delimited JSON rather than SSE, reports counts and
durations in the final ``done`` line, returns tool arguments as objects and reports
a failure inside a stream as an ``{"error": ...}`` line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import validation
from .content import ChatRequest, OutputSpec, Reply, count_tokens, join_texts, split_text, text_of
from .embeddings import LISTED_MODELS, vector
from .wire import (
    ErrorSpec,
    Meta,
    RequestError,
    Route,
    function_tools,
    ndjson_frame,
    now_iso,
    optional_int,
    stop_list,
)

__all__ = ["OllamaWire"]

_NS_PER_TOKEN = 1_000_000  # pretend 1 ms per token so the durations look plausible
_DIMENSIONS = 768
_GET: Mapping[str, str] = {"api/tags": "tags", "api/version": "version", "api/ps": "ps"}
_POST: Mapping[str, str] = {"api/chat": "chat", "api/generate": "generate", "api/embed": "embed",
         "api/embeddings": "embeddings", "api/show": "show"}


def _output(value: object) -> OutputSpec | None:
    if value == "json":
        return OutputSpec(None)
    return OutputSpec(value) if isinstance(value, Mapping) else None


def _details() -> dict[str, Any]:
    return {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
            "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}


def _inputs(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise RequestError("input must be a string or a list of strings")


class OllamaWire:
    """No auth, NDJSON streaming, ``done``/``done_reason`` and eval counts."""

    name = "ollama"
    stream_content_type = "application/x-ndjson"

    def match(self, method: str, path: str, query: Mapping[str, str]) -> Route | None:
        table = _GET if method in ("GET", "HEAD") else _POST
        endpoint = table.get(path)
        return Route(endpoint=endpoint, method=method) if endpoint else None

    def api_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return "ollama"  # Ollama has no authentication; the key check never refuses it

    def check(self, body: Mapping[str, Any], headers: Mapping[str, str], route: Route) -> None:
        if route.endpoint == "chat":
            validation.check_ollama(body)

    def parse(self, body: Mapping[str, Any], route: Route) -> ChatRequest:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise RequestError("model is required")
        if route.endpoint == "generate":
            prompt, system = body.get("prompt"), body.get("system")
            messages: Any = [{"role": "system", "content": system}] if system else []
            messages.append({"role": "user", "content": prompt if isinstance(prompt, str) else ""})
        else:
            messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, Mapping) for m in messages):
            raise RequestError("messages must be a list of objects")
        options = body.get("options")
        options = options if isinstance(options, Mapping) else {}
        users = [m for m in messages if m.get("role") == "user"]
        last = messages[-1] if messages else {}
        think = body.get("think")
        return ChatRequest(
            model=model,
            texts=join_texts(text_of(m.get("content")) for m in messages),
            last_user_text=text_of(users[-1].get("content")) if users else "",
            stream=bool(body.get("stream", True)),  # Ollama streams unless told not to
            tools=function_tools(body.get("tools")),
            tool_result=text_of(last.get("content")) if last.get("role") == "tool" else None,
            max_tokens=optional_int(options, "num_predict"),
            body=body,
            system_text="\n".join(text_of(m.get("content")) for m in messages
                                  if m.get("role") == "system"),
            output=_output(body.get("format")),
            stop=stop_list(options.get("stop")),
            thinking=0 if think not in (None, False, "none") else None,
        )

    def endpoint(self, route: Route, body: Mapping[str, Any], seed: int) -> dict[str, Any]:
        if route.endpoint in ("tags", "ps"):
            models = []
            for name in LISTED_MODELS["ollama"]:
                models.append({"name": name, "model": name, "modified_at": "2025-01-01T00:00:00Z",
                               "size": 2019393189, "digest": "0" * 64, "details": _details()})
            return {"models": models}
        if route.endpoint == "version":
            return {"version": "0.6.3"}
        model = body.get("model") or body.get("name")
        if not isinstance(model, str) or not model:
            raise RequestError("model is required")
        if route.endpoint == "show":
            return {"modelfile": f"FROM {model}\n", "parameters": "", "template": "{{ .Prompt }}",
                    "details": _details(), "model_info": {"general.architecture": "llama"},
                    "capabilities": ["completion", "tools"], "modified_at": "2025-01-01T00:00:00Z"}
        if route.endpoint == "embeddings":
            return {"embedding": vector(str(body.get("prompt", "")), _DIMENSIONS, seed)}
        texts = _inputs(body.get("input"))
        size = body.get("dimensions") or _DIMENSIONS
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise RequestError(f"dimensions must be a positive integer, got {size!r}")
        tokens = sum(count_tokens(text) for text in texts)
        return {"model": model, "embeddings": [vector(text, size, seed) for text in texts],
                "total_duration": tokens * _NS_PER_TOKEN, "load_duration": 0,
                "prompt_eval_count": tokens}

    @staticmethod
    def _final(request: ChatRequest, reply: Reply, message: dict[str, Any]) -> dict[str, Any]:
        prompt_ns = reply.input_tokens * _NS_PER_TOKEN
        eval_ns = reply.output_tokens * _NS_PER_TOKEN
        final: dict[str, Any] = {"model": request.model, "created_at": now_iso()}
        if request.body.get("messages") is not None or "prompt" not in request.body:
            final["message"] = message
        else:
            final["response"] = message.get("content", "")
            if message.get("thinking"):
                final["thinking"] = message["thinking"]
        final.update({
            "done_reason": "length" if reply.finish == "length" else "stop",
            "done": True,
            "total_duration": prompt_ns + eval_ns,
            "load_duration": 0,
            "prompt_eval_count": reply.input_tokens,
            "prompt_eval_duration": prompt_ns,
            "eval_count": reply.output_tokens,
            "eval_duration": eval_ns,
        })
        return final

    @staticmethod
    def _tool_calls(reply: Reply) -> list[dict[str, Any]]:
        return [{"function": {"name": call.name, "arguments": dict(call.arguments)}}
                for call in reply.tool_calls]

    def render(self, request: ChatRequest, reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.choices[0].thinking:
            message["thinking"] = reply.choices[0].thinking
        if reply.tool_calls:
            message["tool_calls"] = self._tool_calls(reply)
        return self._final(request, reply, message)

    def stream_frames(self, request: ChatRequest, reply: Reply, chunk_words: int) -> list[bytes]:
        chat = request.body.get("messages") is not None or "prompt" not in request.body

        def line(content: str, **extra: Any) -> bytes:
            head: dict[str, Any] = {"model": request.model, "created_at": now_iso()}
            if chat:
                head["message"] = {"role": "assistant", "content": content, **extra}
            else:
                head["response"] = content
                head.update(extra)
            return ndjson_frame({**head, "done": False})

        thinking = reply.choices[0].thinking
        frames = [line("", thinking=piece) for piece in split_text(thinking, chunk_words)]
        frames += [line(piece) for piece in split_text(reply.text, chunk_words)]
        if reply.tool_calls:
            frames.append(line("", tool_calls=self._tool_calls(reply)))
        final = self._final(request, reply, {"role": "assistant", "content": ""})
        return [*frames, ndjson_frame(final)]

    def error_body(self, error: ErrorSpec, request_id: str) -> dict[str, Any]:
        return {"error": error.message}

    def headers(self, meta: Meta) -> dict[str, str]:
        return {}

    def stream_error(self, error: ErrorSpec, request_id: str) -> bytes:
        return ndjson_frame({"error": error.message})

    def context_error(self, limit: int, used: int) -> ErrorSpec:
        # Ollama itself silently truncates; llama.cpp's wording is used so clients can tell.
        message = f"the request ({used} tokens) exceeds the available context size ({limit} tokens)"
        return ErrorSpec(400, message)

    def malformed_frame(self) -> bytes:
        return b'{"model":"sim","message":{"role":"assistant","content":"tru\n'
