"""Provider-neutral content: what the simulator answers, and how many tokens that is.

Every wire format parses its request into a :class:`ChatRequest`, asks
:func:`plan_reply` for a :class:`Reply` and renders it. Keeping the decision here
means the four providers answer the same request with the same text, tool call and
token counts, so tests can compute the expected usage once.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ChatRequest",
    "FinishReason",
    "Reply",
    "ToolCall",
    "ToolSpec",
    "count_tokens",
    "join_texts",
    "plan_reply",
    "split_fixed",
    "split_text",
    "synthesize_arguments",
    "text_of",
    "truncate_tokens",
]

_TOKEN = re.compile(r"\w+|[^\w\s]")
_SUMMARY_WORDS = 40

FinishReason = Literal["stop", "length", "tool_calls"]


def count_tokens(text: str) -> int:
    """The simulator's tokenizer: words and single punctuation marks (cheap, easy to predict)."""
    return len(_TOKEN.findall(text))


def truncate_tokens(text: str, limit: int) -> tuple[str, bool]:
    """Cut ``text`` after ``limit`` tokens; the prefix re-tokenizes to exactly ``limit`` tokens."""
    if limit <= 0:
        return "", bool(_TOKEN.search(text))
    for index, match in enumerate(_TOKEN.finditer(text), start=1):
        if index == limit:
            rest = text[match.end() :]
            return text[: match.end()], bool(_TOKEN.search(rest))
    return text, False


def text_of(value: object) -> str:
    """Flatten a provider content value (string, parts list, dict) into plain text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        for key in ("text", "content"):
            if key in value:
                return text_of(value[key])
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, Sequence):
        return "\n".join(part for part in (text_of(item) for item in value) if part)
    return str(value)


@dataclass(frozen=True)
class ToolSpec:
    """A tool the caller offered: its name and JSON schema for the arguments."""

    name: str
    schema: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChatRequest:
    """What every wire format reduces a request to.

    ``texts`` holds every text the caller sent (system prompt, messages, tool
    results) and is what input tokens are counted over. ``tool_choice`` is ``None``
    for automatic, ``"none"``, ``"required"`` or the name of a forced tool.
    """

    model: str
    texts: tuple[str, ...]
    last_user_text: str
    stream: bool
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str | None = None
    tool_result: str | None = None
    max_tokens: int | None = None
    body: Mapping[str, Any] = field(default_factory=dict)

    @property
    def input_tokens(self) -> int:
        return sum(count_tokens(text) for text in self.texts)

    def digest(self) -> str:
        """A stable short hash of the request, used for deterministic ids."""
        canonical = json.dumps(self.body, sort_keys=True, default=str).encode()
        return hashlib.sha256(canonical).hexdigest()[:24]


@dataclass(frozen=True)
class ToolCall:
    """A tool call the simulated model makes."""

    id: str
    name: str
    arguments: Mapping[str, Any]

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments, separators=(",", ":"))


@dataclass(frozen=True)
class Reply:
    """The answer, independent of wire format; usage always matches what is sent."""

    text: str
    finish: FinishReason
    input_tokens: int
    output_tokens: int
    tool_call: ToolCall | None = None
    id: str = ""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def _summary(text: str) -> str:
    words = text.split()
    summary = " ".join(words[:_SUMMARY_WORDS])
    return summary + (" ..." if len(words) > _SUMMARY_WORDS else "")


def _schema_type(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), None)
    return str(kind).lower() if kind is not None else ""


def synthesize_arguments(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Fill the required properties of an object schema with plausible placeholder values."""
    value = _example(schema)
    return value if isinstance(value, dict) else {}


def _example(schema: Mapping[str, Any]) -> Any:
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for combinator in ("anyOf", "oneOf", "allOf"):
        options = schema.get(combinator)
        if isinstance(options, list) and options and isinstance(options[0], Mapping):
            return _example(options[0])
    kind = _schema_type(schema)
    if kind in ("number", "integer"):
        return 1
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties")
        required = schema.get("required")
        if not isinstance(properties, Mapping) or not isinstance(required, list):
            return {}
        filled = {}
        for name in required:
            if name in properties:
                value = properties[name]
                filled[name] = _example(value) if isinstance(value, Mapping) else "example"
        return filled
    return "example"


def _pick_tool(request: ChatRequest) -> ToolSpec | None:
    """The tool to call, or None when the model should answer with text."""
    if not request.tools or request.tool_choice == "none" or request.tool_result is not None:
        return None
    forced = request.tool_choice
    if forced not in (None, "required", "auto"):
        for tool in request.tools:
            if tool.name == forced:
                return tool
    return request.tools[0]


def plan_reply(request: ChatRequest, content: str | None = None) -> Reply:
    """Decide the answer: a tool call, an answer to a tool result, or text.

    ``content`` (from the scenario) replaces the default text; a tool call still
    wins when the request offers tools, so agent loops behave like a real model.
    """
    digest = request.digest()
    tool = _pick_tool(request)
    if tool is not None:
        call = ToolCall(id=digest, name=tool.name, arguments=synthesize_arguments(tool.schema))
        output = count_tokens(call.name) + count_tokens(call.arguments_json)
        return Reply("", "tool_calls", request.input_tokens, output, tool_call=call, id=digest)
    if request.tool_result is not None:
        summary = _summary(request.tool_result)
        text = f"Simulated answer from {request.model}: the tool returned {summary}"
    elif content is not None:
        text = content
    elif request.last_user_text.strip():
        text = f"Simulated answer from {request.model}: {_summary(request.last_user_text)}"
    else:
        text = f"Simulated answer from {request.model}."
    finish: FinishReason = "stop"
    if request.max_tokens is not None:
        text, cut = truncate_tokens(text, request.max_tokens)
        finish = "length" if cut else "stop"
    return Reply(text, finish, request.input_tokens, count_tokens(text), id=digest)


def split_text(text: str, words_per_chunk: int) -> list[str]:
    """Split text into stream pieces of ``words_per_chunk`` words that concatenate back exactly."""
    words = re.findall(r"\s*\S+|\s+$", text)
    size = max(1, words_per_chunk)
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


def split_fixed(text: str, size: int = 16) -> list[str]:
    """Split tool-call JSON into fixed-size pieces, the way providers stream arguments."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def join_texts(parts: Iterable[str]) -> tuple[str, ...]:
    """Keep only the non-empty texts (empty ones count zero tokens anyway)."""
    return tuple(part for part in parts if part)
