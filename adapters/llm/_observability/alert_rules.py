"""What to watch: the ``alerts:`` config section, validated into rules, and their windows.

Kept apart from ``alerts.py`` (which evaluates and notifies) so the config's meaning can be read
and tested on its own. A window is either rolling (a number of seconds: ``30s``, ``15m``, ``1h``)
or a UTC calendar period (``day``, ``week``, ``month``) that starts afresh at its boundary, as a
daily budget does. The section is checked by frozen pydantic models with the config's value rules
(``spec``), and every mistake is a ``ConfigError`` from ``config_error`` naming the key path and
the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, TypeGuard, cast

from pydantic import (BaseModel, BeforeValidator, ConfigDict, ValidationError, field_validator,
                      model_validator)

from .._config.schema import Choice, Num, Text, join_key, show, suggest
from .._config.validation_errors import config_error, problem, spec, unknown_keys
from .._durations import parse_duration
from ..errors import ConfigError

if TYPE_CHECKING:
    from .._config.loader import Config

__all__ = ["ACTIONS", "CALENDAR", "METRICS", "AlertSettings", "Calendar", "Rule", "Window",
           "describe_window", "format_value", "is_calendar", "metric_label", "period_start",
           "window_start"]

Metric = Literal["error_rate", "latency_mean_ms", "latency_p95_ms", "cost"]
Calendar = Literal["day", "week", "month"]
Window = float | Calendar           # rolling seconds, or a UTC calendar period

METRICS: Final[tuple[str, ...]] = ("error_rate", "latency_mean_ms", "latency_p95_ms", "cost")
CALENDAR: Final[tuple[str, ...]] = ("day", "week", "month")
ACTIONS: Final[tuple[str, ...]] = ("log", "webhook")
_KEYS: Final = ("webhook", "actions", "rules")
_RULE_KEYS: Final = ("name", "metric", "above", "window", "min_calls")
_WEBHOOK_KEYS: Final = ("url", "retries", "timeout")
_LABELS: Final = MappingProxyType({"error_rate": "error rate", "latency_mean_ms": "mean latency",
                                   "latency_p95_ms": "p95 latency", "cost": "cost"})
_EXAMPLE: Final = ("e.g. {name: high-error-rate, metric: error_rate, above: 0.05, window: 15m, "
                   "min_calls: 20}")


@dataclass(frozen=True)
class Rule:
    """Alert when ``metric`` over ``window`` is above ``above`` (given ``min_calls`` calls)."""

    name: str
    metric: Metric
    above: float
    window: Window
    min_calls: int


@dataclass(frozen=True)
class AlertSettings:
    """The validated ``alerts:`` section (the profile's keys over the top-level ones)."""

    rules: tuple[Rule, ...]
    actions: tuple[str, ...] = ("log",)
    webhook_url: str | None = None
    retries: int = 3
    timeout: float = 5.0

    @classmethod
    def from_config(cls, config: Config) -> AlertSettings | None:
        """The config's alert settings (resolved at load); None when neither the file nor the
        profile has any."""
        settings: AlertSettings | None = config.settings.alerts
        return settings

    @classmethod
    def from_sections(cls, top: Any, own: Any, *, profile_key: str,
                      source: str | None) -> AlertSettings | None:
        """The file's ``alerts`` with the profile's (at ``profile_key``) keys over them."""
        top, own = top or {}, own or {}
        keys = {name: join_key(profile_key if name in own else "alerts", name)
                for name in (*_mapping(top, "alerts", source),
                             *_mapping(own, profile_key, source))}
        merged = {**top, **own}
        return _settings(merged, keys, source) if merged else None

    @classmethod
    def from_mapping(cls, raw: Any, *, source: str | None = None) -> AlertSettings:
        """Settings from a raw ``alerts:`` mapping (``source`` names its file in errors)."""
        section = _mapping(raw, "alerts", source)
        return _settings(section, {name: join_key("alerts", name) for name in section}, source)


def _mapping(value: Any, key: str, source: str | None) -> dict[str, Any]:
    if value is not None and not isinstance(value, Mapping):
        raise ConfigError(f"expected a mapping, got {show(value, key)}", path=source, key=key,
                          fix="write key: value pairs (a YAML mapping)")
    return {str(k): v for k, v in (value or {}).items()}


def _window(raw: Any) -> Window:
    fix = "write a rolling duration such as 30s, 15m, 1h, 24h or 1w, or a UTC calendar " \
          "period: day, week or month"
    if isinstance(raw, str) and is_calendar(raw.strip()):
        return cast(Calendar, raw.strip())
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        seconds = float(raw)
    else:
        try:
            seconds = parse_duration(str(raw))
        except ValueError:
            raise problem(f"{raw!r} is not a window", fix) from None
    if not seconds > 0:
        raise problem(f"the window must be longer than 0 s, got {raw!r}", fix)
    return seconds


class _Webhook(BaseModel):
    """``alerts.webhook``: where the ``webhook`` action posts."""

    model_config = ConfigDict(frozen=True)
    url: Annotated[str | None, spec(Text())] = None
    retries: Annotated[int, spec(Num(low=0, high=10, integer=True, example="3"))] = 3
    timeout: Annotated[float, spec(Num(low=0, low_open=True, seconds=True, example="5"))] = 5.0

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, value: Any) -> Any:
        if isinstance(value, BaseModel):
            return value
        if value is not None and not isinstance(value, Mapping):
            raise problem(f"expected a mapping such as {{url: \"${{ALERT_WEBHOOK_URL}}\"}}, got "
                          f"{show(value, 'webhook')}", "write key: value pairs (a YAML mapping)")
        return unknown_keys(value, _WEBHOOK_KEYS, "alerts.webhook")

    @field_validator("url")
    @classmethod
    def _http(cls, url: str | None) -> str | None:
        if url is not None and not re.fullmatch(r"https?://[^/\s]+\S*", url.strip()):
            raise problem("the webhook url must be an http:// or https:// address",
                          "use the incoming-webhook URL your chat tool gave you, e.g. "
                          "https://hooks.slack.com/services/...")
        return url.strip() if url else None


class _Rule(BaseModel):
    """One entry of ``alerts.rules``."""

    model_config = ConfigDict(frozen=True)
    name: Annotated[str, spec(Text(optional=False, non_empty=True))]
    metric: Annotated[Metric, spec(Choice(METRICS))]
    above: Annotated[float, spec(Num(low=0, example="0.05"))]
    window: Annotated[Window, BeforeValidator(_window)]
    min_calls: Annotated[int | None, spec(Num(low=0, integer=True, example="20"))] = None

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, value: Any) -> Any:
        if isinstance(value, BaseModel):
            return value
        if not isinstance(value, Mapping):
            raise problem(f"a rule must be a mapping, got {value!r}", f"write {_EXAMPLE}")
        entry = unknown_keys(value, _RULE_KEYS, "an alert rule")
        for name in ("name", "metric", "above", "window"):
            if entry.get(name) is None:
                raise problem(f"{name} is missing", f"add it, {_EXAMPLE}", at=name)
        return entry

    @model_validator(mode="after")
    def _meaningful(self) -> _Rule:
        if self.metric == "error_rate" and self.above > 1:
            raise problem(f"an error rate is a fraction, so {self.above:g} can never be "
                          f"crossed", f"write {self.above / 100:g} for {self.above:g} %",
                          at="above")
        if self.metric == "latency_p95_ms" and isinstance(self.window, str):
            raise problem(f"a p95 over a calendar {self.window} would keep every latency of the "
                          "period in memory", "use a rolling window such as 15m, 1h or 24h",
                          at="window")
        return self

    def rule(self) -> Rule:
        calls = self.min_calls if self.min_calls is not None else \
            0 if self.metric == "cost" else 10
        return Rule(name=self.name, metric=self.metric, above=float(self.above),
                    window=self.window, min_calls=int(calls))


class _Alerts(BaseModel):
    """The whole ``alerts`` section (the profile's keys already over the file's)."""

    model_config = ConfigDict(frozen=True)
    webhook: _Webhook = _Webhook()
    actions: list[Any] | None = None
    rules: tuple[_Rule, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, value: Any) -> Any:
        if isinstance(value, BaseModel):
            return value
        section = unknown_keys(value, _KEYS, "alerts")
        rules = section.get("rules")
        if rules is None:
            section.pop("rules", None)
        elif not isinstance(rules, list):
            raise problem(f"expected a list of rules, got {type(rules).__name__}",
                          f"write rules: [...], each {_EXAMPLE}", at="rules")
        actions = section.get("actions", ())
        if "actions" in section and (not isinstance(actions, list) or not actions):
            raise problem(f"expected a non-empty list of actions, got {actions!r}",
                          "write e.g. actions: [log, webhook]", at="actions")
        return section

    @model_validator(mode="after")
    def _consistent(self) -> _Alerts:
        for i, action in enumerate(self.actions or ()):
            if action not in ACTIONS:
                raise problem(f"unknown action {action!r}", suggest(action, ACTIONS,
                                                                    what="actions"),
                              at=f"actions[{i}]")
        if "webhook" in self.chosen() and not self.webhook.url:
            raise problem("webhook is in alerts.actions but the webhook has no url (when it "
                          "reads ${VAR}, that variable is not set)",
                          "set it, e.g. webhook: {url: \"${ALERT_WEBHOOK_URL}\"} and export "
                          "ALERT_WEBHOOK_URL=https://hooks.slack.com/services/..., or remove "
                          "webhook from alerts.actions", at="webhook.url")
        for i, rule in enumerate(self.rules):
            if any(r.name == rule.name for r in self.rules[:i]):
                raise problem(f"the name {rule.name!r} is already used by another rule",
                              "give each rule its own name", at=f"rules[{i}].name")
        return self

    def chosen(self) -> tuple[str, ...]:
        default = ["log", "webhook"] if self.webhook.url else ["log"]
        return tuple(dict.fromkeys(self.actions if self.actions is not None else default))


def _settings(raw: Mapping[str, Any], keys: Mapping[str, str], source: str | None
              ) -> AlertSettings:
    """``raw`` checked; each problem is placed under the key its top-level name came from."""
    try:
        section = _Alerts.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        at = str((first.get("ctx") or {}).get("at") or "")
        name = str(first["loc"][0]) if first["loc"] else re.split(r"[.\[]", at)[0]
        parent = keys.get(name, join_key("alerts", name)).rpartition(".")[0]
        raise config_error(exc, file=source, key=parent) from None
    return AlertSettings(rules=tuple(rule.rule() for rule in section.rules),
                         actions=section.chosen(), webhook_url=section.webhook.url,
                         retries=section.webhook.retries, timeout=section.webhook.timeout)


# -- windows and values, in words ---------------------------------------------------------------
def is_calendar(window: object) -> TypeGuard[Calendar]:
    return window in CALENDAR


def period_start(period: Calendar, at: float) -> float:
    """Unix time at which the UTC day, ISO week (from Monday) or month holding ``at`` began."""
    moment = datetime.fromtimestamp(at, timezone.utc)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "week":
        day -= timedelta(days=day.weekday())
    elif period == "month":
        day = day.replace(day=1)
    return day.timestamp()


def window_start(window: Window, now: float) -> float:
    """The earliest moment ``window`` covers at ``now``."""
    return now - window if isinstance(window, float) else period_start(window, now)


def describe_window(window: Window) -> str:
    """``over the last 15 min``, ``today (UTC)``: how a message names the window."""
    if isinstance(window, str):
        return {"day": "today", "week": "this week", "month": "this month"}[window] + " (UTC)"
    seconds = int(window) if float(window).is_integer() else window
    if isinstance(seconds, int) and seconds >= 60 and seconds % 3600 == 0:
        return f"over the last {seconds // 3600} h"
    if isinstance(seconds, int) and seconds >= 60 and seconds % 60 == 0:
        return f"over the last {seconds // 60} min"
    return f"over the last {seconds} s"


def metric_label(metric: str) -> str:
    return _LABELS.get(metric, metric)


def format_value(metric: str, value: float | None) -> str:
    """``12.5 %``, ``5,000 ms``, ``$100.00``: a value in the unit people read it in."""
    if value is None:
        return "-"
    if metric == "error_rate":
        return f"{value * 100:.1f}".removesuffix(".0") + " %"
    if metric.endswith("_ms"):
        return f"{value:,.0f} ms"
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.6f}"
