"""Turning what litellm returned into an ``LLMResponse``."""

from __future__ import annotations

from typing import Any

from .pricing import Pricing, cost_breakdown
from .._observability.records import Attempt, LLMResponse, ToolCall, Usage


def usage_of(raw_usage: Any) -> Usage:
    """Exclusive token buckets from litellm's usage (whose prompt count includes cached tokens)."""
    if raw_usage is None:
        return Usage()
    prompt = _int(_get(raw_usage, "prompt_tokens"))
    output = _int(_get(raw_usage, "completion_tokens"))
    cached = _int(_get(_get(raw_usage, "prompt_tokens_details"), "cached_tokens")) or \
        _int(_get(raw_usage, "cache_read_input_tokens"))
    written = _int(_get(raw_usage, "cache_creation_input_tokens"))
    reasoning = _int(_get(_get(raw_usage, "completion_tokens_details"), "reasoning_tokens"))
    return Usage(input_tokens=max(prompt - cached - written, 0), output_tokens=output,
                 cached_tokens=cached, cache_write_tokens=written, reasoning_tokens=reasoning)


def tool_calls_of(message: Any) -> list[ToolCall]:
    calls = _get(message, "tool_calls") or []
    out = []
    for call in calls:
        function = _get(call, "function")
        out.append(ToolCall(id=str(_get(call, "id") or ""), name=str(_get(function, "name") or ""),
                            arguments=str(_get(function, "arguments") or "{}")))
    return out


def build_response(raw: Any, *, model: str, group: str, deployment_id: str, provider: str,
                   pricing: Pricing | None, attempts: list[Attempt], latency_ms: float,
                   call_id: str, ttft_ms: float | None = None) -> LLMResponse:
    """``model``: the group the caller asked for; ``group``: the group that answered (another
    one after a fallback)."""
    choice = (_get(raw, "choices") or [None])[0]
    message = _get(choice, "message")
    usage = usage_of(_get(raw, "usage"))
    costs = cost_breakdown(pricing, usage)
    return LLMResponse(
        content=str(_get(message, "content") or ""),
        model=model,
        answered_group=group,
        deployment=deployment_id,
        provider=provider,
        provider_model=_get(raw, "model"),
        usage=usage,
        cost=costs["total"] if costs else None,
        latency_ms=latency_ms,
        attempts=attempts,
        tool_calls=tool_calls_of(message),
        finish_reason=_get(choice, "finish_reason"),
        ttft_ms=ttft_ms,
        call_id=call_id,
        cost_details=costs,
        raw=raw,
    )


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    extra: Any = getattr(obj, "__pydantic_extra__", _NOT_PYDANTIC)
    if extra is _NOT_PYDANTIC:
        return getattr(obj, name, None)
    # A pydantic model keeps its fields in its __dict__ and the rest in its extras. A name
    # in neither is looked up on the class only if one there defines it: the AttributeError
    # of a missing field (litellm's Usage lacks its cache fields) is raised by pydantic's
    # metaclass in Python and costs more than all the rest.
    values = obj.__dict__
    if name in values:
        return values[name]
    if extra and name in extra:
        return extra[name]
    if any(name in vars(cls) for cls in type(obj).__mro__):
        return getattr(obj, name, None)
    return None


_NOT_PYDANTIC = object()


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) else 0
