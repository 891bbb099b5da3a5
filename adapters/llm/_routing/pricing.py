"""What a call cost, by token class, from the config's prices or litellm's price map.

Prices in the config (``model_info`` or ``litellm_params``: ``input_cost_per_token``,
``output_cost_per_token``, ``cache_read_input_token_cost``, ``cache_creation_input_token_cost``)
win over litellm's map. A model priced nowhere costs ``None``: an unknown price is never
reported as $0 (litellm's Router reports 0.0 for such models).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .tokens import answer_tokens, prompt_tokens
from .._observability.records import Usage

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Pricing", "cost_breakdown", "estimate_cost", "pricing_for"]


_PRICE_KEYS = ("input_cost_per_token", "output_cost_per_token",
               "cache_read_input_token_cost", "cache_creation_input_token_cost")


@dataclass(frozen=True, slots=True)
class Pricing:
    """USD per token for each class; cache prices default to the input price when unknown."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    source: str = "litellm"         # "config" | "litellm"


def pricing_for(litellm_params: Mapping[str, Any], model_info: Mapping[str, Any],
                model_cost: Mapping[str, Any]) -> Pricing | None:
    """The pricing of one deployment, or None when no price is known."""
    for source in (model_info, litellm_params):
        if source.get("input_cost_per_token") is not None or \
                source.get("output_cost_per_token") is not None:
            return _from_entry(source, "config")
    model = str(litellm_params.get("model", ""))
    candidates = [model_info.get("base_model"), model, model.split("/", 1)[-1]]
    for name in candidates:
        entry = model_cost.get(name) if isinstance(name, str) else None
        if entry and entry.get("input_cost_per_token") is not None:
            return _from_entry(entry, "litellm")
    return None


def cost_breakdown(pricing: Pricing | None, usage: Usage) -> dict[str, float] | None:
    """Cost by class (``input``, ``cached``, ``cache_write``, ``output``) plus ``total``."""
    if pricing is None:
        return None
    parts = {
        "input": usage.input_tokens * pricing.input,
        "cached": usage.cached_tokens * _or(pricing.cache_read, pricing.input),
        "cache_write": usage.cache_write_tokens * _or(pricing.cache_write, pricing.input),
        "output": usage.output_tokens * pricing.output,
    }
    parts["total"] = sum(parts.values())
    return parts


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _from_entry(entry: Mapping[str, Any], source: str) -> Pricing:
    def price(key: str) -> float | None:
        value = entry.get(key)
        return float(value) if isinstance(value, (int, float)) else None

    return Pricing(input=price("input_cost_per_token") or 0.0,
                   output=price("output_cost_per_token") or 0.0,
                   cache_read=price("cache_read_input_token_cost"),
                   cache_write=price("cache_creation_input_token_cost"),
                   source=source)


def estimate_cost(model: str, prices: Sequence[Pricing | None], messages: list[dict[str, Any]],
                  max_tokens: int | None) -> float:
    """What a call may cost, before sending it: the input counted with litellm's tokenizer (as
    ``model`` counts them), the output at ``max_tokens`` (or a default), at the dearest of the
    group's deployments' ``prices``. Unknown prices estimate 0: the budget is then settled on
    the recorded cost."""
    prompt = prompt_tokens(model, messages)
    output = answer_tokens(max_tokens)
    return max((prompt * p.input + output * p.output for p in prices if p is not None),
               default=0.0)
