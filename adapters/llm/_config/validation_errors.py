"""One formatter from pydantic's ``ValidationError`` to ``ConfigError``, and the field rules.

The settings models (``_settings``) type their fields with the value rules of
``_config_schema`` (``spec(Num(...))``), so a section checked by pydantic words its problems
exactly as the core sections do. A rule or a model validator raises ``problem(...)``; pydantic's
own errors (a missing field, an unknown key) are worded here. Either way the result names the
file, the key path (the error's location under the section's key), what is wrong and the fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BeforeValidator, ValidationError, ValidationInfo
from pydantic_core import PydanticCustomError

from .schema import (Checker, Choice, Fields, Flag, Items, Num, Spec, Strings, Table, Text,
                     join_key, suggest)
from ..errors import ConfigError

__all__ = ["config_error", "problem", "rule_type", "spec", "unknown_keys"]

_RULES = Checker(None)


def problem(text: str, fix: str | None = None, *, at: object = None) -> PydanticCustomError:
    """A config problem raised inside a model; ``at`` is a key below the error's location."""
    return PydanticCustomError("config", "{problem}",
                               {"problem": text, "fix": fix or "", "at": "" if at is None
                                else str(at)})


def spec(rule: Spec) -> BeforeValidator:
    """A field validator applying one ``_config_schema`` rule (number, text, flag, choice...)."""

    def check(value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, tuple):    # an already checked value (a merge of two layers)
            value = list(value)
        name = info.field_name or ""
        try:
            return _RULES.check(value, rule, name)
        except ConfigError as exc:      # a nested rule names the key below this field
            below = (exc.key or "")[len(name):] if (exc.key or "").startswith(name) else ""
            raise problem(exc.problem, exc.fix, at=below.lstrip(".") or None) from None

    return BeforeValidator(check)


def unknown_keys(value: Any, valid: Iterable[str], what: str) -> dict[str, Any]:
    """``value`` as a plain dict (None counts as empty), or a problem naming an unknown key."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        shown = repr(value) if isinstance(value, str) else f"{type(value).__name__} {value!r}"
        raise problem(f"expected a mapping for {what}, got {shown[:60]}",
                      "write key: value pairs (a YAML mapping)")
    names = list(valid)
    for name in value:
        if name not in names:
            raise problem(f"unknown key {name!r} in {what}", suggest(name, names,
                                                                      what="valid keys"), at=name)
    return {str(k): v for k, v in value.items()}


def _key(prefix: str, loc: Iterable[int | str]) -> str:
    key = prefix
    for part in loc:
        key = join_key(key, part)
    return key


def config_error(exc: ValidationError, *, file: str | None, key: str) -> ConfigError:
    """The first error of ``exc`` as a ConfigError; ``key`` is where the section lives."""
    first = exc.errors(include_url=False)[0]
    where = _key(key, first["loc"])
    ctx: Mapping[str, Any] = first.get("ctx") or {}
    if first["type"] == "config":
        at = str(ctx.get("at") or "")
        key_path = where + at if at.startswith("[") else join_key(where, at) if at else where
        return ConfigError(str(ctx["problem"]), path=file, key=key_path,
                           fix=str(ctx.get("fix") or "") or None)
    name = str(first["loc"][-1]) if first["loc"] else key
    if first["type"] == "missing":
        return ConfigError(f"{name} is missing", path=file, key=where,
                           fix=f"add {name}: ... (see the README's config section)")
    if first["type"] == "extra_forbidden":
        return ConfigError(f"unknown key {name!r}", path=file, key=where,
                           fix="remove it (see the README's config section)")
    return ConfigError(str(first["msg"]), path=file, key=where,
                       fix="see the README's config section for the expected form")


def rule_type(rule: Spec, *, exact_numbers: bool = False) -> Any:
    """The Python type of a rule's checked value; with ``exact_numbers`` a number keeps the int
    or float it was written as (LiteLLM's own parameters), else it is a float."""
    if isinstance(rule, Num):
        return int if rule.integer else (int | float if exact_numbers else float)
    if isinstance(rule, Flag):
        return bool
    if isinstance(rule, (Text, Choice)):
        return str
    if isinstance(rule, Strings):
        return list[str]
    if isinstance(rule, Items):
        return list[Any]
    assert isinstance(rule, (Table, Fields))
    return dict[str, Any]
