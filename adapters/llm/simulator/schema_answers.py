"""Values generated from a JSON schema: structured-output answers and tool-call arguments.

The simulated model answers a schema with a value that validates against it, drawn
from a seeded RNG so the same request gets the same value run after run. Schemas come
in three dialects that mostly share keywords: JSON Schema (OpenAI, Anthropic, Ollama,
pydantic's ``$defs``/``$ref``), Google's OpenAPI subset (upper-case ``type``,
``nullable``, ``propertyOrdering``) and either of them with snake_case keys.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["generate", "seeded_rng"]

_WORDS = (
    "amber", "birch", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "iris", "juniper",
    "kelp", "lumen", "maple", "nectar", "onyx", "pine", "quartz", "river", "sage", "tundra",
)
_FORMATS: Mapping[str, str] = {
    "date": "2025-01-{day:02d}",
    "date-time": "2025-01-{day:02d}T12:00:00Z",
    "time": "12:{day:02d}:00",
    "duration": "P{day}D",
    "email": "{word}@example.com",
    "hostname": "{word}.example.com",
    "uri": "https://example.com/{word}",
    "url": "https://example.com/{word}",
    "ipv4": "192.0.2.{day}",
    "ipv6": "2001:db8::{day}",
    "uuid": "00000000-0000-4000-8000-0000000000{day:02d}",
}
_MAX_DEPTH = 8


def seeded_rng(*parts: object) -> random.Random:
    """An RNG whose draws depend only on ``parts`` (not on Python's per-process hash seed)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _get(schema: Mapping[str, Any], camel: str) -> Any:
    """``schema[camel]`` or its snake_case spelling (``min_items`` for ``minItems``)."""
    if camel in schema:
        return schema[camel]
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()
    return schema.get(snake)


def _types(schema: Mapping[str, Any]) -> list[str]:
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
    return [str(k).lower() for k in kinds if k is not None]


class _Generator:
    """One generation: the RNG and the root schema (for ``$ref`` into ``$defs``)."""

    def __init__(self, root: Mapping[str, Any], rng: random.Random) -> None:
        self.root = root
        self.rng = rng

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#"):
            return schema
        target: Any = self.root
        for part in ref.lstrip("#").strip("/").split("/"):
            if not part:
                continue
            if not isinstance(target, Mapping) or part not in target:
                return {}
            target = target[part]
        if not isinstance(target, Mapping):
            return {}
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return {**target, **rest}

    def value(self, raw: object, depth: int = 0) -> Any:
        if not isinstance(raw, Mapping):
            return self.word()
        schema = self.resolve(raw)
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return self.rng.choice(enum)
        for key in ("anyOf", "oneOf"):
            options = _get(schema, key)
            if isinstance(options, list) and options:
                usable = [o for o in options if isinstance(o, Mapping) and _types(o) != ["null"]]
                return self.value(self.rng.choice(usable or options), depth + 1)
        all_of = _get(schema, "allOf")
        if isinstance(all_of, list) and all_of:
            merged: dict[str, Any] = {}
            for part in all_of:
                if isinstance(part, Mapping):
                    merged.update(self.resolve(part))
            merged.update({k: v for k, v in schema.items() if k not in ("allOf", "all_of")})
            return self.value(merged, depth + 1)
        kinds = [k for k in _types(schema) if k != "null"]
        if not kinds:
            if "properties" in schema:
                kinds = ["object"]
            elif "items" in schema:
                kinds = ["array"]
            elif _types(schema) == ["null"]:
                return None
            else:
                kinds = ["string"]
        kind = kinds[0]
        if kind == "object":
            return self.object(schema, depth)
        if kind == "array":
            return self.array(schema, depth)
        if kind == "integer":
            return int(self.number(schema, integer=True))
        if kind == "number":
            return self.number(schema, integer=False)
        if kind == "boolean":
            return self.rng.random() < 0.5
        return self.string(schema)

    def word(self) -> str:
        return self.rng.choice(_WORDS)

    def string(self, schema: Mapping[str, Any]) -> str:
        day = self.rng.randint(1, 28)
        template = _FORMATS.get(str(schema.get("format", "")).lower())
        text = template.format(day=day, word=self.word()) if template else \
            f"{self.word()} {self.word()}"
        pattern = schema.get("pattern")
        if isinstance(pattern, str) and not _matches(pattern, text):
            text = next((c for c in _pattern_candidates(day) if _matches(pattern, c)), text)
        low = _get(schema, "minLength")
        high = _get(schema, "maxLength")
        if isinstance(low, int) and len(text) < low:
            text = (text + " " + self.word()) * (low // max(len(text), 1) + 1)
        if isinstance(high, int) and high >= 0:
            text = text[:high]
        if isinstance(low, int) and len(text) < low:
            text = text.ljust(low, "x")
        return text

    def number(self, schema: Mapping[str, Any], *, integer: bool) -> float:
        low = _get(schema, "minimum")
        high = _get(schema, "maximum")
        ex_low = _get(schema, "exclusiveMinimum")
        ex_high = _get(schema, "exclusiveMaximum")
        lo = float(low) if isinstance(low, (int, float)) else None
        hi = float(high) if isinstance(high, (int, float)) else None
        step = 1.0 if integer else 0.5
        if isinstance(ex_low, (int, float)) and not isinstance(ex_low, bool):
            lo = max(lo, float(ex_low) + step) if lo is not None else float(ex_low) + step
        if isinstance(ex_high, (int, float)) and not isinstance(ex_high, bool):
            hi = min(hi, float(ex_high) - step) if hi is not None else float(ex_high) - step
        if lo is None:
            lo = 0.0 if hi is None or hi >= 0 else hi - 100
        if hi is None:
            hi = lo + 100
        if hi < lo:
            hi = lo
        multiple = _get(schema, "multipleOf")
        if isinstance(multiple, (int, float)) and multiple > 0:
            first = -(-lo // multiple) * multiple
            count = int((hi - first) // multiple)
            value = first + multiple * self.rng.randint(0, max(count, 0))
            return float(int(value)) if integer else float(value)
        if integer:
            return float(self.rng.randint(int(-(-lo // 1)), max(int(hi // 1), int(-(-lo // 1)))))
        return round(self.rng.uniform(lo, hi), 2) if hi > lo else lo

    def array(self, schema: Mapping[str, Any], depth: int) -> list[Any]:
        low = _get(schema, "minItems")
        high = _get(schema, "maxItems")
        lo = low if isinstance(low, int) else 1
        hi = high if isinstance(high, int) else max(lo, 3)
        if depth >= _MAX_DEPTH:
            hi = lo
        count = self.rng.randint(lo, max(lo, hi))
        prefix = _get(schema, "prefixItems")
        items = prefix if isinstance(prefix, list) else []
        values = [self.value(item, depth + 1) for item in items[:count]]
        unique = bool(_get(schema, "uniqueItems"))
        attempts = 0
        while len(values) < count and attempts < count * 10:
            attempts += 1
            candidate = self.value(schema.get("items"), depth + 1)
            if unique and candidate in values:
                continue
            values.append(candidate)
        return values

    def object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return {}
        required = schema.get("required")
        needed = set(required) if isinstance(required, list) else set()
        order = _get(schema, "propertyOrdering")
        names: Sequence[str] = order if isinstance(order, list) else list(properties)
        result: dict[str, Any] = {}
        for name in names:
            if name not in properties:
                continue
            # optional properties appear with seeded odds, never past the depth limit
            if name not in needed and (depth >= _MAX_DEPTH or self.rng.random() < 0.5):
                continue
            result[name] = self.value(properties[name], depth + 1)
        return result


def _matches(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return True  # a pattern Python cannot read is not ours to enforce


def _pattern_candidates(day: int) -> list[str]:
    return [f"{day:02d}", f"A{day:02d}", f"{day:02d}-{day:02d}", "abc", "ABC", f"item-{day}"]


def generate(schema: Mapping[str, Any], rng: random.Random) -> Any:
    """A value valid against ``schema``, drawn from ``rng``."""
    return _Generator(schema, rng).value(schema)
