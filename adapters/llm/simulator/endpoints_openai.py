"""OpenAI's endpoints besides chat: embeddings and the models list."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .content import count_tokens
from .embeddings import LISTED_MODELS, as_base64, vector
from .wire import RequestError, Route

__all__ = ["answer", "match"]

_DEFAULT_DIMENSIONS = 1536


def match(method: str, path: str) -> Route | None:
    path = path.removeprefix("v1/")
    if path == "embeddings" and method == "POST":
        return Route(endpoint="embeddings", method=method)
    if path == "models" and method == "GET":
        return Route(endpoint="models", method=method)
    if path.startswith("models/") and method == "GET":
        return Route(model=path.removeprefix("models/"), endpoint="model", method=method)
    return None


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 1700000000, "owned_by": "simulator"}


def _inputs(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return list(value)
    if isinstance(value, list) and value and all(isinstance(item, int) for item in value):
        return [" ".join(map(str, value))]  # one prompt given as token ids
    if isinstance(value, list) and value and all(isinstance(item, list) for item in value):
        return [" ".join(map(str, item)) for item in value]
    raise RequestError("'input' must be a string, a list of strings or a list of token lists",
                       param="input")


def answer(route: Route, body: Mapping[str, Any], seed: int) -> dict[str, Any]:
    if route.endpoint == "models":
        return {"object": "list", "data": [_model(name) for name in LISTED_MODELS["openai"]]}
    if route.endpoint == "model":
        return _model(route.model or "")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("you must provide a model parameter", param="model")
    texts = _inputs(body.get("input"))
    dimensions = body.get("dimensions", _DEFAULT_DIMENSIONS)
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
        raise RequestError(f"Invalid 'dimensions': {dimensions!r}", param="dimensions")
    as_text = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        values = vector(text, dimensions, seed)
        data.append({"object": "embedding", "index": index,
                     "embedding": as_base64(values) if as_text else values})
    tokens = sum(count_tokens(text) for text in texts)
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
