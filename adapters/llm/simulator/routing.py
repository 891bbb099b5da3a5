"""Answers that do not belong to one endpoint: unknown paths and exhausted rate limits.

A path no provider serves still gets a 404 in the shape its caller expects, so the
provider is guessed from what the client sent (its auth header, the path's style).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from .state import Limits
from .wire import ErrorSpec

__all__ = ["guess_provider", "not_found_message", "rate_limit_error"]


def guess_provider(path: str, headers: Mapping[str, str], query: Mapping[str, str]) -> str:
    """The provider whose client most likely sent a request to an unknown ``path``."""
    if "anthropic-version" in headers or "x-api-key" in headers:
        return "anthropic"
    if "x-goog-api-key" in headers or "key" in query or path.startswith(("v1beta/", "models/")):
        return "gemini"
    if path.startswith("api/"):
        return "ollama"
    return "openai"


def not_found_message(provider: str, method: str, path: str) -> str:
    if provider == "openai":
        return f"Invalid URL ({method} /v1/{path.removeprefix('v1/')})"
    if provider == "anthropic":
        return "Not Found"
    if provider == "gemini":
        return f"Method not found: {method} /{path} (the simulator serves no provider here)"
    return "404 page not found"


def rate_limit_error(limits: Limits) -> ErrorSpec:
    """The 429 for a request the scenario's rate limit refuses."""
    if limits.exceeded == "tokens":
        message = (f"Rate limit reached on tokens per min (TPM): Limit {limits.tokens_limit}, "
                   f"Remaining {limits.tokens_remaining}. Please try again in "
                   f"{limits.reset_s:.1f}s.")
    else:
        message = (f"Rate limit reached on requests per min (RPM): Limit "
                   f"{limits.requests_limit}, Used {limits.requests_limit}. Please try again in "
                   f"{limits.reset_s:.1f}s.")
    # Retry-After in whole seconds, rounded up, as the vendors send it
    retry_after = float(max(1, math.ceil(limits.reset_s)))
    return ErrorSpec(429, message, code="rate_limit_exceeded", retry_after=retry_after)
