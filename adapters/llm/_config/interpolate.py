"""Environment interpolation for config values: ``${VAR}``, ``${VAR:-default}``, ``$${...}``
and LiteLLM's ``os.environ/VAR``.

It runs over the parsed YAML tree before validation, so a number or flag may come from the
environment (``timeout: ${LLM_TIMEOUT:-60}``). It never reads ``os.environ`` itself: the caller
passes the mapping, which keeps loading deterministic and testable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .schema import join_key
from ..errors import ConfigError

__all__ = ["interpolate", "referenced_var"]

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# ``$`` + optional escaping ``$`` + ``{...}`` without nested braces.
_REF = re.compile(r"\$(\$?)\{([^{}]*)\}")
_INNER = re.compile(rf"({_NAME})(?::-(.*))?", re.DOTALL)
_OS_ENVIRON = re.compile(rf"os\.environ/({_NAME})")


def referenced_var(raw: str) -> str | None:
    """The env var a raw (uninterpolated) value reads, e.g. for ``Deployment.key_env``.

    ``os.environ/VAR`` or the first ``${VAR}``/``${VAR:-default}``; None for a literal.
    """
    whole = _OS_ENVIRON.fullmatch(raw)
    if whole:
        return whole.group(1)
    for match in _REF.finditer(raw):
        inner = _INNER.fullmatch(match.group(2))
        if not match.group(1) and inner:
            return inner.group(1)
    return None


def interpolate(node: Any, env: Mapping[str, str], *, file: str | None, key: str = "") -> Any:
    """Return a copy of ``node`` with every string value interpolated from ``env``.

    Mapping keys are left alone. A string that is exactly ``${VAR}`` or ``os.environ/VAR``
    becomes None when VAR is unset, so a missing API key is reported by whoever needs it
    rather than failing the whole load; inside a longer string a missing VAR is an error.
    """
    if isinstance(node, str):
        return _string(node, env, file=file, key=key)
    if isinstance(node, Mapping):
        return {k: interpolate(v, env, file=file, key=join_key(key, k)) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env, file=file, key=join_key(key, i)) for i, v in enumerate(node)]
    return node


def _string(raw: str, env: Mapping[str, str], *, file: str | None, key: str) -> str | None:
    whole = _OS_ENVIRON.fullmatch(raw)
    if whole:
        return env.get(whole.group(1))
    match = _REF.fullmatch(raw)
    if match and not match.group(1):
        inner = _INNER.fullmatch(match.group(2))
        if inner and inner.group(2) is None:
            return env.get(inner.group(1))

    pieces: list[str] = []
    end = 0
    for match in _REF.finditer(raw):
        pieces.append(_literal(raw[end:match.start()], file=file, key=key))
        end = match.end()
        escaped, body = match.group(1), match.group(2)
        if escaped:
            pieces.append("${" + body + "}")
            continue
        inner = _INNER.fullmatch(body)
        if inner is None:
            raise _malformed(match.group(0), file=file, key=key)
        name, default = inner.group(1), inner.group(2)
        value = env.get(name)
        if default is not None and not value:
            value = default
        if value is None:
            raise ConfigError(f"environment variable {name} is not set and has no default",
                              path=file, key=key or None,
                              fix=f"set {name} or use ${{{name}:-default}}")
        pieces.append(value)
    pieces.append(_literal(raw[end:], file=file, key=key))
    return "".join(pieces)


def _literal(text: str, *, file: str | None, key: str) -> str:
    """Plain text between references; a ``${`` left here was never closed."""
    if "${" in text:
        raise _malformed(text[text.index("${"):], file=file, key=key)
    return text


def _malformed(text: str, *, file: str | None, key: str) -> ConfigError:
    shown = text if len(text) <= 40 else text[:37] + "..."
    return ConfigError(f"malformed or unterminated reference {shown!r}",
                       path=file, key=key or None,
                       fix="write ${VAR} or ${VAR:-default} (no nesting); "
                           "write $${ for a literal ${")
