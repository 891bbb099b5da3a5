"""Key tables and value rules for the LiteLLM-style config file.

The typed models (``deployments``, ``profiles``, ``settings``) apply these rules through
``spec(...)``, so each kind of value is checked and worded once. Everything here is pure: a
value and its key path go in, a normalised plain value or a ``ConfigError`` (file, key path,
problem, fix) comes out. Values of secret-looking keys never appear in a message.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeAlias

from ..errors import ConfigError

__all__ = [
    "CONVENTIONAL_KEY_ENV", "Checker", "DEPLOYMENT_KEYS", "KEYLESS_PROVIDERS", "LITELLM_PARAMS",
    "MODEL_INFO", "PROFILE_EXTRA_KEYS", "ROUTER_FIELDS", "ROUTER_SETTINGS",
    "ROUTING_STRATEGIES", "SECTIONS",
    "TOP_LEVEL_KEYS", "is_secret_key", "join_key", "masked", "show", "suggest",
]

# ---------------------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class Num:
    """A number (numeric strings accepted, since ``${VAR:-60}`` can only produce text)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False          # ``low`` itself is not allowed
    integer: bool = False
    seconds: bool = False
    optional: bool = False          # None allowed
    example: str = "1"


@dataclass(frozen=True)
class Text:
    optional: bool = True           # None allowed (an unset ``${VAR}``)
    non_empty: bool = False


@dataclass(frozen=True)
class Flag:
    """A real bool; the strings true/false are accepted for interpolated values only."""


@dataclass(frozen=True)
class Choice:
    choices: tuple[str, ...]


@dataclass(frozen=True)
class Strings:
    """A list of strings."""


@dataclass(frozen=True)
class Items:
    """A list of anything (carried for LiteLLM)."""


@dataclass(frozen=True)
class Table:
    """A mapping whose contents a later feature or LiteLLM interprets; None means empty."""


@dataclass(frozen=True)
class Fields:
    """A mapping with known keys; unknown keys are errors with a suggestion."""

    what: str
    table: Mapping[str, Spec]
    optional: bool = True           # None allowed (e.g. ``cache: null`` to switch caching off)


Spec: TypeAlias = "Num | Text | Flag | Choice | Strings | Items | Table | Fields"

# --------------------------------------------------------------------------------------- tables

SECTIONS = ("litellm_settings", "general_settings", "langfuse", "masking", "budgets", "alerts",
            "prompts", "store")
TOP_LEVEL_KEYS = ("model_list", "fallbacks", "context_window_fallbacks",
                  "content_policy_fallbacks", "router_settings", "environments",
                  "environment_variables") + SECTIONS
DEPLOYMENT_KEYS = ("model_name", "litellm_params", "model_info", "tpm", "rpm")
ROUTING_STRATEGIES = ("simple-shuffle", "least-busy", "usage-based-routing",
                      "usage-based-routing-v2", "latency-based-routing", "cost-based-routing")
KEYLESS_PROVIDERS = frozenset({"ollama", "ollama_chat"})
CONVENTIONAL_KEY_ENV: Mapping[str, str] = MappingProxyType({
    "openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY",
    "azure": "AZURE_API_KEY", "mistral": "MISTRAL_API_KEY", "groq": "GROQ_API_KEY",
    "cohere": "COHERE_API_KEY", "together_ai": "TOGETHERAI_API_KEY",
})

_SECONDS_GT0 = Num(low=0, low_open=True, seconds=True, example="60")
_COUNT = Num(low=0, integer=True, example="0")
_COST = Num(low=0, example="0.000003")

LITELLM_PARAMS: Mapping[str, Spec] = MappingProxyType({
    "model": Text(optional=False, non_empty=True),
    "api_key": Text(), "api_base": Text(), "api_version": Text(),
    "timeout": _SECONDS_GT0, "stream_timeout": _SECONDS_GT0,
    "rpm": Num(low=0, integer=True, example="500"),
    "tpm": Num(low=0, integer=True, example="100000"),
    "max_retries": _COUNT,
    "weight": Num(low=0, low_open=True, example="1"),
    "input_cost_per_token": _COST, "output_cost_per_token": _COST,
    "max_tokens": Num(low=1, integer=True, example="1024"),
    "temperature": Num(low=0, high=2, example="0.7"),
    "tags": Strings(),
    "organization": Text(), "region_name": Text(), "vertex_project": Text(),
    "vertex_location": Text(),
    "cooldown_time": Num(low=0, seconds=True, example="30"),
})
MODEL_INFO: Mapping[str, Spec] = MappingProxyType({
    "id": Text(optional=False, non_empty=True), "base_model": Text(),
    "max_input_tokens": Num(low=1, integer=True, example="128000"),
    "max_output_tokens": Num(low=1, integer=True, example="8192"),
    "input_cost_per_token": _COST, "output_cost_per_token": _COST,
    "cache_read_input_token_cost": _COST, "cache_creation_input_token_cost": _COST,
    "allowed_fails": _COUNT, "cooldown_time": Num(low=0, seconds=True, example="30"),
})
_CACHE = Fields("cache", MappingProxyType({
    "type": Choice(("local", "redis", "disk")),
    "ttl": Num(low=0, low_open=True, seconds=True, example="3600"),
    "host": Text(), "port": Num(low=1, high=65535, integer=True, example="6379"),
    "password": Text(), "namespace": Text(),
    "max_size": Num(low=1, integer=True, example="1000"),
    "path": Text(),                         # disk cache file
}))
# Keys that are ``RouterSettings`` fields; the rest of ROUTER_SETTINGS goes to ``extra``.
ROUTER_FIELDS: Mapping[str, Spec] = MappingProxyType({
    "routing_strategy": Choice(ROUTING_STRATEGIES),
    "num_retries": Num(low=0, high=10, integer=True, example="1"),
    "timeout": _SECONDS_GT0,           # each attempt, as in LiteLLM
    "stream_timeout": Num(low=0, low_open=True, seconds=True, optional=True, example="20"),
    "deadline": Num(low=0, low_open=True, seconds=True, optional=True, example="120"),
    "cooldown_time": Num(low=0, seconds=True, example="30"),
    "allowed_fails": _COUNT,
    "retry_after": Num(low=0, seconds=True, example="0"),
    "max_fallbacks": Num(low=0, integer=True, example="5"),
    "rpm": Num(low=1, integer=True, optional=True, example="500"),
    "tpm": Num(low=1, integer=True, optional=True, example="100000"),
    "cache": _CACHE, "redis_url": Text(), "enable_pre_call_checks": Flag(),
})
ROUTER_SETTINGS: Mapping[str, Spec] = MappingProxyType({
    **ROUTER_FIELDS,
    # LiteLLM Router kwargs passed through as they are.
    "retry_policy": Table(), "allowed_fails_policy": Table(), "model_group_alias": Table(),
    "default_litellm_params": Table(), "enable_weighted_failover": Flag(),
    "caching_groups": Items(), "routing_strategy_args": Table(), "redis_host": Text(),
    "redis_port": Num(low=1, high=65535, integer=True, example="6379"),
    "redis_password": Text(), "cache_responses": Flag(),
    "default_max_parallel_requests": Num(low=1, integer=True, optional=True, example="10"),
    "disable_cooldowns": Flag(), "set_verbose": Flag(), "debug_level": Choice(("DEBUG", "INFO")),
    # Read by later features.
    "hedging": Table(), "max_wait": Num(low=0, seconds=True, example="10"),
    "stream_ttft_timeout": Num(low=0, low_open=True, seconds=True, optional=True, example="10"),
})
PROFILE_EXTRA_KEYS = ("masking", "budgets", "alerts", "prompts", "store", "description")

# -------------------------------------------------------------------------------------- helpers


def join_key(parent: str, child: object) -> str:
    """``model_list`` + 2 -> ``model_list[2]``; ``router_settings`` + ``timeout`` -> dotted."""
    if isinstance(child, int) and not isinstance(child, bool):
        return f"{parent}[{child}]"
    return f"{parent}.{child}" if parent else str(child)


def suggest(word: object, choices: Iterable[str], *, what: str = "valid values") -> str:
    """A fix text: ``did you mean 'x'? <what>: a, b, c``."""
    options = list(choices)
    close = difflib.get_close_matches(str(word), options, n=1, cutoff=0.6) or [
        o for o in options if str(word) and o.lower().startswith(str(word).lower())][:1]
    listed = f"{what}: {', '.join(options)}" if options else f"no {what} are defined"
    return f"did you mean {close[0]!r}? {listed}" if close else listed


def is_secret_key(name: object) -> bool:
    """Whether a key's value must never be shown (api_key, *secret*, *password*, tokens...).

    Token *counts and costs* (max_tokens, input_cost_per_token) are not secrets.
    """
    n = str(name).lower()
    if any(w in n for w in ("key", "secret", "password", "passwd", "credential",
                            "authorization", "cookie")):
        return True
    return "token" in n and not any(w in n for w in ("tokens", "per_token", "cost"))


_URL_PASSWORD = re.compile(r"([a-z][a-z0-9+.-]*://[^/:@\s]*:)[^/@\s]+@", re.I)


def masked(value: Any, *, name: object = None) -> Any:
    """A plain copy fit for display: secret keys' values and URL passwords become ``***``."""
    if name is not None and is_secret_key(name) and value is not None:
        return "***"
    if isinstance(value, Mapping):
        return {k: masked(v, name=k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [masked(v) for v in value]
    if isinstance(value, str):
        return _URL_PASSWORD.sub(r"\1***@", value)
    return value


def _show(value: Any, key: str) -> str:
    last = re.sub(r"\[\d+\]$", "", key).rsplit(".", 1)[-1]
    if is_secret_key(last):
        return f"a {type(value).__name__} (value hidden)"
    text = repr(value) if isinstance(value, str) else f"{type(value).__name__} {value!r}"
    return text if len(text) <= 60 else text[:57] + "..."


show = _show  # how a bad value is quoted in a message (secret ones hidden)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _parse_number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
            return float(text)
        return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return value
    return None


# -------------------------------------------------------------------------------------- checker


@dataclass(frozen=True)
class Checker:
    """Validates values against specs, raising ConfigErrors that name ``file``."""

    file: str | None

    def error(self, key: str, problem: str, fix: str | None = None) -> ConfigError:
        return ConfigError(problem, path=self.file, key=key or None, fix=fix)

    def check(self, value: Any, spec: Spec, key: str) -> Any:
        """Return ``value`` normalised for ``spec`` or raise."""
        if isinstance(spec, Num):
            return self._number(value, spec, key)
        if isinstance(spec, Fields):
            if value is None and spec.optional:
                return None
            return self.fields(value, key, spec.what, spec.table)
        if isinstance(spec, Table):
            return self.mapping(value, key)
        if isinstance(spec, Text):
            if value is None and spec.optional:
                return None
            if not isinstance(value, str):
                problem = "is missing (is its environment variable set?)" if value is None \
                    else f"expected text, got {_show(value, key)}"
                raise self.error(key, problem, "write a string; quote values YAML would read "
                                 "as numbers or dates, e.g. '2024-06-01'")
            if spec.non_empty and not value.strip():
                raise self.error(key, "must not be empty", "write a non-empty string")
            return value
        if isinstance(spec, Flag):
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("true", "false"):
                return value.strip().lower() == "true"
            raise self.error(key, f"expected true or false, got {_show(value, key)}",
                             "write true or false")
        if isinstance(spec, Choice):
            if isinstance(value, str) and value in spec.choices:
                return value
            raise self.error(key, f"{_show(value, key)} is not a valid {key.rsplit('.', 1)[-1]}",
                             suggest(value, spec.choices, what="one of"))
        if isinstance(spec, Strings):
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return list(value)
            raise self.error(key, f"expected a list of strings, got {_show(value, key)}",
                             "write a list, e.g. [production, chat]")
        if isinstance(value, list):  # Items
            return list(value)
        raise self.error(key, f"expected a list, got {_show(value, key)}", "write a YAML list")

    def _number(self, value: Any, spec: Num, key: str) -> int | float | None:
        if value is None and spec.optional:
            return None
        kind = "a whole number" if spec.integer else \
            "a number of seconds" if spec.seconds else "a number"
        if spec.low is not None and spec.high is not None:
            wanted = f"{kind} between {_fmt(spec.low)} and {_fmt(spec.high)}"
        elif spec.low is not None:
            wanted = f"{kind} {'>' if spec.low_open else '>='} {_fmt(spec.low)}"
        else:
            wanted = kind
        fix = f"use {'a whole number' if spec.integer else kind}, e.g. {spec.example}"
        number = _parse_number(value)
        if number is None or (spec.integer and not isinstance(number, int)):
            raise self.error(key, f"expected {wanted}, got {_show(value, key)}", fix)
        too_low = spec.low is not None and (
            number <= spec.low if spec.low_open else number < spec.low)
        if too_low or (spec.high is not None and number > spec.high):
            raise self.error(key, f"{_fmt(number)} is out of range: expected {wanted}", fix)
        return number

    def mapping(self, value: Any, key: str, *, what: str = "a mapping") -> dict[str, Any]:
        """A mapping (None counts as empty) with string keys."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.error(key, f"expected {what}, got {_show(value, key)}",
                             "write key: value pairs (a YAML mapping)")
        return {str(k): v for k, v in value.items()}

    def fields(self, value: Any, key: str, what: str, table: Mapping[str, Spec], *,
               passthrough: bool = False) -> dict[str, Any]:
        """Check the known keys of a mapping; unknown keys pass only with ``passthrough``."""
        out = self.mapping(value, key, what=f"a mapping for {what}")
        for name, item in out.items():
            spec = table.get(name)
            if spec is not None:
                out[name] = self.check(item, spec, join_key(key, name))
            elif not passthrough:
                raise self.unknown(name, key, what, table)
        return out

    def unknown(self, name: str, key: str, what: str, valid: Iterable[str]) -> ConfigError:
        return self.error(join_key(key, name), f"unknown key {name!r} in {what}",
                          suggest(name, valid, what="valid keys"))
