"""What this library does with the keys of a LiteLLM proxy ``config.yaml``.

A proxy config loads as it is. Keys that change how a call is made are honoured for the
adapter's own calls only (``litellm_settings.drop_params``, ``num_retries``,
``request_timeout``; the fallback lists): they are passed per Router or per call, never set on
the ``litellm`` module, where they would change the application's other litellm use. Keys that
only the proxy server reads (``general_settings``, the proxy's callbacks, budgets and UI
settings) are named in one warning as not used. Any other key is a ``ConfigError``: a setting
that would change calls and is not applied must not be silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, model_validator

from urllib.parse import quote

from .validation_errors import problem, spec
from .schema import Flag, Num, join_key, show, suggest
from .interpolate import interpolate
from ..errors import ConfigError

__all__ = ["CHAIN_KEYS", "LiteLLMSettings", "PROXY_LITELLM_KEYS", "lift_chains",
           "proxy_only_keys", "router_keys", "with_environment_variables"]

# Fallback lists LiteLLM also reads from litellm_settings; the loader moves them to the top.
CHAIN_KEYS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")
# litellm_settings keys only the proxy server acts on (logging callbacks, proxy budgets, UI).
PROXY_LITELLM_KEYS = frozenset({
    "success_callback", "failure_callback", "callbacks", "service_callback", "callback_settings",
    "json_logs", "set_verbose", "telemetry", "max_budget", "budget_duration",
    "max_end_user_budget", "max_internal_user_budget", "internal_user_budget_duration",
    "default_team_settings", "default_internal_user_params", "default_key_generate_params",
    "upperbound_key_generate_params", "key_generation_settings", "public_teams",
    "turn_off_message_logging", "redact_user_api_key_info", "redact_messages_in_exceptions",
    "store_audit_logs", "langfuse_default_tags", "disable_end_user_cost_tracking",
    "enable_preview_features", "default_fallbacks", "guardrails",
    "forward_client_headers_to_llm_api",
    "ssl_verify", "mcp_aliases", "return_response_headers", "global_max_parallel_requests",
})
_HONOURED = ("drop_params", "num_retries", "request_timeout", *CHAIN_KEYS)
_CACHE_FIX = ("the adapter's response cache is router_settings.cache, e.g. "
              "router_settings: {cache: {type: redis, ttl: 3600}}")


class LiteLLMSettings(BaseModel):
    """``litellm_settings`` keys that shape the adapter's calls (None: not given)."""

    model_config = ConfigDict(frozen=True)
    drop_params: Annotated[bool | None, spec(Flag())] = None
    num_retries: Annotated[int | None, spec(Num(low=0, high=10, integer=True, example="2"))] = None
    request_timeout: Annotated[float | None, spec(Num(low=0, low_open=True, seconds=True,
                                                      example="60"))] = None

    @model_validator(mode="before")
    @classmethod
    def _known(cls, value: Any) -> Any:
        if value is None or isinstance(value, BaseModel):
            return value or {}
        if not isinstance(value, Mapping):
            raise problem(f"expected a mapping for litellm_settings, got "
                          f"{type(value).__name__}", "write key: value pairs (a YAML mapping)")
        out: dict[str, Any] = {}
        for name, item in value.items():
            if name in cls.model_fields:
                out[str(name)] = item
            elif name in ("cache", "cache_params"):
                if name == "cache" and item in (False, None):
                    continue
                raise problem(f"litellm_settings.{name} is not used by this library",
                              _CACHE_FIX, at=name)
            elif name not in PROXY_LITELLM_KEYS and name not in CHAIN_KEYS:
                raise problem(
                    f"litellm_settings.{name} is not supported: as a litellm setting it would "
                    "change how calls are made, and this library does not apply it",
                    suggest(name, _HONOURED, what="keys applied to the adapter's calls") +
                    "; remove it", at=name)
        return out


def proxy_only_keys(data: Mapping[str, Any]) -> tuple[str, ...]:
    """The key paths of ``data`` (the whole file) that only a LiteLLM proxy server reads."""
    found: list[str] = []
    general = data.get("general_settings")
    if isinstance(general, Mapping):
        found += [join_key("general_settings", k) for k in general]
    settings = data.get("litellm_settings")
    if isinstance(settings, Mapping):
        found += [join_key("litellm_settings", k) for k in settings if k in PROXY_LITELLM_KEYS]
    return tuple(found)


def lift_chains(data: dict[str, Any], *, file: str | None) -> None:
    """LiteLLM also reads the fallback lists from litellm_settings: use them as top-level ones."""
    settings = data.get("litellm_settings")
    if not isinstance(settings, Mapping):
        return
    for name in CHAIN_KEYS:
        if name in settings:
            if name in data:
                raise ConfigError(f"{name} is given both here and at the top level", path=file,
                                  key=join_key("litellm_settings", name),
                                  fix=f"keep only the top-level {name}")
            data[name] = settings[name]


def router_keys(merged: Mapping[str, Any], litellm: LiteLLMSettings, *, file: str | None
                ) -> dict[str, Any]:
    """Checked router settings with LiteLLM's spellings resolved: ``redis_host``/``redis_port``
    /``redis_password`` become the ``redis_url`` they name (a given ``redis_url`` wins, as in
    LiteLLM), ``litellm_settings.num_retries`` / ``request_timeout`` are the defaults of
    ``num_retries`` / ``timeout``; litellm's own response-cache keys are refused."""
    merged = dict(merged)
    for name in ("caching_groups", "cache_responses"):
        if merged.get(name):
            raise ConfigError(f"{name} is not supported: it would turn on litellm's own "
                              "response cache beside the adapter's", path=file,
                              key=join_key("router_settings", name),
                              fix="use router_settings.cache: {type: redis, ttl: 3600} "
                              "(one cache for every group), and remove this key")
        merged.pop(name, None)
    host = merged.pop("redis_host", None)
    port = merged.pop("redis_port", None)
    password = merged.pop("redis_password", None)
    if host and not merged.get("redis_url"):
        auth = f":{quote(str(password), safe='')}@" if password else ""
        merged["redis_url"] = f"redis://{auth}{host}:{int(port or 6379)}"
    elif (port or password) and not host and not merged.get("redis_url"):
        raise ConfigError("redis_port or redis_password is set but redis_host is not",
                          path=file, key="router_settings.redis_host",
                          fix="add redis_host (e.g. 127.0.0.1), or set redis_url: "
                          "redis://host:6379")
    if litellm.num_retries is not None and "num_retries" not in merged:
        merged["num_retries"] = litellm.num_retries
    if litellm.request_timeout is not None and "timeout" not in merged:
        merged["timeout"] = litellm.request_timeout
    return merged


def with_environment_variables(section: Any, variables: Mapping[str, str], *,
                               file: str | None) -> dict[str, str]:
    """``variables`` with a proxy config's ``environment_variables`` over them, as the proxy
    sets them before reading the rest; here they only feed ``${VAR}`` / ``os.environ/VAR`` in
    this file (``os.environ`` itself is never written)."""
    if section is not None and not isinstance(section, Mapping):
        raise ConfigError(f"expected a mapping, got {show(section, 'environment_variables')}",
                          path=file, key="environment_variables",
                          fix="write key: value pairs (a YAML mapping)")
    given = {str(k): v for k, v in (section or {}).items()}
    out = dict(variables)
    for name, value in interpolate(given, variables, file=file,
                                   key="environment_variables").items():
        if value is None:                   # an unset ${VAR}: nothing to set
            continue
        if not isinstance(value, (str, int, float)):
            raise ConfigError("expected text or a number", path=file,
                              key=join_key("environment_variables", name),
                              fix="write NAME: value, e.g. OLLAMA_API_BASE: "
                              "http://localhost:11434")
        out[name] = str(value)
    return out
