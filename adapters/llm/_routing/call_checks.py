"""What a request may hold, checked before anything is sent.

A request litellm cannot encode or transform fails inside litellm before any byte leaves the
process, yet litellm reports it as a provider failure (a 500, a "connection" error): the Router
retries it, cools a healthy deployment down and the walk falls back to providers that fail the
same way. The cheap checks here turn the common causes into a ``UsageError`` that names the
field and the fix, so the call never reaches the Router.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import UsageError
from .litellm import user_part_types

__all__ = ["check_encodable", "check_message", "check_request", "check_response_format",
           "check_timeout", "check_tools"]

# Roles whose content must be text or content parts; assistant and function may be empty.
_TEXT_ROLES = frozenset({"system", "user", "developer", "tool"})
_RESPONSE_TYPES = ("text", "json_object", "json_schema")


def check_message(message: Mapping[str, Any], where: str) -> None:
    """The message's ``content`` has a type its role allows."""
    role = message["role"]
    content = message.get("content")
    if content is None:
        if role in _TEXT_ROLES:
            raise UsageError(f"{where} ({role}) has no content; give it a string")
        return
    if isinstance(content, str):
        return
    if isinstance(content, (list, tuple)):
        for i, part in enumerate(content):
            if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
                raise UsageError(f"{where}.content[{i}] must be a content part like "
                                 "{'type': 'text', 'text': '...'}, got "
                                 f"{type(part).__name__}")
            if role == "user" and part["type"] not in user_part_types():
                raise UsageError(f"{where}.content[{i}] has type {part['type']!r}; a user "
                                 f"message's parts are {', '.join(user_part_types())}")
            if part["type"] == "text" and not isinstance(part.get("text"), str):
                raise UsageError(f"{where}.content[{i}]['text'] must be a string, not "
                                 f"{type(part.get('text')).__name__}")
        return
    raise UsageError(f"{where}.content must be a string or a list of content parts "
                     f"({{'type': 'text', 'text': '...'}}), not {type(content).__name__}; "
                     "convert it with str(...)")


def check_tools(tools: Sequence[Mapping[str, Any]]) -> None:
    """Function tools have a ``function`` with a name (litellm's transformations index it)."""
    for i, tool in enumerate(tools):
        if tool.get("type", "function") != "function":
            continue                    # provider-specific tools pass through as they are
        function = tool.get("function")
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise UsageError(f"tools[{i}]['function'] must be a dict with a 'name' (and "
                             "'parameters': a JSON schema), e.g. {'type': 'function', "
                             "'function': {'name': 'lookup', 'parameters': {...}}}")


def check_encodable(value: Any, where: str) -> None:
    """Every string in ``value`` can be sent as UTF-8 (no lone surrogate halves)."""
    found = _unencodable(value)
    if found is None:
        return
    path, text, exc = found
    raise UsageError(
        f"{where}{path}: character {exc.start} is {text[exc.start]!r}, half of a surrogate "
        "pair, which is not valid Unicode and cannot be sent; the text was decoded wrongly "
        "(e.g. errors='surrogateescape' or a JSON '\\ud83d' escape cut in half): decode it as "
        "UTF-8 or remove the character")


def _unencodable(value: Any) -> tuple[str, str, UnicodeEncodeError] | None:
    """The first string in ``value`` that UTF-8 cannot encode: its path, text and error. The
    path is built only for that one (this runs on every call)."""
    if isinstance(value, str):
        if value.isascii():
            return None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return "", value, exc
        return None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    elif isinstance(value, Mapping):
        items = value.items()
    else:
        return None
    for key, item in items:
        if isinstance(key, str) and (found := _unencodable(key)) is not None:
            return f" key {key!r}", key, found[2]
        if (found := _unencodable(item)) is not None:
            return f"[{key!r}]{found[0]}", found[1], found[2]
    return None


def check_response_format(value: Any) -> None:
    """``response_format`` in a shape litellm can send: an OpenAI-style dict or a pydantic model
    class (litellm turns the class into a JSON schema)."""
    if value is None or _is_model_class(value):
        return
    fix = ("use {'type': 'json_object'}, {'type': 'json_schema', 'json_schema': "
           "{'name': ..., 'schema': {...}}} or a pydantic model class")
    if not isinstance(value, Mapping):
        raise UsageError(f"response_format must be a dict or a pydantic model class, not "
                         f"{value!r}; {fix}")
    kind = value.get("type")
    if kind not in _RESPONSE_TYPES:
        raise UsageError(f"response_format['type'] is {kind!r}; {fix}")
    if kind == "json_schema" and not isinstance(value.get("json_schema"), Mapping):
        raise UsageError("response_format {'type': 'json_schema'} needs 'json_schema': "
                         "{'name': ..., 'schema': {...}}")


def check_timeout(value: Any) -> float:
    """A finite, positive number of seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value <= 0:
        raise UsageError(f"timeout must be a positive number of seconds, and finite; "
                         f"not {value!r}")
    return float(value)


def _check_headers(headers: Any, where: str) -> None:
    """HTTP header names and values are ASCII strings (httpx refuses anything else)."""
    if not isinstance(headers, Mapping):
        raise UsageError(f"{where} must be a dict of header names to strings")
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise UsageError(f"{where}[{name!r}] must be a string header name and value, "
                             f"not {type(value).__name__}")
        if not (name.isascii() and value.isascii()):
            raise UsageError(f"{where}[{name!r}] is not ASCII, which HTTP headers cannot carry; "
                             "percent-encode or base64 it")


def _is_model_class(value: Any) -> bool:
    if not isinstance(value, type):
        return False
    try:
        from pydantic import BaseModel
    except ImportError:     # pydantic comes with litellm; without it no class can qualify
        return False
    return issubclass(value, BaseModel)


def check_request(params: Mapping[str, Any], metadata: Mapping[str, Any] | None) -> None:
    """The call's parameters and metadata are encodable (the messages are checked where the
    caller's argument that holds them is known)."""
    for key, value in params.items():
        check_encodable(value, key)
        if key in ("extra_headers", "headers"):
            _check_headers(value, key)
    if metadata is not None:
        check_encodable(metadata, "metadata")
