"""Provider-neutral content: what the simulator answers, and how many tokens that is.

Every wire format parses its request into a :class:`ChatRequest`, asks
:func:`plan_reply` for a :class:`Reply` and renders it. Keeping the decision here
means the four providers answer the same request with the same text, tool calls and
token counts, so tests can compute the expected usage once. Content is a function of
the request and the scenario's seed; ids are fresh per response (see ``ids.py``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from .schema_answers import generate, seeded_rng

__all__ = [
    "CachePrefix",
    "ChatRequest",
    "Choice",
    "FinishReason",
    "OutputSpec",
    "Reply",
    "ToolCall",
    "ToolSpec",
    "count_tokens",
    "join_texts",
    "plan_reply",
    "split_fixed",
    "split_text",
    "text_of",
    "token_pieces",
    "truncate_tokens",
]

_TOKEN = re.compile(r"\w+|[^\w\s]")
_PIECE = re.compile(r"\s*(?:\w+|[^\w\s])")
_SUMMARY_WORDS = 40
_DIRECTIVE = re.compile(r"(?im)^\s*(?:always\s+)?(?:reply|answer|respond)\s+with:\s*(.+?)\s*$")
_DEFAULT_THINKING_WORDS = 24

FinishReason = Literal["stop", "length", "tool_calls"]


def count_tokens(text: str) -> int:
    """The simulator's tokenizer: words and single punctuation marks (cheap, easy to predict)."""
    return len(_TOKEN.findall(text))


def token_pieces(text: str) -> list[str]:
    """``text`` as its tokens, each with the whitespace before it (for logprobs)."""
    return _PIECE.findall(text)


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
class OutputSpec:
    """Structured output asked for: a JSON schema, or ``None`` for plain JSON mode."""

    schema: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class CachePrefix:
    """A prompt prefix a provider may cache: its identity and its size in tokens.

    ``explicit`` prefixes (Anthropic ``cache_control``) are written on first use and
    reported as such; implicit ones (OpenAI, Gemini) are only ever reported when read.
    """

    key: str
    tokens: int
    explicit: bool = False


@dataclass(frozen=True)
class ChatRequest:
    """What every wire format reduces a request to.

    ``texts`` holds every text the caller sent (system prompt, messages, tool
    results) and is what input tokens are counted over. ``tool_choice`` is ``None``
    for automatic, ``"none"``, ``"required"`` or the name of a forced tool.
    ``thinking`` is ``None`` when reasoning is off, else a budget in tokens (0: default).
    ``sse`` is False for a Gemini stream without ``alt=sse``: one JSON array instead.
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
    system_text: str = ""
    output: OutputSpec | None = None
    stop: tuple[str, ...] = ()
    n: int = 1
    parallel_tools: bool = True
    thinking: int | None = None
    logprobs: int | None = None
    prefixes: tuple[CachePrefix, ...] = ()
    sse: bool = True

    @cached_property
    def input_tokens(self) -> int:
        return sum(count_tokens(text) for text in self.texts)

    def content_key(self) -> str:
        """What the content depends on: model, texts and tools, not transport details."""
        tools = [(tool.name, json.dumps(tool.schema, sort_keys=True)) for tool in self.tools]
        return json.dumps([self.model, self.texts, tools], sort_keys=True, default=str)


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
class Choice:
    """One alternative answer (OpenAI ``n``, Gemini ``candidateCount``; usually just one)."""

    text: str
    finish: FinishReason
    tool_calls: tuple[ToolCall, ...] = ()
    thinking: str = ""
    stop_sequence: str | None = None

    @cached_property
    def thinking_tokens(self) -> int:
        return count_tokens(self.thinking)

    @cached_property
    def output_tokens(self) -> int:
        calls = sum(count_tokens(c.name) + count_tokens(c.arguments_json) for c in self.tool_calls)
        return count_tokens(self.text) + calls + self.thinking_tokens


@dataclass(frozen=True)
class Reply:
    """The answer, independent of wire format; usage always matches what is sent.

    ``input_tokens`` counts the whole prompt; ``cached_tokens`` of it were read from
    the provider's prompt cache and ``cache_write_tokens`` written to it.
    """

    id: str
    choices: tuple[Choice, ...]
    input_tokens: int
    cached_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def text(self) -> str:
        return self.choices[0].text

    @property
    def finish(self) -> FinishReason:
        return self.choices[0].finish

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return self.choices[0].tool_calls

    @property
    def output_tokens(self) -> int:
        return sum(choice.output_tokens for choice in self.choices)

    @property
    def thinking_tokens(self) -> int:
        return sum(choice.thinking_tokens for choice in self.choices)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def _summary(text: str) -> str:
    words = text.split()
    summary = " ".join(words[:_SUMMARY_WORDS])
    return summary + (" ..." if len(words) > _SUMMARY_WORDS else "")


def _pick_tools(request: ChatRequest, calls: int) -> list[ToolSpec]:
    """The tools to call, in order, or [] when the model should answer with text."""
    if not request.tools or request.tool_choice == "none" or request.tool_result is not None:
        return []
    forced = request.tool_choice
    if forced not in (None, "required", "auto"):
        return [tool for tool in request.tools if tool.name == forced][:1] or [request.tools[0]]
    count = calls if request.parallel_tools else 1
    return [request.tools[index % len(request.tools)] for index in range(count)]


def _base_text(request: ChatRequest, content: str | None) -> str:
    directive = _DIRECTIVE.search(request.system_text)
    if request.tool_result is not None:
        summary = _summary(request.tool_result)
        return f"Simulated answer from {request.model}: the tool returned {summary}"
    if content is not None:
        return content
    if directive is not None:
        return directive.group(1)
    if request.last_user_text.strip():
        return f"Simulated answer from {request.model}: {_summary(request.last_user_text)}"
    return f"Simulated answer from {request.model}."


def _structured_text(request: ChatRequest, output: OutputSpec, seed: int, index: int) -> str:
    """JSON mode answers ``{"answer": <the usual text>}``; a schema gets a value drawn from it."""
    if output.schema is None:
        return json.dumps({"answer": _base_text(request, None)})
    rng = seeded_rng(seed, "output", index, request.content_key(), request.system_text)
    return json.dumps(generate(output.schema, rng))


def _apply_limits(request: ChatRequest, text: str) -> tuple[str, FinishReason, str | None]:
    """Cut at the first stop sequence, then at ``max_tokens``."""
    hits = [(text.find(stop), stop) for stop in request.stop if stop and stop in text]
    stop_sequence = None
    if hits:
        position, stop_sequence = min(hits)
        text = text[:position]
    finish: FinishReason = "stop"
    if request.max_tokens is not None:
        text, cut = truncate_tokens(text, request.max_tokens)
        if cut:
            return text, "length", None
    return text, finish, stop_sequence


def _thinking(request: ChatRequest) -> str:
    if request.thinking is None:
        return ""
    words = request.thinking if request.thinking else _DEFAULT_THINKING_WORDS
    topic = _summary(request.last_user_text) or "the request"
    text = f"The user asks: {topic}. I consider what is asked and answer it directly."
    return " ".join(text.split()[: max(1, min(words, 200))])


def plan_reply(
    request: ChatRequest,
    content: str | None = None,
    *,
    new_id: Callable[[], str],
    seed: int = 0,
    tool_calls: int = 1,
    cached_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> Reply:
    """Decide the answer: tool calls, an answer to a tool result, structured output, or text.

    ``content`` (from the scenario) replaces the default text; tool calls still win
    when the request offers tools, so agent loops behave like a real model.
    ``new_id`` makes every id (the response's and each tool call's) fresh.
    """
    choices = []
    for index in range(max(1, request.n)):
        thinking = _thinking(request)
        tools = _pick_tools(request, tool_calls)
        if tools:
            calls = []
            for number, tool in enumerate(tools):
                rng = seeded_rng(seed, "tool", index, number, request.content_key())
                arguments = generate(tool.schema, rng) if tool.schema else {}
                if not isinstance(arguments, dict):
                    arguments = {}
                calls.append(ToolCall(new_id(), tool.name, arguments))
            choices.append(Choice("", "tool_calls", tuple(calls), thinking))
            continue
        if request.output is not None and request.tool_result is None:
            text = _structured_text(request, request.output, seed, index)
        else:
            text = _base_text(request, content)
            if index:
                text = f"{text} (choice {index + 1})"
        text, finish, stop_sequence = _apply_limits(request, text)
        choices.append(Choice(text, finish, (), thinking, stop_sequence))
    return Reply(new_id(), tuple(choices), request.input_tokens, cached_tokens, cache_write_tokens)


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
