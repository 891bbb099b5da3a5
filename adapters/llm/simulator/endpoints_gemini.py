"""Gemini's endpoints besides generateContent: countTokens, embeddings and the models list."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .content import count_tokens
from .embeddings import LISTED_MODELS, vector
from .wire import RequestError, Route
from .wire_gemini_parts import field, parts, texts_of

__all__ = ["answer", "match"]

_PATH = re.compile(
    r"(?:v1beta/|v1/)?models/(?P<model>[^/:]+):(?P<method>countTokens|embedContent"
    r"|batchEmbedContents)"
)
_MODEL = re.compile(r"(?:v1beta/|v1/)?models(?:/(?P<model>[^/:]+))?")
_DEFAULT_DIMENSIONS = 768


def match(method: str, path: str) -> Route | None:
    found = _PATH.fullmatch(path)
    if found is not None and method == "POST":
        return Route(model=found["model"], endpoint=found["method"], method=method)
    listed = _MODEL.fullmatch(path)
    if listed is not None and method == "GET":
        name = listed["model"]
        return Route(model=name, endpoint="model" if name else "models", method=method)
    return None


def _model(name: str) -> dict[str, Any]:
    embedding = "embedding" in name
    methods = ["embedContent", "batchEmbedContents"] if embedding else \
        ["generateContent", "streamGenerateContent", "countTokens"]
    return {"name": f"models/{name}", "version": "001", "displayName": name,
            "inputTokenLimit": 1048576, "outputTokenLimit": 65536,
            "supportedGenerationMethods": methods}


def _embedding(request: Mapping[str, Any], seed: int) -> dict[str, Any]:
    content = field(request, "content")
    if not isinstance(content, Mapping):
        raise RequestError("content is not specified")
    text = "\n".join(texts_of(parts(content)))
    size = field(request, "outputDimensionality") or _DEFAULT_DIMENSIONS
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise RequestError(f"outputDimensionality must be a positive integer, got {size!r}")
    return {"values": vector(text, size, seed)}


def answer(route: Route, body: Mapping[str, Any], seed: int) -> dict[str, Any]:
    if route.endpoint == "models":
        return {"models": [_model(name) for name in LISTED_MODELS["gemini"]]}
    if route.endpoint == "model":
        return _model(route.model or "")
    if route.endpoint == "embedContent":
        return {"embedding": _embedding(body, seed)}
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        raise RequestError("requests is not specified")
    embeddings = [_embedding(r if isinstance(r, Mapping) else {}, seed) for r in requests]
    tokens = sum(count_tokens(t) for r in requests if isinstance(r, Mapping)
                 for t in texts_of(parts(field(r, "content"))))
    return {"embeddings": embeddings, "metadata": {"billableCharacterCount": tokens}}
