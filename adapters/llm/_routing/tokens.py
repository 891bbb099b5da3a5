"""One token estimate before a call is sent: for rate limits (tpm), budgets (the cost reserved)
and the bill of a hedge cancelled after the provider started on it.

The prompt is counted with litellm's tokenizer for the model. A tokenizer that cannot read the
messages (an unknown model, an odd content part) must never fail the call it is for, so then the
prompt's text counts ``CHARS_PER_TOKEN`` characters a token (the usual rule for English). The
answer counts ``max_tokens``, or ``DEFAULT_OUTPUT_TOKENS`` when the call sets none.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

__all__ = ["CHARS_PER_TOKEN", "DEFAULT_OUTPUT_TOKENS", "answer_tokens", "call_tokens",
           "prompt_tokens"]

CHARS_PER_TOKEN: Final = 4
DEFAULT_OUTPUT_TOKENS: Final = 256      # assumed answer length when the call sets no max_tokens

log = logging.getLogger(__name__)


def prompt_tokens(model: str, messages: Sequence[Mapping[str, Any]]) -> int:
    """The prompt's tokens by litellm's counter for ``model``, else from its length."""
    from .litellm import count_tokens

    try:
        return count_tokens(model, messages)
    except Exception as exc:  # an estimate must never fail the call it is for
        estimate = sum(len(_text(m.get("content"))) for m in messages) // CHARS_PER_TOKEN
        log.debug("token_counter failed for %s (%s); estimating %d tokens from the length",
                  model, exc, estimate)
        return estimate


def answer_tokens(max_tokens: int | None) -> int:
    """The answer's tokens as the call bounds them: ``max_tokens``, else the default."""
    return DEFAULT_OUTPUT_TOKENS if max_tokens is None else max_tokens


def call_tokens(model: str, messages: Sequence[Mapping[str, Any]], max_tokens: int | None) -> int:
    """Prompt and answer: what a call may take of a tokens-per-minute limit."""
    return prompt_tokens(model, messages) + answer_tokens(max_tokens)


def _text(content: Any) -> str:
    """A message's text: a string, or the ``text`` of each part of a multi-part content."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, Sequence):
        return "".join(str(p.get("text") or "") if isinstance(p, Mapping) else str(p)
                       for p in content)
    return str(content)
