"""Google AI Studio (Gemini) wire format (``POST .../models/<model>:generateContent``).

Gemini puts the model and the streaming choice in the URL
(``:streamGenerateContent?alt=sse``; without ``alt=sse`` the stream is one JSON
array) and reports errors as Google RPC statuses. Google's JSON mapping accepts
lowerCamel and snake_case field names alike, and litellm sends a mix of both, so
every field is read in either spelling. countTokens, embedContent and the models
list are in ``endpoints_gemini.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from . import endpoints_gemini, validation
from .content import (
    ChatRequest,
    Choice,
    OutputSpec,
    Reply,
    count_tokens,
    join_texts,
    split_text,
    token_pieces,
)
from .wire import ErrorSpec, Meta, RequestError, Route, cache_prefix, optional_int, sse_frame, \
    stop_list
from .wire_gemini_parts import field, function_responses, parts, texts_of, tools

__all__ = ["GeminiWire"]

_PATH = re.compile(
    r"(?:v1beta/|v1/)?models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)"
)

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


def _tool_choice(body: Mapping[str, Any]) -> str | None:
    calling = field(field(body, "toolConfig"), "functionCallingConfig")
    mode = str(field(calling, "mode") or "AUTO").upper()
    allowed = field(calling, "allowedFunctionNames")
    if mode == "NONE":
        return "none"
    if mode == "ANY":
        return str(allowed[0]) if isinstance(allowed, list) and len(allowed) == 1 else "required"
    return None


def _output(config: object) -> OutputSpec | None:
    if str(field(config, "responseMimeType") or "") != "application/json":
        return None
    schema = field(config, "responseJsonSchema") or field(config, "responseSchema")
    return OutputSpec(schema if isinstance(schema, Mapping) else None)


def _thinking(config: object) -> tuple[int | None, bool]:
    """The thinking budget (None: off) and whether thoughts are returned as parts."""
    thinking = field(config, "thinkingConfig")
    if not isinstance(thinking, Mapping):
        return None, False
    budget = field(thinking, "thinkingBudget")
    include = bool(field(thinking, "includeThoughts"))
    if budget == 0:
        return None, False
    return (budget if isinstance(budget, int) and budget > 0 else 0), include


def _logprobs(text: str, top: int) -> dict[str, Any]:
    chosen = []
    tops = []
    for piece in token_pieces(text):
        logprob = -round(0.01 * (len(piece.strip()) % 7 + 1), 4)
        chosen.append({"token": piece, "logProbability": logprob})
        alternatives = [{"token": piece if r == 0 else f"{piece}{r}",
                         "logProbability": logprob - r} for r in range(top)]
        tops.append({"candidates": alternatives})
    return {"topCandidates": tops, "chosenCandidates": chosen}


class GeminiWire:
    """generateContent: ``x-goog-api-key`` auth, candidates/parts, SSE with ``alt=sse``."""

    name = "gemini"
    stream_content_type = "text/event-stream"

    def match(self, method: str, path: str, query: Mapping[str, str]) -> Route | None:
        found = _PATH.fullmatch(path)
        if found is None:
            return endpoints_gemini.match(method, path)
        streamed = found["method"] == "streamGenerateContent"
        return Route(model=found["model"], stream=streamed, method=method,
                     sse=query.get("alt") == "sse")

    def api_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return headers.get("x-goog-api-key") or query.get("key")

    def check(self, body: Mapping[str, Any], headers: Mapping[str, str], route: Route) -> None:
        if route.endpoint == "chat":
            validation.check_gemini(body)

    def endpoint(self, route: Route, body: Mapping[str, Any], seed: int) -> dict[str, Any]:
        if route.endpoint == "countTokens":
            request = field(body, "generateContentRequest")
            source = request if isinstance(request, Mapping) else body
            tokens = self.parse(source, route).input_tokens
            return {"totalTokens": tokens,
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}]}
        return endpoints_gemini.answer(route, body, seed)

    def parse(self, body: Mapping[str, Any], route: Route) -> ChatRequest:
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise RequestError("contents is not specified")
        if not all(isinstance(content, Mapping) for content in contents):
            raise RequestError("contents: every entry must be an object")
        system = texts_of(parts(field(body, "systemInstruction")))
        texts = list(system)
        for content in contents:
            texts += texts_of(parts(content)) + function_responses(parts(content))
        users = [c for c in contents if c.get("role", "user") == "user" and texts_of(parts(c))]
        results = function_responses(parts(contents[-1]))
        config = field(body, "generationConfig")
        config = config if isinstance(config, Mapping) else {}
        limit = optional_int(config, "maxOutputTokens", "max_output_tokens")
        earlier = list(contents[:-1])
        earlier_tokens = sum(count_tokens(t) for c in earlier for t in texts_of(parts(c)))
        thinking, _ = _thinking(config)
        top = field(config, "logprobs")
        wants_logprobs = bool(field(config, "responseLogprobs"))
        return ChatRequest(
            model=route.model or "gemini",
            texts=join_texts(texts),
            last_user_text="\n".join(texts_of(parts(users[-1]))) if users else "",
            stream=bool(route.stream),
            tools=tools(body.get("tools")),
            tool_choice=_tool_choice(body),
            tool_result="\n".join(results) if results else None,
            max_tokens=limit,
            body=body,
            system_text="\n".join(system),
            output=_output(config),
            stop=stop_list(field(config, "stopSequences"), "stopSequences"),
            n=optional_int(config, "candidateCount", "candidate_count") or 1,
            thinking=thinking,
            logprobs=(top if isinstance(top, int) else 0) if wants_logprobs else None,
            prefixes=(cache_prefix([route.model, earlier, body.get("tools")], earlier_tokens),),
            sse=route.sse,
        )

    @staticmethod
    def _usage(reply: Reply, output_tokens: int, thoughts: int) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "promptTokenCount": reply.input_tokens,
            "candidatesTokenCount": output_tokens - thoughts,
            "totalTokenCount": reply.input_tokens + output_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": reply.input_tokens}],
        }
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        if reply.cached_tokens:
            usage["cachedContentTokenCount"] = reply.cached_tokens
            usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": reply.cached_tokens}]
        return usage

    @staticmethod
    def _response(request: ChatRequest, reply: Reply, candidates: list[Any],
                  usage: dict[str, Any]) -> dict[str, Any]:
        return {
            "candidates": candidates,
            "usageMetadata": usage,
            "modelVersion": request.model,
            "responseId": reply.id,
        }

    @staticmethod
    def _finish(candidate: dict[str, Any], choice: Choice) -> dict[str, Any]:
        """Mark the last chunk of a candidate; Gemini says STOP for tool calls too."""
        candidate["finishReason"] = "MAX_TOKENS" if choice.finish == "length" else "STOP"
        return candidate

    @staticmethod
    def _call_parts(choice: Choice) -> list[dict[str, Any]]:
        return [{"functionCall": {"name": call.name, "args": dict(call.arguments)}}
                for call in choice.tool_calls]

    @staticmethod
    def _thought_parts(request: ChatRequest, choice: Choice) -> list[dict[str, Any]]:
        _, include = _thinking(field(request.body, "generationConfig"))
        return [{"text": choice.thinking, "thought": True}] if include and choice.thinking else []

    def render(self, request: ChatRequest, reply: Reply) -> dict[str, Any]:
        candidates = []
        for index, choice in enumerate(reply.choices):
            text = [{"text": choice.text}] if choice.text or not choice.tool_calls else []
            content = self._thought_parts(request, choice) + text + self._call_parts(choice)
            candidate = {"content": {"role": "model", "parts": content}, "index": index}
            if request.logprobs is not None:
                candidate["logprobsResult"] = _logprobs(choice.text, request.logprobs)
                candidate["avgLogprobs"] = -0.05
            candidates.append(self._finish(candidate, choice))
        usage = self._usage(reply, reply.output_tokens, reply.thinking_tokens)
        return self._response(request, reply, candidates, usage)

    def stream_frames(self, request: ChatRequest, reply: Reply, chunk_words: int) -> list[bytes]:
        responses = []
        choice = reply.choices[0]
        thoughts = self._thought_parts(request, choice)
        produced = ""
        pieces = split_text(choice.text, chunk_words)
        for number, piece in enumerate(pieces):
            produced += piece
            content: list[Any] = (thoughts if number == 0 else []) + [{"text": piece}]
            candidate = {"content": {"role": "model", "parts": content}, "index": 0}
            used = count_tokens(produced) + choice.thinking_tokens
            usage = self._usage(reply, used, choice.thinking_tokens)
            responses.append(self._response(request, reply, [candidate], usage))
        if choice.tool_calls or not responses:
            content = (thoughts if not responses else []) + self._call_parts(choice)
            candidate = {"content": {"role": "model", "parts": content}, "index": 0}
            usage = self._usage(reply, reply.output_tokens, reply.thinking_tokens)
            responses.append(self._response(request, reply, [candidate], usage))
        self._finish(responses[-1]["candidates"][0], choice)
        if request.sse:
            return [sse_frame(response) for response in responses]
        lines = [json.dumps(response) for response in responses]
        return [("[" if i == 0 else ",\r\n").encode() + line.encode()
                for i, line in enumerate(lines)] + [b"]"]

    def error_body(self, error: ErrorSpec, request_id: str) -> dict[str, Any]:
        status = error.status
        rpc_status = error.kind or _STATUSES.get(
            status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        body: dict[str, Any] = {"code": status, "message": error.message, "status": rpc_status}
        if status == 429:
            delay = error.retry_after if error.retry_after is not None else 1.0
            body["details"] = [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                 "violations": [{"quotaMetric": "generativelanguage.googleapis.com/"
                                 "generate_content_requests", "quotaId": error.code or
                                 "GenerateRequestsPerMinutePerProjectPerModel"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{delay:g}s"},
            ]
        return {"error": body}

    def headers(self, meta: Meta) -> dict[str, str]:
        return {"x-request-id": meta.request_id}

    def stream_error(self, error: ErrorSpec, request_id: str) -> bytes:
        return sse_frame(self.error_body(error, request_id))

    def context_error(self, limit: int, used: int) -> ErrorSpec:
        message = (
            f"The input token count ({used}) exceeds the maximum number of tokens "
            f"allowed ({limit})."
        )
        return ErrorSpec(400, message)

    def malformed_frame(self) -> bytes:
        return b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"tru\n\n'
