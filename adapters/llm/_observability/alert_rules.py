"""What to watch: the ``alerts:`` config section, validated into rules, and their windows.

Kept apart from ``alerts.py`` (which evaluates and notifies) so the config's meaning can be read
and tested on its own. A window is either rolling (a number of seconds: ``30s``, ``15m``, ``1h``)
or a UTC calendar period (``day``, ``week``, ``month``) that starts afresh at its boundary, as a
daily budget does. Every mistake is a ``ConfigError`` naming the key path and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeGuard, cast

from .._config.schema import Checker, Choice, Num, Text, join_key, suggest
from .._durations import parse_duration

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
        check = Checker(source)
        keys = {name: join_key(profile_key if name in own else "alerts", name)
                for name in (*check.mapping(top, "alerts"), *check.mapping(own, profile_key))}
        merged = {**top, **own}
        return _settings(check, merged, keys) if merged else None

    @classmethod
    def from_mapping(cls, raw: Any, *, source: str | None = None) -> AlertSettings:
        """Settings from a raw ``alerts:`` mapping (``source`` names its file in errors)."""
        check = Checker(source)
        section = check.mapping(raw, "alerts")
        return _settings(check, section, {name: join_key("alerts", name) for name in section})


def _settings(check: Checker, raw: Mapping[str, Any], keys: Mapping[str, str]) -> AlertSettings:
    for name in raw:
        if name not in _KEYS:
            raise check.unknown(name, keys[name].rpartition(".")[0], "alerts", _KEYS)
    webhook = _webhook(check, raw.get("webhook"), keys.get("webhook", "alerts.webhook"))
    actions_key = keys.get("actions", "alerts.actions")
    actions = raw.get("actions", ["log", "webhook"] if webhook[0] else ["log"])
    if not isinstance(actions, list) or not actions:
        raise check.error(actions_key, f"expected a non-empty list of actions, got {actions!r}",
                          "write e.g. actions: [log, webhook]")
    for i, action in enumerate(actions):
        if action not in ACTIONS:
            raise check.error(join_key(actions_key, i), f"unknown action {action!r}",
                              suggest(action, ACTIONS, what="actions"))
    if "webhook" in actions and not webhook[0]:
        raise check.error(join_key(keys.get("webhook", "alerts.webhook"), "url"),
                          "webhook is in alerts.actions but the webhook has no url (when it "
                          "reads ${VAR}, that variable is not set)",
                          "set it, e.g. webhook: {url: \"${ALERT_WEBHOOK_URL}\"} and export "
                          "ALERT_WEBHOOK_URL=https://hooks.slack.com/services/..., or remove "
                          "webhook from alerts.actions")
    url, retries, timeout = webhook
    return AlertSettings(rules=_rules(check, raw.get("rules"), keys.get("rules", "alerts.rules")),
                         actions=tuple(dict.fromkeys(actions)), webhook_url=url,
                         retries=retries, timeout=timeout)


def _webhook(check: Checker, raw: Any, key: str) -> tuple[str | None, int, float]:
    settings = check.mapping(raw, key, what="a mapping such as {url: \"${ALERT_WEBHOOK_URL}\"}")
    for name in settings:
        if name not in _WEBHOOK_KEYS:
            raise check.unknown(name, key, "alerts.webhook", _WEBHOOK_KEYS)
    url = check.check(settings.get("url"), Text(), join_key(key, "url"))
    if url is not None and not re.fullmatch(r"https?://[^/\s]+\S*", url.strip()):
        raise check.error(join_key(key, "url"), "the webhook url must be an http:// or https:// "
                          "address", "use the incoming-webhook URL your chat tool gave you, e.g. "
                          "https://hooks.slack.com/services/...")
    retries = check.check(settings.get("retries", 3), Num(low=0, high=10, integer=True,
                                                          example="3"), join_key(key, "retries"))
    timeout = check.check(settings.get("timeout", 5), Num(low=0, low_open=True, seconds=True,
                                                          example="5"), join_key(key, "timeout"))
    return (url.strip() if url else None), int(retries), float(timeout)


def _rules(check: Checker, raw: Any, key: str) -> tuple[Rule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise check.error(key, f"expected a list of rules, got {type(raw).__name__}",
                          f"write rules: [...], each {_EXAMPLE}")
    rules: list[Rule] = []
    for i, entry in enumerate(raw):
        rule = _rule(check, entry, join_key(key, i))
        if any(r.name == rule.name for r in rules):
            raise check.error(join_key(join_key(key, i), "name"), f"the name {rule.name!r} is "
                              "already used by another rule", "give each rule its own name")
        rules.append(rule)
    return tuple(rules)


def _rule(check: Checker, raw: Any, key: str) -> Rule:
    if not isinstance(raw, Mapping):
        raise check.error(key, f"a rule must be a mapping, got {raw!r}", f"write {_EXAMPLE}")
    entry = check.mapping(raw, key)
    for name in entry:
        if name not in _RULE_KEYS:
            raise check.unknown(name, key, "an alert rule", _RULE_KEYS)
    for name in ("name", "metric", "above", "window"):
        if entry.get(name) is None:
            raise check.error(join_key(key, name), f"{name} is missing", f"add it, {_EXAMPLE}")
    name = check.check(entry["name"], Text(optional=False, non_empty=True), join_key(key, "name"))
    metric = cast(Metric, check.check(entry["metric"], Choice(METRICS), join_key(key, "metric")))
    above = float(check.check(entry["above"], Num(low=0, example="0.05"), join_key(key, "above")))
    if metric == "error_rate" and above > 1:
        raise check.error(join_key(key, "above"), f"an error rate is a fraction, so {above:g} "
                          "can never be crossed", f"write {above / 100:g} for {above:g} %")
    window = _window(check, entry["window"], join_key(key, "window"))
    if metric == "latency_p95_ms" and isinstance(window, str):
        raise check.error(join_key(key, "window"), f"a p95 over a calendar {window} would keep "
                          "every latency of the period in memory",
                          "use a rolling window such as 15m, 1h or 24h")
    min_calls = check.check(entry.get("min_calls", 0 if metric == "cost" else 10),
                            Num(low=0, integer=True, example="20"), join_key(key, "min_calls"))
    return Rule(name=name, metric=metric, above=above, window=window, min_calls=int(min_calls))


def _window(check: Checker, raw: Any, key: str) -> Window:
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
            raise check.error(key, f"{raw!r} is not a window", fix) from None
    if not seconds > 0:
        raise check.error(key, f"the window must be longer than 0 s, got {raw!r}", fix)
    return seconds


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
