"""The feature sections of the config as frozen, typed settings, resolved when it is loaded.

``resolve`` is the one place where a section of the file and the active profile's section of
the same name are merged (the profile's keys replace the file's, key by key), so an adapter
with a bad ``budgets``, ``masking``, ``hedging``, ... section fails when it is constructed,
not at its first call. Fields carry the value rules of ``_config_schema`` and every problem goes
through ``_config_errors.config_error``: file, key path (where the value was written: the file's
section or the profile's), what is wrong and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from .validation_errors import config_error, problem, spec, unknown_keys
from .schema import Choice, Flag, Num, Strings, Text, join_key, suggest
from .litellm_keys import LiteLLMSettings, proxy_only_keys
from .._observability.alert_rules import AlertSettings
from .._prompts.sources import LABEL_RE

__all__ = ["BudgetLimit", "BudgetsSettings", "ExperimentSettings", "HedgingSettings",
           "LangfuseSection", "LiteLLMSettings", "MaskPattern", "MaskingSettings",
           "PromptsSettings", "Section", "Settings", "StoreSettings", "resolve"]

SCOPES = ("user", "session", "agent", "tag", "environment")
PERIODS = ("day", "week", "month", "total")
STICKY_BY = ("user_id", "session_id")
_BUDGET_EXAMPLE = "e.g. {scope: user, limit: 5.00, period: day}"
_EXPERIMENT_EXAMPLE = "e.g. experiments: {my-prompt: {variants: {prod-a: 50, prod-b: 50}}}"

S = TypeVar("S", bound=BaseModel)
T = TypeVar("T", bound="Section")


class Section(BaseModel):
    """A frozen settings mapping whose unknown keys are errors with a suggestion."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    what: ClassVar[str] = "this section"
    internal: ClassVar[tuple[str, ...]] = ()    # fields set by the loader, not by the file

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, value: Any) -> Any:
        if isinstance(value, BaseModel):
            return value
        own: dict[str, Any] = {}            # keys the loader sets (not offered as fixes)
        if isinstance(value, Mapping):
            own = {k: v for k, v in value.items() if k in cls.internal}
            value = {k: v for k, v in value.items() if k not in cls.internal}
        valid = [f for f in cls.model_fields if f not in cls.internal]
        return {**unknown_keys(value, valid, cls.what), **own}

    def given(self) -> dict[str, Any]:
        """The keys the file (or the profile) wrote, with their checked values."""
        return {name: getattr(self, name) for name in self.model_fields_set}


def _key(info: ValidationInfo) -> str:
    return str((info.context or {}).get("key", ""))


# ----------------------------------------------------------------------------------- hedging


class HedgingSettings(Section):
    """``router_settings.hedging``: when a slow attempt is raced against one more."""

    what: ClassVar[str] = "hedging"
    after_ms: Annotated[float | None, spec(Num(low=0, low_open=True, example="500"))] = None
    after_percentile: Annotated[float | None, spec(Num(low=0, high=100, low_open=True,
                                                       example="95"))] = None
    min_samples: Annotated[int, spec(Num(low=1, integer=True, example="20"))] = 20
    default_after_ms: Annotated[float, spec(Num(low=0, low_open=True, example="2000"))] = 2000.0
    max_extra: Annotated[int, spec(Num(low=0, integer=True, example="1"))] = 1
    cooldown_after: Annotated[int, spec(Num(low=0, integer=True, example="5"))] = 5

    @model_validator(mode="before")
    @classmethod
    def _named_percentile(cls, value: Any) -> Any:
        if isinstance(value, Mapping) and isinstance(value.get("after_percentile"), str):
            named = re.fullmatch(r"\s*[pP](\d+(?:\.\d+)?)\s*", value["after_percentile"])
            if named:                               # "p95", as percentiles are usually named
                return {**value, "after_percentile": float(named.group(1))}
        return value

    @model_validator(mode="after")
    def _one_mode(self) -> HedgingSettings:
        if (self.after_ms is None) == (self.after_percentile is None):
            raise problem("set one of after_ms and after_percentile",
                          "write hedging: {after_ms: 500} (a fixed delay) or hedging: "
                          "{after_percentile: 95} (of the group's recent latencies)")
        return self


# ----------------------------------------------------------------------------------- budgets


class BudgetLimit(Section):
    what: ClassVar[str] = "a budget limit"
    internal: ClassVar[tuple[str, ...]] = ("key",)
    scope: Annotated[str, spec(Choice(SCOPES))]
    limit: Annotated[float, spec(Num(low=0, example="5.00"))]
    period: Annotated[str, spec(Choice(PERIODS))]
    id: Annotated[str | None, spec(Text(non_empty=True))] = None
    key: str = ""               # where it is configured (budgets.limits[0]), for messages

    @model_validator(mode="before")
    @classmethod
    def _complete(cls, value: Any) -> Any:
        if isinstance(value, BaseModel):
            return value
        if not isinstance(value, Mapping):
            raise problem("a budget limit must be a mapping", f"write {_BUDGET_EXAMPLE}")
        for name in ("scope", "limit", "period"):
            if value.get(name) is None and not set(value) - set(cls.model_fields):
                raise problem(f"{name} is missing", f"add {name}: ... ({_BUDGET_EXAMPLE})",
                              at=name)
        return value


class BudgetsSettings(Section):
    """``budgets``: USD limits per scope and period (see ``budgets.py``)."""

    what: ClassVar[str] = "budgets"
    soft_threshold: Annotated[float, spec(Num(low=0, high=1, low_open=True,
                                              example="0.8"))] = 0.8
    fail_open: Annotated[bool, spec(Flag())] = False
    limits: tuple[BudgetLimit, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _limits_list(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, Mapping) or "limits" not in value:
            return value
        limits = value["limits"]
        if not isinstance(limits, (list, tuple)):
            raise problem(f"expected a list, got {limits!r}"[:80], "write a YAML list",
                          at="limits")
        where = join_key(_key(info), "limits")      # each limit knows where it was written
        return {**value, "limits": [
            {**item, "key": join_key(where, i)} if isinstance(item, Mapping) else item
            for i, item in enumerate(limits)]}

    @model_validator(mode="after")
    def _distinct(self) -> BudgetsSettings:
        seen: dict[tuple[str, str | None, str], str] = {}
        for i, rule in enumerate(self.limits):
            same = seen.setdefault((rule.scope, rule.id, rule.period), rule.key)
            if same != rule.key:
                raise problem(f"the same budget ({rule.scope}"
                              f"{' ' + repr(rule.id) if rule.id else ''}, per {rule.period}) "
                              f"is already defined at {same}", "keep one of the two",
                              at=f"limits[{i}]")
        return self


# ----------------------------------------------------------------------------------- prompts


def _seconds(name: str, default: float, *, positive: bool) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or \
                positive and value == 0:
            raise problem(f"must be a {'positive' if positive else 'non-negative'} number "
                          f"of seconds, not {value!r}", f"e.g. {name}: {default:g}")
        return float(value)
    return check


class ExperimentSettings(Section):
    """One prompt's A/B split: Langfuse labels and their relative weights."""

    what: ClassVar[str] = "an experiment"
    variants: tuple[tuple[str, float], ...]
    sticky_by: str = "user_id"

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, value: Any) -> Any:
        if isinstance(value, BaseModel):
            return value
        if not isinstance(value, Mapping):
            raise problem("must be a mapping with variants (and sticky_by)", _EXPERIMENT_EXAMPLE)
        unknown = sorted(map(str, set(value) - set(cls.model_fields)))
        if unknown:
            raise problem(f"unknown key {unknown[0]!r}",
                          suggest(unknown[0], cls.model_fields, what="valid keys"), at=unknown[0])
        variants = value.get("variants")
        if isinstance(variants, tuple):
            return value
        if not isinstance(variants, Mapping) or not variants:
            raise problem("variants must map labels to weights", _EXPERIMENT_EXAMPLE,
                          at="variants")
        pairs = []
        for label, weight in variants.items():
            if not isinstance(label, str) or not LABEL_RE.match(label):
                raise problem(f"{label!r} is not a Langfuse label",
                              "use lowercase letters, digits, '_', '-' or '.'", at="variants")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or \
                    not weight > 0 or weight == float("inf"):
                raise problem(f"weight of {label!r} must be a positive number, not {weight!r}",
                              "weights are relative: 50 and 50, or 90 and 10",
                              at=f"variants.{label}")
            pairs.append((label, float(weight)))
        sticky_by = value.get("sticky_by", "user_id")
        if sticky_by not in STICKY_BY:
            raise problem(f"sticky_by must be user_id or session_id, not {sticky_by!r}",
                          suggest(sticky_by, STICKY_BY, what="valid values"), at="sticky_by")
        return {"variants": tuple(pairs), "sticky_by": sticky_by}


class PromptsSettings(Section):
    """``prompts``: where prompts come from and how long they are cached."""

    what: ClassVar[str] = "prompts"
    dir: str | None = None
    cache_ttl: float = 60.0
    fetch_timeout: float = 2.0
    prefetch: tuple[str, ...] = ()
    experiments: Mapping[str, ExperimentSettings] = {}

    @model_validator(mode="before")
    @classmethod
    def _values(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        out = dict(value)
        for name, default, positive in (("cache_ttl", 60.0, False), ("fetch_timeout", 2.0, True)):
            if name in out:
                try:
                    out[name] = _seconds(name, default, positive=positive)(out[name])
                except PydanticCustomError as exc:
                    ctx = exc.context or {}
                    raise problem(str(ctx["problem"]), str(ctx["fix"]), at=name) from None
        if "prefetch" in out:
            names = out["prefetch"] or []
            if not isinstance(names, (list, tuple)) or \
                    not all(isinstance(n, str) and n for n in names):
                raise problem("must be a list of prompt names",
                              "e.g. prefetch: [smart-scheduling-system-v1]", at="prefetch")
            out["prefetch"] = tuple(names)
        if "dir" in out and not isinstance(out["dir"] or "", str):
            raise problem("must be a directory path", "e.g. dir: prompts", at="dir")
        experiments = out.get("experiments")
        if "experiments" in out and (experiments is None or experiments == {}):
            out["experiments"] = {}
        elif experiments is not None and not isinstance(experiments, Mapping):
            raise problem("must map prompt names to experiments", _EXPERIMENT_EXAMPLE,
                          at="experiments")
        return out


# ----------------------------------------------------------------------------- masking, store


class MaskPattern(Section):
    what: ClassVar[str] = "a masking pattern"
    name: str = "redacted"
    regex: str
    replacement: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _regex(cls, value: Any) -> Any:
        if isinstance(value, BaseModel):
            return value
        if not isinstance(value, Mapping) or not isinstance(value.get("regex"), str):
            raise problem("each pattern needs a 'regex' string",
                          'e.g. {name: patient_id, regex: "PT-\\\\d{6}", '
                          'replacement: "[PATIENT_ID]"}')
        try:
            re.compile(value["regex"])
        except re.error as exc:
            raise problem(f"invalid regular expression: {exc}",
                          "fix the pattern (Python's re syntax)") from None
        return {k: (str(v) if k in ("name", "replacement") and v is not None else v)
                for k, v in value.items()}


class MaskingSettings(Section):
    """``masking``: what is masked before a record leaves the process (see ``masking.py``)."""

    what: ClassVar[str] = "masking"
    enabled: Annotated[bool | None, spec(Flag())] = None   # None: on in production only
    detectors: tuple[str, ...] | None = None                # None: every detector
    patterns: tuple[MaskPattern, ...] = ()
    function: str | None = None                             # 'module:callable'
    store: Annotated[bool, spec(Flag())] = True
    pseudonym_key: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _values(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        from .._observability.pseudonyms import MIN_LENGTH
        from .._observability.masking import DETECTORS

        wanted = value.get("detectors", list(DETECTORS))
        if not isinstance(wanted, (list, tuple)) or any(d not in DETECTORS for d in wanted):
            raise problem(f"detectors must be a list drawn from {', '.join(DETECTORS)}; got "
                          f"{wanted!r}", f"e.g. detectors: [{DETECTORS[0]}]", at="detectors")
        spec_ = value.get("function")
        if spec_ is not None and (not isinstance(spec_, str) or ":" not in spec_):
            raise problem(f"function must be 'module:callable', not {spec_!r}",
                          "e.g. function: my_project.masking:mask", at="function")
        key = value.get("pseudonym_key")
        if key is not None and (not isinstance(key, str) or len(key) < MIN_LENGTH):
            raise problem(f"the pseudonym key must be a string of at least {MIN_LENGTH} "
                          "characters", 'make one with python -c "import secrets; '
                          'print(secrets.token_urlsafe(32))"', at="pseudonym_key")
        if value.get("patterns") is None and "patterns" in value:
            return {**value, "patterns": ()}
        return value


class StoreSettings(Section):
    """``store``: whether calls are kept, and where: a SQLite file (``path``) or a database
    (``url``: ``postgresql://…`` or ``sqlite:///…``)."""

    what: ClassVar[str] = "store"
    enabled: Annotated[bool, spec(Flag())] = True
    path: Annotated[str | None, spec(Text())] = None
    url: Annotated[str | None, spec(Text())] = None
    # Where records are committed and delivered: a recording process of their own (the calls'
    # interpreter keeps only masking), or threads of the calling process.
    recorder: Annotated[str, spec(Choice(("process", "thread")))] = "process"


class LangfuseSection(Section):
    """``langfuse`` (top level, and each profile's): the profile's keys win."""

    what: ClassVar[str] = "langfuse"
    enabled: Annotated[bool | None, spec(Flag())] = None
    default_tags: Annotated[tuple[str, ...], spec(Strings())] = ()
    sample_rate: Annotated[float | None, spec(Num(low=0, high=1, example="0.5"))] = None


# ------------------------------------------------------------------------------- the whole


class Settings(BaseModel):
    """Every feature section of one environment, checked and merged."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    budgets: BudgetsSettings = BudgetsSettings()
    hedging: HedgingSettings | None = None      # None: off (absent, null or max_extra: 0)
    prompts: PromptsSettings = PromptsSettings()
    masking: MaskingSettings = MaskingSettings()
    store: StoreSettings = StoreSettings()
    langfuse: LangfuseSection = LangfuseSection()
    litellm: LiteLLMSettings = LiteLLMSettings()
    alerts: AlertSettings | None = None     # None: neither the file nor the profile has any
    proxy_only: tuple[str, ...] = ()    # LiteLLM proxy keys the file has (not used here)


def _layer(model: type[S], value: Any, key: str, file: str | None) -> S:
    try:
        return model.model_validate(value, context={"key": key})
    except ValidationError as exc:
        raise config_error(exc, file=file, key=key) from None


def _merged(model: type[T], layers: list[tuple[Any, str]], file: str | None) -> T:
    """The section of each layer checked where it was written, then the later layers' keys
    over the earlier ones'."""
    values: dict[str, Any] = {}
    for value, key in layers:
        values.update(_layer(model, value, key, file).given())
    return _layer(model, values, layers[-1][1] if layers else "", file)


def resolve(data: Mapping[str, Any], profile: Mapping[str, Any], *, profile_key: str,
            router: Mapping[str, Any], router_key: str, file: str | None,
            alerts: Callable[[], AlertSettings | None] | None = None) -> Settings:
    """The settings of one environment: ``data`` is the interpolated file, ``profile`` the
    active profile's checked settings, ``router`` the merged router_settings (whose
    ``hedging`` was written at ``router_key``)."""
    def layers(name: str) -> list[tuple[Any, str]]:
        out = [(data[name], name)] if name in data else []
        if name in profile:
            out.append((profile[name], join_key(profile_key, name)))
        return out

    hedging = None
    if router.get("hedging"):
        hedging = _layer(HedgingSettings, router["hedging"], join_key(router_key, "hedging"),
                         file)
        if hedging.max_extra <= 0:
            hedging = None
    litellm = _layer(LiteLLMSettings, data.get("litellm_settings"), "litellm_settings", file)
    store = _merged(StoreSettings, layers("store"), file)
    if store.url:       # its form, and the driver it needs: known now, not at the first call
        from .._observability.store_dialect import parse_store_url

        parse_store_url(store.url, key="store.url", source=file)
    return Settings(
        budgets=_merged(BudgetsSettings, layers("budgets"), file),
        hedging=hedging,
        prompts=_merged(PromptsSettings, layers("prompts"), file),
        masking=_merged(MaskingSettings, layers("masking"), file),
        store=store,
        langfuse=_merged(LangfuseSection, layers("langfuse"), file),
        litellm=litellm,
        alerts=alerts() if alerts is not None else None,
        proxy_only=proxy_only_keys(data))


def check_section(model: type[S], value: Any, *, key: str, file: str | None) -> S:
    """One section checked on its own (``AlertSettings.from_mapping``-style callers)."""
    return _layer(model, value, key, file)
