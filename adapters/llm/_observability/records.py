"""What a call produced: the response handed to the caller and the attempts behind it.

Plain dataclasses, no behaviour: they are built by the routing layer and read by sinks, the CLI
and callers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Attempt", "CallRecord", "LLMResponse", "ToolCall", "Usage"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try against one deployment (or one deployment skipped because it was cooling down).

    A hedge's loser is ``outcome="cancelled"``, ``error_kind="hedge_lost"``; its ``cost`` is what
    the provider bills for a request it started on: the input tokens at the input price.
    """

    deployment: str | None          # deployment id (``model_info.id``)
    model_group: str | None
    provider: str | None
    outcome: str                    # "ok" | "error" | "skipped" | "cancelled"
    error_kind: str | None = None   # e.g. "unavailable", "rate_limit", "timeout", "hedge_lost"
    status: int | None = None       # HTTP status when the provider answered one
    latency_ms: float | None = None
    message: str | None = None      # short, secret-free description
    cost: float | None = None       # USD estimate of a cancelled attempt; None: not billed/unknown


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts in non-overlapping buckets: ``input`` excludes cached reads and cache writes."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0          # prompt tokens read from the provider's cache
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0       # part of output_tokens, reported for information

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.cached_tokens + self.cache_write_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str                  # JSON text, as the provider produced it

    def parsed_arguments(self) -> Any:
        import json

        return json.loads(self.arguments or "{}")


@dataclass(slots=True)
class LLMResponse:
    """The answer to one ``generate`` call."""

    content: str
    model: str                      # the model group that was asked for
    deployment: str | None          # the deployment id that answered
    provider: str | None            # e.g. "anthropic", "openai"
    provider_model: str | None      # the provider's model name, e.g. "claude-sonnet-4"
    usage: Usage
    cost: float | None              # USD; None when the price is unknown (never a silent 0).
                                    # Includes the hedge losers' cost (``cost_details["hedge"]``)
    latency_ms: float
    attempts: list[Attempt] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    ttft_ms: float | None = None    # time to first chunk, streams only
    call_id: str = ""
    trace_id: str = ""              # the Langfuse trace the call was recorded in (for llm.score)
    cache_hit: bool = False         # answered from the response cache: cost 0
    cost_saved: float | None = None # on a cache hit, what the original answer cost
    # by token class: input, cached, cache_write, output, total
    cost_details: dict[str, float] | None = None
    overhead_ms: float | None = None  # latency outside every provider HTTP exchange of the call
                                      # (streams: up to the first chunk; cache hits: all of it)
    hedged: bool = False            # a hedge attempt was raced against the first one
    answered_group: str | None = None  # the model group that answered: ``model`` unless a
                                       # fallback group did (None only for hand-made responses)
    raw: Any = field(default=None, repr=False)

    @property
    def fallback_used(self) -> bool:
        """Another deployment answered because one failed or was skipped (not a lost hedge)."""
        return any(a.outcome not in ("ok", "cancelled") for a in self.attempts)

    def __str__(self) -> str:
        return self.content


@dataclass(slots=True)
class CallRecord:
    """Everything about one ``generate`` call (answered, failed or served from cache).

    Built once when the call ends and handed to the sinks (local store, Langfuse); ``input``
    and ``output`` are already masked when masking is configured.
    """

    call_id: str                    # 32 hex
    trace_id: str                   # 32 hex, the Langfuse trace
    span_id: str                    # 16 hex, the Langfuse generation (observation) id
    parent_span_id: str | None      # the caller's span when the call ran inside one
    started_at: float               # unix seconds
    ended_at: float
    environment: str
    model_group: str                # the model group asked for (``response.model``)
    status: str                     # "ok" | "error"
    latency_ms: float
    deployment: str | None = None
    provider: str | None = None
    provider_model: str | None = None
    answered_group: str | None = None   # the model group that answered; None: nothing did
    error_kind: str | None = None
    error_message: str | None = None
    ttft_ms: float | None = None
    usage: Usage = field(default_factory=Usage)
    cost: float | None = None       # None: unknown price
    cost_details: dict[str, float] | None = None   # input, cached, cache_write, output, total
    cache_hit: bool = False
    cost_saved: float | None = None
    hedged: bool = False
    prompt_name: str | None = None
    prompt_version: int | None = None
    prompt_variant: str | None = None
    prompt_source: str | None = None   # "langfuse" | "local" | "fallback"
    session_id: str | None = None
    user_id: str | None = None
    agent: str | None = None
    stage: str | None = None
    trace_name: str | None = None
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)   # every other metadata key
    input: list[dict[str, Any]] = field(default_factory=list)
    output: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    model_parameters: dict[str, Any] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    stream: bool = False
