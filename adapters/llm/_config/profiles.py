"""``environments.<name>`` profiles as frozen pydantic models, and the one profile merge.

``merge`` is where the file's settings and the active profile's overrides meet: the profile's
``router_settings`` keys over the file's, its ``langfuse`` over the top-level section, and its
feature sections (masking, budgets, alerts, ...) over the file's, key by key, through
``settings.resolve``. Every problem is worded by ``validation_errors.config_error``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ValidationError, ValidationInfo, field_validator, model_validator

from .deployments import known_group
from .frozen import FrozenDict, empty, freeze
from .schema import PROFILE_EXTRA_KEYS, Flag, Table, Text, join_key, masked, show, suggest
from .settings import LangfuseSection, Section, Settings, check_section, resolve
from .settings_router import RouterSection, check_router_settings
from .validation_errors import config_error, problem, spec
from .._observability.alert_rules import AlertSettings
from ..errors import ConfigError

__all__ = ["LangfuseSettings", "Merged", "Profile", "ProfileSection", "merge", "profiles"]

DEFAULT_ENVIRONMENT = "development"
ENVIRONMENT_ENV_VAR = "ENVIRONMENT"


@dataclass(frozen=True)
class LangfuseSettings:
    enabled: bool | None = None     # None: the profile does not say
    default_tags: tuple[str, ...] = ()
    sample_rate: float | None = None


@dataclass(frozen=True, repr=False)
class Profile:
    """What one environment (development, production, ...) changes."""

    name: str
    default_model: str | None
    fallbacks_enabled: bool = True
    langfuse: LangfuseSettings = LangfuseSettings()
    simulated: bool = False         # every deployment served by the built-in simulator
    simulator: Mapping[str, Any] = field(default_factory=empty)
    router_settings: Mapping[str, Any] = field(default_factory=empty)  # overrides only
    extra: Mapping[str, Any] = field(default_factory=empty)  # masking, budgets, ... as written
    langfuse_given: Mapping[str, Any] = field(default_factory=empty, compare=False)

    def __repr__(self) -> str:
        return (f"Profile(name={self.name!r}, default_model={self.default_model!r}, "
                f"fallbacks_enabled={self.fallbacks_enabled!r}, langfuse={self.langfuse!r}, "
                f"simulated={self.simulated!r}, simulator={masked(self.simulator)!r}, "
                f"router_settings={masked(self.router_settings)!r}, "
                f"extra={masked(self.extra)!r})")


_TABLE = spec(Table())


class ProfileSection(Section):
    """One ``environments.<name>`` entry as written (``context``: its key and the groups)."""

    what: ClassVar[str] = "an environment profile"
    default_model: str | None = None
    fallbacks_enabled: Annotated[bool, spec(Flag())] = True
    langfuse: LangfuseSection = LangfuseSection()
    simulator: bool | dict[str, Any] = False
    router_settings: RouterSection = RouterSection()
    masking: Annotated[dict[str, Any], _TABLE] = {}
    budgets: Annotated[dict[str, Any], _TABLE] = {}
    alerts: Annotated[dict[str, Any], _TABLE] = {}
    prompts: Annotated[dict[str, Any], _TABLE] = {}
    store: Annotated[dict[str, Any], _TABLE] = {}
    description: Annotated[str | None, spec(Text())] = None

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, BaseModel) or value is None:
            return value
        key = str((info.context or {}).get("key", ""))
        if not isinstance(value, Mapping):
            raise problem(f"expected a mapping of profile settings, got {show(value, key)}",
                          "write key: value pairs (a YAML mapping)")
        if "cache" in value:
            raise problem("a profile's cache key is not read", f"the response cache is "
                          f"{key}.router_settings.cache, e.g. router_settings: "
                          "{cache: {type: local, ttl: 3600}}", at="cache")
        return value

    @field_validator("default_model", mode="before")
    @classmethod
    def _group(cls, value: Any, info: ValidationInfo) -> str:
        return known_group(value, tuple((info.context or {}).get("groups", ())))

    @field_validator("simulator", mode="before")
    @classmethod
    def _simulator(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, Mapping):
            return {str(k): v for k, v in value.items()}
        raise problem(f"expected true, false or a mapping, got {show(value, 'simulator')}",
                      "write simulator: true, or a mapping of simulator settings")

    def profile(self, name: str, base_langfuse: Mapping[str, Any]) -> Profile:
        given = self.model_fields_set
        langfuse_given = self.langfuse.given() if "langfuse" in given else {}
        langfuse = {**base_langfuse, **langfuse_given}
        return Profile(
            name=name, default_model=self.default_model,
            fallbacks_enabled=self.fallbacks_enabled,
            langfuse=_langfuse(langfuse),
            simulated=self.simulator is not False,
            simulator=freeze(self.simulator if isinstance(self.simulator, dict) else {}),
            router_settings=freeze(self.router_settings.given()
                                   if "router_settings" in given else {}),
            extra=freeze({k: getattr(self, k) for k in PROFILE_EXTRA_KEYS if k in given}),
            langfuse_given=freeze(langfuse_given))


def _langfuse(values: Mapping[str, Any]) -> LangfuseSettings:
    rate = values.get("sample_rate")
    return LangfuseSettings(enabled=values.get("enabled"),
                            default_tags=tuple(values.get("default_tags", ())),
                            sample_rate=None if rate is None else float(rate))


def profiles(value: Any, groups: tuple[str, ...], base_langfuse: Mapping[str, Any], *,
             file: str | None) -> dict[str, Profile]:
    """Each environment's profile; ``base_langfuse`` (the top-level section) under each one's.
    Without an ``environments`` section there is one, ``development``."""
    if value is not None and not isinstance(value, Mapping):
        raise ConfigError(f"expected a mapping of environment name to profile, got "
                          f"{show(value, 'environments')}", path=file, key="environments",
                          fix="write key: value pairs (a YAML mapping)")
    if not value:
        return {DEFAULT_ENVIRONMENT: Profile(name=DEFAULT_ENVIRONMENT, default_model=groups[0],
                                             langfuse=_langfuse(base_langfuse))}
    out: dict[str, Profile] = {}
    for name, raw in value.items():
        key = join_key("environments", str(name))
        try:
            section = ProfileSection.model_validate(raw, context={"key": key, "groups": groups})
        except ValidationError as exc:
            raise config_error(exc, file=file, key=key) from None
        out[str(name)] = section.profile(str(name), base_langfuse)
    return out


@dataclass(frozen=True)
class Merged:
    """The active environment: its profile, every profile, and the merged settings."""

    profile: Profile
    profiles: FrozenDict
    router: Mapping[str, Any]       # the file's router_settings with the profile's over them
    settings: Settings


def merge(data: Mapping[str, Any], sections: Mapping[str, Any], groups: tuple[str, ...],
          environment: str, env_source: str, *, file: str | None) -> Merged:
    """The one place the file's settings and ``environments.<environment>`` are merged;
    ``data`` is the interpolated file, ``sections`` its feature sections."""
    base_router = check_router_settings(data.get("router_settings"), key="router_settings",
                                        file=file)
    langfuse = check_section(LangfuseSection, data.get("langfuse"), key="langfuse",
                             file=file).given()
    every = profiles(data.get("environments"), groups, langfuse, file=file)
    if environment not in every:
        fix = suggest(environment, every, what="defined environments")
        if not data.get("environments"):
            fix += ("; without an environments section only 'development' exists: add one, "
                    f"or unset {ENVIRONMENT_ENV_VAR}")
        raise ConfigError(f"unknown environment {environment!r} (from {env_source})",
                          path=file, key="environments", fix=fix)
    profile = every[environment]
    router = {**base_router, **profile.router_settings}
    profile_key = join_key("environments", environment)
    router_key = join_key(profile_key, "router_settings") \
        if "hedging" in profile.router_settings else "router_settings"
    own = dict(profile.extra)
    if profile.langfuse_given:
        own["langfuse"] = profile.langfuse_given

    def alerts() -> AlertSettings | None:
        return AlertSettings.from_sections(sections.get("alerts"), own.get("alerts"),
                                           profile_key=join_key(profile_key, "alerts"),
                                           source=file)

    settings = resolve(sections, own, profile_key=profile_key, router=router,
                       router_key=router_key, file=file, alerts=alerts)
    return Merged(profile=profile, profiles=FrozenDict(every), router=router,
                  settings=settings)
