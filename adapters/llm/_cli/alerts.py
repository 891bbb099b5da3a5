"""``llm-adapter alerts check`` and ``alerts test``: the config's alert rules on the command line.

``check`` applies the rules to the local store and exits 1 while one is firing, so a cron job
can page; ``test`` sends a sample alert through the configured actions, so you see where alerts
land before one matters. Nothing here imports litellm; ``register(main)`` adds the group.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import sys
import time
from contextlib import closing

import click

from .tables import Col, FitTable, print_fit, wide_option
from .._observability.alert_rules import AlertSettings, Rule, describe_window, format_value
from .._observability.alerts import Delivery, Notifier, Reading, reading_dict, store_readings
from .reports import _console, _db_option, _echo_json, _esc, _json_option, _open
from .._config.loader import load_config
from ..errors import LLMAdapterError
from .._observability.migrations import migrate

__all__ = ["alerts", "register"]

_config_option = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                              help="Config file (default: $LLM_ADAPTER_CONFIG or "
                                   "config/litellm_config.yaml).")
_NO_ALERTS = """\
no alerts are configured. Add an alerts: section to the config (or to an environment's
profile), for example:

  alerts:
    webhook: {url: "${ALERT_WEBHOOK_URL}"}   # a Slack-compatible incoming webhook
    actions: [log, webhook]                  # default: log, plus webhook when it has a url
    rules:
      - {name: high-error-rate, metric: error_rate, above: 0.05, window: 15m, min_calls: 20}
      - {name: slow-p95, metric: latency_p95_ms, above: 5000, window: 15m}
      - {name: daily-cost, metric: cost, above: 100, window: day}   # day|week|month: UTC

metric: error_rate | latency_mean_ms | latency_p95_ms | cost; window: 30s, 15m, 1h, 24h
(rolling) or day, week, month."""


def register(main: click.Group) -> None:
    """Add the ``alerts`` group to the ``llm-adapter`` command."""
    main.add_command(alerts)


@click.group()
def alerts() -> None:
    """Alert rules (the config's alerts: section): check them over the store, send a test."""


def _settings(config_path: str | None, environment: str | None) -> AlertSettings | None:
    try:
        return AlertSettings.from_config(load_config(config_path, environment=environment))
    except LLMAdapterError as exc:
        raise click.ClickException(str(exc)) from None


@alerts.command()
@_db_option
@click.option("--env", "environment",
              help="Use this environment's profile and count only its calls (default: the "
                   "$ENVIRONMENT profile, every call).")
@_config_option
@_json_option
@click.option("--notify", is_flag=True, help="Also send the firing rules through the actions.")
@wide_option
def check(db: str | None, environment: str | None, config_path: str | None, as_json: bool,
          notify: bool, wide: bool) -> None:
    """Apply the alert rules to the local store; exit 1 while one is firing (for cron)."""
    settings = _settings(config_path, environment)
    if settings is None or not settings.rules:
        click.echo(_NO_ALERTS if settings is None else
                   "the alerts: section has no rules, so there is nothing to check", err=True)
        return
    now = time.time()
    conn = _open(db) or _empty_store()
    with closing(conn):
        readings = store_readings(conn, settings, now=now, env=environment)
    firing = [r for r in readings if r.breaching]
    sent: list[Delivery] = []
    if notify:
        notifier = Notifier(settings)
        for reading in firing:
            sent += notifier.deliver(reading.event("firing", now))
    if as_json:
        _echo_json({"env": environment, "firing": [r.rule.name for r in firing],
                    "rules": [reading_dict(r, firing=r.breaching) for r in readings],
                    "notified": [dataclasses.asdict(d) for d in sent]})
    else:
        print_fit(_console(), _readings_table(readings, environment), wide=wide)
        _print_deliveries(sent)
    sys.exit(1 if firing else 0)


def _empty_store() -> sqlite3.Connection:
    """No store yet: the rules read an empty one, so every value is shown (as no calls)."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn)
    return conn


def _readings_table(readings: list[Reading], environment: str | None) -> FitTable:
    table = FitTable([Col("rule", ellipsis="middle", min_width=14),
                      Col("metric", drop=2), Col("window", "prose", min_width=10, drop=1),
                      Col("value", "figure", "right"), Col("threshold", "figure", "right"),
                      Col("calls", "figure", "right"), Col("state", "prose", min_width=8)],
                     title=f"alert rules over the stored calls ({environment or 'every'} "
                           f"environment)")
    for r in readings:
        rule = r.rule
        state = "[bold red]FIRING[/]" if r.breaching else \
            f"[dim]too few calls (min {rule.min_calls})[/]" if r.calls < rule.min_calls else \
            "[green]ok[/]"
        table.add_row(_esc(rule.name), rule.metric, describe_window(rule.window)
                      .removeprefix("over "), format_value(rule.metric, r.value),
                      format_value(rule.metric, rule.above), f"{r.calls:,}", state)
    return table


def _print_deliveries(sent: list[Delivery]) -> None:
    console = _console()
    for d in sent:
        mark = "[green]sent[/]" if d.ok else "[bold red]FAILED[/]"
        console.print(f"{mark} {d.action} → {_esc(d.target)}: {_esc(d.detail)}")


@alerts.command("test")
@_config_option
@click.option("--env", "environment",
              help="Environment profile (default: $ENVIRONMENT or development).")
def test_command(config_path: str | None, environment: str | None) -> None:
    """Send a sample alert through the configured actions; exit 1 if one failed."""
    settings = _settings(config_path, environment)
    if settings is None:
        click.echo(_NO_ALERTS, err=True)
        sys.exit(1)
    sample = Reading(Rule("high-error-rate", "error_rate", 0.05, 900.0, 20), 0.125, 25)
    event = sample.event("firing", time.time())
    event = dataclasses.replace(event, rule="llm-adapter-test",
                                text=f"🧪 test alert from llm-adapter, e.g.: {event.text}")
    sent = Notifier(settings).deliver(event)
    _print_deliveries(sent)
    sys.exit(0 if all(d.ok for d in sent) else 1)
