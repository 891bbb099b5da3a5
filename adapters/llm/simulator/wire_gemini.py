"""Google AI Studio (Gemini) wire format (``POST .../models/<model>:generateContent``).

Gemini puts the model and the streaming choice in the URL
(``:streamGenerateContent?alt=sse``) and reports errors as Google RPC statuses.
Google's JSON mapping accepts lowerCamel and snake_case field names alike, and
litellm sends a mix of both, so every field is read in either spelling.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .content import ChatRequest, Reply, ToolSpec, count_tokens, join_texts, split_text, text_of
from .wire import RequestError, Route, optional_int, sse_frame, tool_spec

__all__ = ["GeminiWire"]

_PATH = re.compile(
    r"(?:v1beta/|v1/)?models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)"
)
_CAMEL_HUMP = re.compile(r"(?<!^)(?=[A-Z])")

_STATUSES: Mapping[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _field(data: object, camel: str) -> Any:
    """``data[camel]`` or its snake_case twin; None when absent or ``data`` is not an object."""
    if not isinstance(data, Mapping):
        return None
    if camel in data:
        return data[camel]
    return data.get(_CAMEL_HUMP.sub("_", camel).lower())


def _parts(content: object) -> list[Mapping[str, Any]]:
    parts = _field(content, "parts")
    return [p for p in parts if isinstance(p, Mapping)] if isinstance(parts, list) else []


def _texts(parts: list[Mapping[str, Any]]) -> list[str]:
    return [str(p["text"]) for p in parts if "text" in p and not p.get("thought")]


def _function_responses(parts: list[Mapping[str, Any]]) -> list[str]:
    responses = (_field(part, "functionResponse") for part in parts)
    return [text_of(r.get("response")) for r in responses if isinstance(r, Mapping)]


def _tools(value: object) -> tuple[ToolSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RequestError("tools must be a list")
    specs = []
    for index, tool in enumerate(value):
        declarations = _field(tool, "functionDeclarations")
        if not isinstance(declarations, list):
            continue  # a built-in tool such as googleSearch
        for number, declaration in enumerate(declarations):
            schema = _field(declaration, "parameters")
            schema = schema or _field(declaration, "parametersJsonSchema")
            where = f"tools[{index}].functionDeclarations[{number}]"
            specs.append(tool_spec(_field(declaration, "name"), schema, where))
    return tuple(specs)


def _tool_choice(body: Mapping[str, Any]) -> str | None:
    calling = _field(_field(body, "toolConfig"), "functionCallingConfig")
    mode = str(_field(calling, "mode") or "AUTO").upper()
    allowed = _field(calling, "allowedFunctionNames")
    if mode == "NONE":
        return "none"
    if mode == "ANY":
        return str(allowed[0]) if isinstance(allowed, list) and len(allowed) == 1 else "required"
    return None


class GeminiWire:
    """generateContent: ``x-goog-api-key`` auth, candidates/parts, SSE with ``alt=sse``."""

    name = "gemini"
    stream_content_type = "text/event-stream"

    def match(self, path: str) -> Route | None:
        found = _PATH.fullmatch(path)
        if found is None:
            return None
        return Route(model=found["model"], stream=found["method"] == "streamGenerateContent")

    def api_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return headers.get("x-goog-api-key") or query.get("key")

    def parse(self, body: Mapping[str, Any], route: Route) -> ChatRequest:
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise RequestError("contents is not specified")
        if not all(isinstance(content, Mapping) for content in contents):
            raise RequestError("contents: every entry must be an object")
        texts = _texts(_parts(_field(body, "systemInstruction")))
        for content in contents:
            texts += _texts(_parts(content)) + _function_responses(_parts(content))
        users = [c for c in contents if c.get("role", "user") == "user" and _texts(_parts(c))]
        results = _function_responses(_parts(contents[-1]))
        config = _field(body, "generationConfig")
        limit = None
        if isinstance(config, Mapping):
            limit = optional_int(config, "maxOutputTokens", "max_output_tokens")
        return ChatRequest(
            model=route.model or "gemini",
            texts=join_texts(texts),
            last_user_text="\n".join(_texts(_parts(users[-1]))) if users else "",
            stream=bool(route.stream),
            tools=_tools(body.get("tools")),
            tool_choice=_tool_choice(body),
            tool_result="\n".join(results) if results else None,
            max_tokens=limit,
            body=body,
        )

    @staticmethod
    def _response(
        request: ChatRequest, reply: Reply, parts: list[Any], output_tokens: int
    ) -> dict[str, Any]:
        """One GenerateContentResponse; streamed ones carry the running output count."""
        candidate = {"content": {"role": "model", "parts": parts}, "index": 0}
        usage = {
            "promptTokenCount": reply.input_tokens,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": reply.input_tokens + output_tokens,
        }
        return {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": request.model,
            "responseId": reply.id,
        }

    @staticmethod
    def _finish(response: dict[str, Any], reply: Reply) -> dict[str, Any]:
        """Mark the last response; Gemini says STOP for tool calls too."""
        reason = "MAX_TOKENS" if reply.finish == "length" else "STOP"
        response["candidates"][0]["finishReason"] = reason
        return response

    @staticmethod
    def _call_parts(reply: Reply) -> list[dict[str, Any]]:
        call = reply.tool_call
        if call is None:
            return []
        return [{"functionCall": {"name": call.name, "args": dict(call.arguments)}}]

    def render(self, request: ChatRequest, reply: Reply) -> dict[str, Any]:
        text = [{"text": reply.text}] if reply.text or reply.tool_call is None else []
        parts = text + self._call_parts(reply)
        return self._finish(self._response(request, reply, parts, reply.output_tokens), reply)

    def stream_frames(self, request: ChatRequest, reply: Reply, chunk_words: int) -> list[bytes]:
        responses = []
        produced = ""
        for piece in split_text(reply.text, chunk_words):
            produced += piece
            parts: list[Any] = [{"text": piece}]
            responses.append(self._response(request, reply, parts, count_tokens(produced)))
        if reply.tool_call is not None or not responses:
            parts = self._call_parts(reply)
            responses.append(self._response(request, reply, parts, reply.output_tokens))
        self._finish(responses[-1], reply)
        return [sse_frame(response) for response in responses]

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        rpc_status = _STATUSES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        return {"error": {"code": status, "message": message, "status": rpc_status}}

    def context_error(self, limit: int, used: int) -> tuple[int, dict[str, Any]]:
        message = (
            f"The input token count ({used}) exceeds the maximum number of tokens "
            f"allowed ({limit})."
        )
        return 400, self.error_body(400, message)

    def malformed_frame(self) -> bytes:
        return b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"tru\n\n'
