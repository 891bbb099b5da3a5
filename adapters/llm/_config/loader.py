"""Loading the LiteLLM-compatible configuration: file lookup, ``.env``, interpolation,
environment profiles and validation.

Loading is pure and fast: it never imports litellm, never touches the network and never
writes to ``os.environ``. Every problem is a ``ConfigError`` naming the file, the key path,
what is wrong and how to fix it, so a bad config fails at start-up rather than mid-call.
The value rules live in ``schema``, ``${VAR}`` handling in ``interpolate``; ``model_list`` and
the fallback chains are typed in ``deployments``, the profiles and their merge with the file's
settings in ``profiles``, the feature sections in ``settings`` and ``settings_router``,
LiteLLM's own keys (and a proxy config's) in ``litellm_keys``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


from .schema import (
    CONVENTIONAL_KEY_ENV, KEYLESS_PROVIDERS, ROUTER_FIELDS, SECTIONS, TOP_LEVEL_KEYS,
    masked, show, suggest,
)
from .deployments import ModelList, check_chains, check_model_list
from .frozen import empty, freeze
from .profiles import DEFAULT_ENVIRONMENT, ENVIRONMENT_ENV_VAR, LangfuseSettings, Profile, merge
from .interpolate import interpolate, referenced_var
from .litellm_keys import lift_chains, router_keys, with_environment_variables
from .settings import Settings
from ..errors import ConfigError

__all__ = ["Config", "Deployment", "LangfuseSettings", "Profile", "RouterSettings", "load_config"]

CONFIG_ENV_VAR = "LLM_ADAPTER_CONFIG"
PROMPTS_ENV_VAR = "LLM_ADAPTER_PROMPTS"
_FILE_NAME = "litellm_config.yaml"

Fallbacks = tuple[tuple[str, tuple[str, ...]], ...]


# ------------------------------------------------------------------------------------ the model


@dataclass(frozen=True, repr=False)
class Deployment:
    """One ``model_list`` entry: a concrete model behind a group name."""

    model_name: str
    litellm_params: Mapping[str, Any]
    model_info: Mapping[str, Any]
    id: str
    provider: str
    key_env: str | None
    key_present: bool

    def public_params(self) -> dict[str, Any]:
        """``litellm_params`` safe to display: keys, secrets, tokens and passwords masked."""
        shown: dict[str, Any] = masked(self.litellm_params)
        return shown

    def __repr__(self) -> str:
        return (f"Deployment(model_name={self.model_name!r}, id={self.id!r}, "
                f"provider={self.provider!r}, key_env={self.key_env!r}, "
                f"key_present={self.key_present!r}, litellm_params={self.public_params()!r}, "
                f"model_info={masked(self.model_info)!r})")


@dataclass(frozen=True, repr=False)
class RouterSettings:
    """Router-wide settings, already merged with the active profile's overrides."""

    routing_strategy: str = "simple-shuffle"
    num_retries: int = 1
    timeout: float = 60.0           # seconds each attempt may take (LiteLLM's timeout)
    stream_timeout: float | None = None     # seconds each read of a stream may wait
    deadline: float | None = None   # seconds for a whole call; None: from the chain's timeouts
    cooldown_time: float = 30.0
    allowed_fails: int = 0
    retry_after: float = 0.0
    max_fallbacks: int = 5
    rpm: int | None = None
    tpm: int | None = None
    cache: Mapping[str, Any] | None = None
    redis_url: str | None = None
    enable_pre_call_checks: bool = False
    extra: Mapping[str, Any] = field(default_factory=empty)  # other Router kwargs, as given

    def as_dict(self) -> dict[str, Any]:
        """Plain values of every field (secrets included: not for display)."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in masked(self.as_dict()).items())
        return f"RouterSettings({shown})"


@dataclass(frozen=True, repr=False)
class Config:
    """A validated configuration for one environment."""

    path: Path | None
    environment: str
    deployments: tuple[Deployment, ...]
    fallbacks: Fallbacks
    context_window_fallbacks: Fallbacks
    content_policy_fallbacks: Fallbacks
    router_settings: RouterSettings
    profile: Profile
    profiles: Mapping[str, Profile]
    sections: Mapping[str, Any]     # the top-level sections as written, interpolated
    prompts_dir: Path | None = None  # $LLM_ADAPTER_PROMPTS as loaded (environment or .env)
    settings: Settings = Settings()  # every feature section, checked and merged at load

    def groups(self) -> tuple[str, ...]:
        """The model groups (``model_name`` values) in file order."""
        return tuple(dict.fromkeys(d.model_name for d in self.deployments))

    def group(self, name: str) -> tuple[Deployment, ...]:
        found = tuple(d for d in self.deployments if d.model_name == name)
        if not found:
            raise ConfigError(f"unknown model group {name!r}", path=_str(self.path),
                              key="model_list",
                              fix=suggest(name, self.groups(), what="defined groups"))
        return found

    @property
    def default_model(self) -> str:
        return self.profile.default_model or self.groups()[0]

    @property
    def packaged(self) -> bool:
        """Loaded from the default config shipped in the package (no project config found)."""
        return self.path is not None and self.path.resolve() == _packaged_default()

    def fingerprint(self) -> str:
        """sha256 over everything that shapes a Router, to tell when one must be rebuilt."""
        shape = {
            "environment": self.environment,
            "deployments": [[d.model_name, d.id, d.litellm_params, d.model_info]
                            for d in self.deployments],
            "fallbacks": self.fallbacks,
            "context_window_fallbacks": self.context_window_fallbacks,
            "content_policy_fallbacks": self.content_policy_fallbacks,
            "router_settings": self.router_settings.as_dict(),
            "litellm_settings": self.settings.litellm.model_dump(),
            "profile": [self.profile.fallbacks_enabled, self.profile.simulated,
                        self.profile.simulator],
        }
        text = json.dumps(shape, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def settings_fingerprint(self) -> str:
        """``fingerprint()`` plus every other section (masking, store, budgets, alerts, ...):
        what the adapter's telemetry and policies are built from."""
        rest = {"sections": self.sections, "profile": self.profile.extra,
                "langfuse": [self.profile.langfuse.enabled, self.profile.langfuse.default_tags,
                             self.profile.langfuse.sample_rate]}
        text = json.dumps(rest, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256((self.fingerprint() + text).encode()).hexdigest()

    def __repr__(self) -> str:
        return (f"Config(path={_str(self.path)!r}, environment={self.environment!r}, "
                f"groups={self.groups()!r}, deployments={self.deployments!r}, "
                f"fallbacks={self.fallbacks!r}, router_settings={self.router_settings!r}, "
                f"profile={self.profile!r}, profiles={tuple(self.profiles)!r}, "
                f"sections={tuple(self.sections)!r})")


# ------------------------------------------------------------------------------------- loading


def load_config(path: str | os.PathLike[str] | None = None, *, environment: str | None = None,
                env: Mapping[str, str] | None = None, load_dotenv: bool = True) -> Config:
    """Find, read, interpolate and validate the config for one environment.

    ``env`` replaces ``os.environ`` (tests, embedding). ``.env`` files (the cwd's, then the
    config file's project directory's) only fill variables the environment does not set.
    """
    variables = dict(os.environ if env is None else env)
    cwd_dotenv = Path.cwd() / ".env"
    if load_dotenv:
        variables = _with_dotenv(variables, cwd_dotenv)
    file = _find_file(path, variables)
    project_dotenv = file.parent.parent / ".env"
    if load_dotenv and project_dotenv.resolve() != cwd_dotenv.resolve():
        variables = _with_dotenv(variables, project_dotenv)
    if environment:
        name, source = environment, "the environment argument"
    elif variables.get(ENVIRONMENT_ENV_VAR):
        name, source = variables[ENVIRONMENT_ENV_VAR], ENVIRONMENT_ENV_VAR
    else:
        name, source = DEFAULT_ENVIRONMENT, "the default"
    return _build(_read_yaml(file), file, name, source, variables)


def _with_dotenv(variables: dict[str, str], dotenv: Path) -> dict[str, str]:
    """``variables`` plus the file's values for the names it does not have."""
    if not dotenv.is_file():
        return variables
    from dotenv import dotenv_values

    try:
        values = dotenv_values(dotenv, interpolate=False)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the .env file: {exc}", path=str(dotenv),
                          fix="make it a readable UTF-8 file") from exc
    extra = {k: v for k, v in values.items() if v is not None and k not in variables}
    return {**variables, **extra}


def _find_file(path: str | os.PathLike[str] | None, variables: Mapping[str, str]) -> Path:
    if path is not None:
        chosen, source = Path(path).expanduser(), "the path argument"
    elif variables.get(CONFIG_ENV_VAR):
        chosen, source = Path(variables[CONFIG_ENV_VAR]).expanduser(), CONFIG_ENV_VAR
    else:
        local = Path.cwd() / "config" / _FILE_NAME
        return local if local.is_file() else _packaged_default()
    if chosen.is_file():
        return chosen
    problem = "is a directory, not a file" if chosen.is_dir() else "does not exist"
    raise ConfigError(f"the config file named by {source} {problem}", path=str(chosen),
                      fix=f"point {source} at a YAML file such as config/{_FILE_NAME}")


def _packaged_default() -> Path:
    """The copy shipped in the package, so an installed adapter works from any directory."""
    return Path(__file__).resolve().parents[1] / "data" / _FILE_NAME


def _loader() -> type:
    """A SafeLoader that refuses duplicate keys, which YAML would silently collapse (made when
    a file is read: importing the package does not import yaml)."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                        key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return Loader


def _read_yaml(file: Path) -> Any:
    import yaml

    where = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the config file: {exc}", path=where,
                          fix="make it a readable UTF-8 YAML file") from exc
    try:
        return yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"invalid YAML{at}: {exc.problem or exc.context}", path=where,
                          fix="check indentation and ':' there, and quote values that contain "
                          "${...}, braces, ': ' or ' #'") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", path=where, fix="fix the YAML syntax") from exc


def _build(raw: Any, file: Path, environment: str, env_source: str,
           variables: Mapping[str, str]) -> Config:
    where = str(file)
    top = _top_level(raw, where)
    variables = with_environment_variables(top.pop("environment_variables", None), variables,
                                           file=where)
    data: dict[str, Any] = interpolate(top, variables, file=where)
    lift_chains(data, file=where)

    model_list = check_model_list(data.get("model_list"), file=where)
    deployments = _deployments(model_list, top["model_list"], variables)
    groups = model_list.groups()
    chains = check_chains(data, groups, file=where)
    sections = {name: _section(data[name], name, where) for name in SECTIONS if name in data}
    merged = merge(data, sections, groups, environment, env_source, file=where)
    return Config(
        path=file, environment=environment, deployments=deployments,
        fallbacks=chains.fallbacks,
        context_window_fallbacks=chains.context_window_fallbacks,
        content_policy_fallbacks=chains.content_policy_fallbacks,
        router_settings=_router(merged.router, merged.settings, file=where),
        profile=merged.profile, profiles=merged.profiles, sections=freeze(sections),
        prompts_dir=Path(variables[PROMPTS_ENV_VAR]).expanduser()
        if variables.get(PROMPTS_ENV_VAR) else None, settings=merged.settings)


def _top_level(raw: Any, file: str) -> dict[str, Any]:
    """The file's top-level mapping; a key this library does not read is an error."""
    if raw is None:
        raise ConfigError("the file is empty; it needs at least model_list", path=file,
                          fix="add model_list: [{model_name: gpt-4o, litellm_params: "
                          "{model: openai/gpt-4o}}]")
    if not isinstance(raw, Mapping):
        raise ConfigError(f"expected a mapping at the top level, got {show(raw, '')}",
                          path=file, fix="write key: value pairs (a YAML mapping)")
    for name in raw:
        if name == "cache":
            raise ConfigError("a top-level cache section is not read", path=file, key=name,
                              fix="the response cache is router_settings.cache, e.g. "
                              "router_settings: {cache: {type: redis, ttl: 3600}}")
        if name not in TOP_LEVEL_KEYS:
            raise ConfigError(f"unknown top-level key {name!r}", path=file, key=str(name),
                              fix=suggest(name, TOP_LEVEL_KEYS, what="valid top-level keys"))
    return {str(k): v for k, v in raw.items()}


def _section(value: Any, name: str, file: str) -> dict[str, Any]:
    """A feature section as written (None counts as empty); its keys are checked later."""
    if value is not None and not isinstance(value, Mapping):
        raise ConfigError(f"expected a mapping, got {show(value, name)}", path=file, key=name,
                          fix="write key: value pairs (a YAML mapping)")
    return {str(k): v for k, v in (value or {}).items()}


def _deployments(model_list: ModelList, raw_list: Any, variables: Mapping[str, str]
                 ) -> tuple[Deployment, ...]:
    out: list[Deployment] = []
    for entry, dep_id, raw in zip(model_list.root, model_list.ids(), raw_list, strict=True):
        info = {**entry.model_info.given(), "id": dep_id}
        raw_key = raw.get("litellm_params", {}).get("api_key")
        out.append(_deployment(entry.model_name, entry.params(), info, raw_key, variables))
    return tuple(out)


def _deployment(model_name: str, params: dict[str, Any], info: dict[str, Any], raw_key: Any,
                variables: Mapping[str, str]) -> Deployment:
    model: str = params["model"]
    provider = params.get("custom_llm_provider") or (
        model.split("/", 1)[0] if "/" in model else "openai")
    if raw_key is not None:
        key_env = referenced_var(raw_key) if isinstance(raw_key, str) else None
        present = bool(params.get("api_key"))
    elif provider in KEYLESS_PROVIDERS or provider not in CONVENTIONAL_KEY_ENV:
        key_env, present = None, True
    else:
        # Resolve the conventional variable here so a key from .env reaches LiteLLM too.
        key_env = CONVENTIONAL_KEY_ENV[provider]
        value = variables.get(key_env)
        if value:
            params["api_key"] = value
        present = bool(value)
    return Deployment(model_name=model_name, litellm_params=freeze(params),
                      model_info=freeze(info), id=info["id"], provider=str(provider),
                      key_env=key_env, key_present=present)


def _router(merged: Mapping[str, Any], settings: Settings, *, file: str) -> RouterSettings:
    """Split checked router settings into RouterSettings fields and pass-through ``extra``.

    As in LiteLLM, ``redis_host``/``redis_port``/``redis_password`` name the Redis that
    ``redis_url`` would (which wins when both are given), and ``litellm_settings.num_retries``
    / ``request_timeout`` are the defaults of ``num_retries`` / ``timeout``.
    """
    merged = router_keys(merged, settings.litellm, file=file)
    known = {k: v for k, v in merged.items() if k in ROUTER_FIELDS}
    for name in ("timeout", "stream_timeout", "deadline", "cooldown_time", "retry_after"):
        if name in known:
            known[name] = _float(known[name])
    if known.get("cache") is not None:
        known["cache"] = freeze(known["cache"])
    extra = {k: v for k, v in merged.items() if k not in ROUTER_FIELDS}
    return RouterSettings(**known, extra=freeze(extra))


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)

