"""Reading Gemini request bodies: fields in either spelling, content parts and tools."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .content import ToolSpec, text_of
from .wire import RequestError, tool_spec

__all__ = ["field", "function_responses", "parts", "texts_of", "tools"]

_CAMEL_HUMP = re.compile(r"(?<!^)(?=[A-Z])")


def field(data: object, camel: str) -> Any:
    """``data[camel]`` or its snake_case twin; None when absent or ``data`` is not an object."""
    if not isinstance(data, Mapping):
        return None
    if camel in data:
        return data[camel]
    return data.get(_CAMEL_HUMP.sub("_", camel).lower())


def parts(content: object) -> list[Mapping[str, Any]]:
    found = field(content, "parts")
    return [p for p in found if isinstance(p, Mapping)] if isinstance(found, list) else []


def texts_of(items: list[Mapping[str, Any]]) -> list[str]:
    return [str(p["text"]) for p in items if "text" in p and not p.get("thought")]


def function_responses(items: list[Mapping[str, Any]]) -> list[str]:
    responses = (field(part, "functionResponse") for part in items)
    return [text_of(r.get("response")) for r in responses if isinstance(r, Mapping)]


def tools(value: object) -> tuple[ToolSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RequestError("tools must be a list")
    specs = []
    for index, tool in enumerate(value):
        declarations = field(tool, "functionDeclarations")
        if not isinstance(declarations, list):
            continue  # a built-in tool such as googleSearch
        for number, declaration in enumerate(declarations):
            schema = field(declaration, "parameters")
            schema = schema or field(declaration, "parametersJsonSchema")
            where = f"tools[{index}].functionDeclarations[{number}]"
            specs.append(tool_spec(field(declaration, "name"), schema, where))
    return tuple(specs)
