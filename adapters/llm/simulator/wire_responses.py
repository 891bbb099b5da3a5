"""OpenAI Responses API wire format (``POST .../responses``): a minimal, SDK-valid subset.

Text and function-call output items, ``instructions``, ``text.format`` structured
output (what ``client.responses.parse`` sends), reasoning effort, usage details and
the streamed ``response.*`` events; errors and headers are OpenAI's.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .content import ChatRequest, OutputSpec, Reply, ToolSpec, count_tokens, join_texts, split_text
from .wire import ErrorSpec, Meta, RequestError, Route, bearer, cache_prefix, optional_int, \
    ranged, sse_frame, tool_spec
from .wire_openai import message_text, openai_error, openai_headers

__all__ = ["ResponsesWire"]

_PATHS = frozenset({"responses", "v1/responses"})


def _items(value: object) -> list[Mapping[str, Any]]:
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if isinstance(value, list) and value and all(isinstance(item, Mapping) for item in value):
        return list(value)
    raise RequestError("'input' must be a string or a non-empty list of input items",
                       param="input")


def _tools(value: object) -> tuple[ToolSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RequestError("tools must be a list", param="tools")
    return tuple(tool_spec(t.get("name"), t.get("parameters"), f"tools[{i}]")
                 for i, t in enumerate(value)
                 if isinstance(t, Mapping) and t.get("type") == "function")


def _output(text: object) -> OutputSpec | None:
    format_ = text.get("format") if isinstance(text, Mapping) else None
    if not isinstance(format_, Mapping):
        return None
    if format_.get("type") == "json_object":
        return OutputSpec(None)
    if format_.get("type") == "json_schema":
        schema = format_.get("schema")
        return OutputSpec(schema if isinstance(schema, Mapping) else {})
    return None


def _tool_choice(value: object) -> str | None:
    if isinstance(value, str):
        return None if value == "auto" else value
    if isinstance(value, Mapping) and isinstance(value.get("name"), str):
        return str(value["name"])
    return None


class ResponsesWire:
    """``/responses``: Bearer auth, ``response`` objects, typed SSE events."""

    name = "openai"
    stream_content_type = "text/event-stream"

    def match(self, method: str, path: str, query: Mapping[str, str]) -> Route | None:
        return Route(endpoint="responses", method=method) if path in _PATHS and \
            method == "POST" else None

    def api_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return bearer(headers) or headers.get("api-key")

    def check(self, body: Mapping[str, Any], headers: Mapping[str, str], route: Route) -> None:
        ranged(body, "temperature", 0, 2)
        ranged(body, "top_p", 0, 1)

    def endpoint(self, route: Route, body: Mapping[str, Any], seed: int) -> dict[str, Any]:
        raise RequestError("the Responses API has no such endpoint here", status=404)

    def parse(self, body: Mapping[str, Any], route: Route) -> ChatRequest:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise RequestError("Missing required parameter: 'model'.", param="model")
        items = _items(body.get("input"))
        instructions = body.get("instructions")
        system = instructions if isinstance(instructions, str) else ""
        texts = [system]
        users, result = [], None
        for item in items:
            kind = item.get("type", "message")
            if kind == "function_call_output":
                output = str(item.get("output", ""))
                texts.append(output)
                result = output
                continue
            if kind != "message":
                continue
            text = message_text(item.get("content"))
            texts.append(text)
            if item.get("role") in ("system", "developer"):
                system = "\n".join(filter(None, [system, text]))
            if item.get("role") == "user":
                users.append(text)
                result = None
        reasoning = body.get("reasoning")
        effort = reasoning.get("effort") if isinstance(reasoning, Mapping) else None
        earlier = list(items[:-1])
        return ChatRequest(
            model=model,
            texts=join_texts(texts),
            last_user_text=users[-1] if users else "",
            stream=bool(body.get("stream")),
            tools=_tools(body.get("tools")),
            tool_choice=_tool_choice(body.get("tool_choice")),
            tool_result=result,
            max_tokens=optional_int(body, "max_output_tokens"),
            body=body,
            system_text=system,
            output=_output(body.get("text")),
            parallel_tools=body.get("parallel_tool_calls") is not False,
            thinking=0 if effort not in (None, "none", "minimal") else None,
            prefixes=(cache_prefix([model, instructions, earlier],
                                   count_tokens(system) + sum(count_tokens(message_text(
                                       i.get("content"))) for i in earlier)),),
        )

    @staticmethod
    def _output_items(reply: Reply) -> list[dict[str, Any]]:
        choice = reply.choices[0]
        items: list[dict[str, Any]] = []
        if choice.thinking:
            items.append({"type": "reasoning", "id": f"rs_{reply.id}", "summary": []})
        if choice.text or not choice.tool_calls:
            text = {"type": "output_text", "text": choice.text, "annotations": [], "logprobs": []}
            items.append({"type": "message", "id": f"msg_{reply.id}", "status": "completed",
                          "role": "assistant", "content": [text]})
        for call in choice.tool_calls:
            items.append({"type": "function_call", "id": f"fc_{call.id}",
                          "call_id": f"call_{call.id}", "name": call.name,
                          "arguments": call.arguments_json, "status": "completed"})
        return items

    def render(self, request: ChatRequest, reply: Reply, status: str = "completed"
               ) -> dict[str, Any]:
        incomplete = reply.finish == "length" and status == "completed"
        body = request.body
        text = body.get("text") if isinstance(body.get("text"), Mapping) else None
        return {
            "id": f"resp_{reply.id}",
            "object": "response",
            "created_at": int(time.time()),
            "status": "incomplete" if incomplete else status,
            "model": request.model,
            "output": self._output_items(reply) if status == "completed" else [],
            "parallel_tool_calls": request.parallel_tools,
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": list(body.get("tools") or []),
            "instructions": body.get("instructions"),
            "metadata": dict(body.get("metadata") or {}),
            "temperature": body.get("temperature", 1.0),
            "top_p": body.get("top_p", 1.0),
            "text": text or {"format": {"type": "text"}},
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "usage": {
                "input_tokens": reply.input_tokens,
                "input_tokens_details": {"cached_tokens": reply.cached_tokens},
                "output_tokens": reply.output_tokens,
                "output_tokens_details": {"reasoning_tokens": reply.thinking_tokens},
                "total_tokens": reply.total_tokens,
            } if status == "completed" else None,
        }

    def stream_frames(self, request: ChatRequest, reply: Reply, chunk_words: int) -> list[bytes]:
        events: list[dict[str, Any]] = []

        def emit(kind: str, **data: Any) -> None:
            events.append({"type": kind, "sequence_number": len(events), **data})

        pending = self.render(request, reply, "in_progress")
        emit("response.created", response=pending)
        emit("response.in_progress", response=pending)
        for index, item in enumerate(self._output_items(reply)):
            at = {"output_index": index, "item_id": item["id"]}
            if item["type"] != "message":
                emit("response.output_item.added", output_index=index, item=item)
                emit("response.output_item.done", output_index=index, item=item)
                continue
            part = item["content"][0]
            emit("response.output_item.added", output_index=index,
                 item={**item, "status": "in_progress", "content": []})
            emit("response.content_part.added", **at, content_index=0,
                 part={**part, "text": ""})
            for piece in split_text(part["text"], chunk_words):
                emit("response.output_text.delta", **at, content_index=0, delta=piece,
                     logprobs=[])
            emit("response.output_text.done", **at, content_index=0, text=part["text"],
                 logprobs=[])
            emit("response.content_part.done", **at, content_index=0, part=part)
            emit("response.output_item.done", output_index=index, item=item)
        emit("response.completed", response=self.render(request, reply))
        return [sse_frame(event, str(event["type"])) for event in events]

    def error_body(self, error: ErrorSpec, request_id: str) -> dict[str, Any]:
        return openai_error(error)

    def headers(self, meta: Meta) -> dict[str, str]:
        return openai_headers(meta)

    def stream_error(self, error: ErrorSpec, request_id: str) -> bytes:
        body = openai_error(error)["error"]
        event = {"type": "error", "sequence_number": 0, "code": body["code"] or body["type"],
                 "message": body["message"], "param": body["param"]}
        return sse_frame(event, "error")

    def context_error(self, limit: int, used: int) -> ErrorSpec:
        message = (f"Your input exceeds the context window of this model ({limit} tokens; "
                   f"the input has {used}). Please adjust your input and try again.")
        return ErrorSpec(400, message, "invalid_request_error", "context_length_exceeded",
                         "input")

    def malformed_frame(self) -> bytes:
        return b'event: response.output_text.delta\ndata: {"type":"response.output_text.de\n\n'
