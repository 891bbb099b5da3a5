"""Deterministic embedding vectors and the model names the list endpoints report.

A vector depends only on the text, its size and the scenario's seed, and has unit
length, so cosine similarity of a text with itself is 1 and the same text always
embeds the same way across runs and providers.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Mapping
from types import MappingProxyType

from .schema_answers import seeded_rng

__all__ = ["LISTED_MODELS", "as_base64", "vector"]

LISTED_MODELS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "openai": ("gpt-4o", "gpt-4o-mini", "o3-mini", "text-embedding-3-small"),
    "anthropic": ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"),
    "gemini": ("gemini-2.5-flash", "gemini-2.5-pro", "text-embedding-004"),
    "ollama": ("llama3.2:latest", "nomic-embed-text:latest"),
})
"""What each provider's models list answers (any name is still served unless restricted)."""


def vector(text: str, dimensions: int, seed: int) -> list[float]:
    """A unit-length vector for ``text``."""
    rng = seeded_rng(seed, "embedding", text)
    raw = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [round(x / norm, 6) for x in raw]


def as_base64(values: list[float]) -> str:
    """Little-endian float32, base64: what OpenAI sends for ``encoding_format=base64``."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
