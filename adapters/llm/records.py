"""What a call produced: the response handed to the caller and the attempts behind it.

Plain dataclasses, no behaviour: they are built by the routing layer and read by sinks, the CLI
and callers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Attempt", "LLMResponse", "ToolCall", "Usage"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try against one deployment (or one deployment skipped because it was cooling down)."""

    deployment: str | None          # deployment id (``model_info.id``)
    model_group: str | None
    provider: str | None
    outcome: str                    # "ok" | "error" | "skipped"
    error_kind: str | None = None   # e.g. "ServiceUnavailable", "RateLimit", "Timeout"
    status: int | None = None       # HTTP status when the provider answered one
    latency_ms: float | None = None
    message: str | None = None      # short, secret-free description


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
    cost: float | None              # USD; None when the price is unknown (never a silent 0)
    latency_ms: float
    attempts: list[Attempt] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    ttft_ms: float | None = None    # time to first chunk, streams only
    call_id: str = ""
    raw: Any = field(default=None, repr=False)

    @property
    def fallback_used(self) -> bool:
        return any(a.outcome != "ok" for a in self.attempts)

    def __str__(self) -> str:
        return self.content
