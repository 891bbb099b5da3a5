"""Alerts: rules over live calls (a fake clock), a real webhook receiver on loopback, the store
for cron, config validation and the ``alerts`` commands."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import closing
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from adapters.llm._observability.alert_rules import AlertSettings
from adapters.llm._observability.alerts import AlertEvaluator, AlertEvent, Notifier, check_store
from adapters.llm._cli.main import main
from adapters.llm._config.loader import load_config
from adapters.llm.errors import ConfigError, ProviderError
from adapters.llm._observability.records import CallRecord
from adapters.llm._observability.store import LocalStore

from .pg_support import pg_url  # noqa: F401  (a fixture)

NOV_2_2300 = datetime(2026, 11, 2, 23, 0, tzinfo=timezone.utc).timestamp()


# -- helpers ---------------------------------------------------------------------------------------
class Clock:
    def __init__(self, now: float = NOV_2_2300) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Collecting(Notifier):
    """The real notifier, remembering what it was asked to send."""

    def __init__(self, settings: AlertSettings) -> None:
        super().__init__(settings)
        self.sent: list[AlertEvent] = []

    def send(self, events: Iterable[AlertEvent]) -> None:
        events = list(events)
        self.sent += events
        super().send(events)


class Receiver:
    """A Slack-like incoming webhook on loopback: records every JSON body, answers scripted
    statuses (then 200)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append(json.loads(body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T0/B0/SECRET"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       kwargs={"poll_interval": 0.05})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


def record(at: float, *, status: str = "ok", latency_ms: float = 100.0,
           cost: float | None = 0.001, environment: str = "production") -> CallRecord:
    call_id = uuid.uuid4().hex
    return CallRecord(call_id=call_id, trace_id=call_id, span_id=call_id[:16],
                      parent_span_id=None, started_at=at - latency_ms / 1000, ended_at=at,
                      environment=environment, model_group="claude-sonnet", status=status,
                      latency_ms=latency_ms, cost=cost,
                      error_kind="ServiceUnavailable" if status == "error" else None)


def settings(*rules: dict[str, Any], **section: Any) -> AlertSettings:
    return AlertSettings.from_mapping({"rules": list(rules), **section})


ERROR_RATE = {"name": "high-error-rate", "metric": "error_rate", "above": 0.05, "window": "15m",
              "min_calls": 20}


# -- rules over live calls -------------------------------------------------------------------------
def test_error_rate_fires_once_does_not_repeat_and_resolves_once() -> None:
    clock, alerts = Clock(), settings(ERROR_RATE)
    sender = Collecting(alerts)
    evaluator = AlertEvaluator(alerts, clock=clock, sender=sender)
    for i in range(19):                         # 5 errors in 19 calls: 26 %, but < min_calls
        evaluator.emit(record(clock.now, status="error" if i < 5 else "ok"))
    assert sender.sent == []
    evaluator.emit(record(clock.now))           # the 20th call: 5 / 20 = 25 %
    assert [e.state for e in sender.sent] == ["firing"]
    fired = sender.sent[0]
    assert fired.text == ("🔴 high-error-rate: error rate 25 % over the last 15 min (20 calls) "
                          "is above 5 %")
    assert (fired.rule, fired.metric, fired.value, fired.threshold, fired.calls) == \
        ("high-error-rate", "error_rate", 0.25, 0.05, 20)
    for _ in range(10):                         # still above: no repeat
        clock.now += 1
        evaluator.emit(record(clock.now, status="error"))
    assert len(sender.sent) == 1
    assert evaluator.state()[0]["firing"] is True

    clock.now += 16 * 60                        # the errors age out of the window
    evaluator.emit(record(clock.now - 20 * 60, status="error"))     # too old to count
    for _ in range(19):                         # too few calls to say it recovered
        evaluator.emit(record(clock.now))
    assert len(sender.sent) == 1
    evaluator.emit(record(clock.now))
    assert [e.state for e in sender.sent] == ["firing", "resolved"]
    assert sender.sent[1].text == ("✅ high-error-rate recovered: error rate 0 % over the last "
                                   "15 min (20 calls) is no longer above 5 %")
    for _ in range(5):
        evaluator.emit(record(clock.now))
    assert len(sender.sent) == 2
    assert evaluator.evaluate() == []
    state = evaluator.state()[0]
    assert (state["firing"], state["calls"], state["value"]) == (False, 25, 0.0)


def test_latency_mean_and_p95_rules() -> None:
    clock = Clock()
    alerts = settings({"name": "slow-p95", "metric": "latency_p95_ms", "above": 5000,
                       "window": "15m"},
                      {"name": "slow-mean", "metric": "latency_mean_ms", "above": 5000,
                       "window": "15m"})
    sender = Collecting(alerts)
    evaluator = AlertEvaluator(alerts, clock=clock, sender=sender)
    for latency in [1000.0] * 9 + [20000.0]:    # p95 of 10 = the 10th: 20 s; mean 2.9 s
        evaluator.emit(record(clock.now, latency_ms=latency))
    assert [(e.rule, e.state) for e in sender.sent] == [("slow-p95", "firing")]
    assert sender.sent[0].text == ("🔴 slow-p95: p95 latency 20,000 ms over the last 15 min "
                                   "(10 calls) is above 5,000 ms")
    for _ in range(30):                         # p95 of 40 = the 39th: 1 s
        evaluator.emit(record(clock.now, latency_ms=1000.0))
    assert [(e.rule, e.state) for e in sender.sent][1:] == [("slow-p95", "resolved")]

    clock.now += 15 * 60 + 1                    # a new window: ten 6 s calls
    for _ in range(10):
        evaluator.emit(record(clock.now, latency_ms=6000.0))
    assert [(e.rule, e.state) for e in sender.sent][2:] == [("slow-p95", "firing"),
                                                            ("slow-mean", "firing")]
    mean = next(s for s in evaluator.state() if s["rule"] == "slow-mean")
    assert (mean["value"], mean["calls"], mean["firing"]) == (6000.0, 10, True)


def test_cost_rule_over_the_utc_day() -> None:
    clock = Clock()                             # 2026-11-02 23:00 UTC
    alerts = settings({"name": "daily-cost", "metric": "cost", "above": 1, "window": "day"})
    sender = Collecting(alerts)
    evaluator = AlertEvaluator(alerts, clock=clock, sender=sender)
    evaluator.emit(record(clock.now - 23 * 3600 - 60, cost=5.0))     # Nov 1: another day
    for cost in (0.4, 0.4, None):               # an unknown price adds nothing
        evaluator.emit(record(clock.now, cost=cost))
    assert sender.sent == []
    evaluator.emit(record(clock.now, cost=0.3))
    assert sender.sent[0].text == ("🔴 daily-cost: cost $1.10 today (UTC) (4 calls) is above "
                                   "$1.00")
    clock.now += 70 * 60                        # Nov 3, 00:10: a new day
    evaluator.emit(record(clock.now - 3600, cost=1.0))     # a late call of Nov 2: ignored
    assert [e.state for e in sender.sent] == ["firing", "resolved"]
    assert sender.sent[1].text == ("✅ daily-cost recovered: cost $0.00 today (UTC) (0 calls) "
                                   "is no longer above $1.00")
    evaluator.emit(record(clock.now, cost=0.1))
    assert len(sender.sent) == 2
    state = evaluator.state()[0]
    assert (state["value"], state["calls"], state["firing"]) == (0.1, 1, False)


def test_notify_budget_fires_once_per_period_and_scope() -> None:
    clock = Clock()
    alerts = settings()
    sender = Collecting(alerts)
    evaluator = AlertEvaluator(alerts, clock=clock, sender=sender)
    first = evaluator.notify_budget("user", "alice", 80.0, 100.0, "month")
    assert first is not None and first.state == "firing"
    assert first.text == ("🟠 budget user alice: $80.00 spent of $100.00 this month (UTC) (80 % "
                          "of the limit)")
    assert evaluator.notify_budget("user", "alice", 85.0, 100.0, "month") is None
    assert evaluator.notify_budget("user", "bob", 81.0, 100.0, "month") is not None
    assert evaluator.notify_budget("global", None, 8.0, 10.0, "day") is not None
    clock.now += 2 * 3600                       # Nov 3: a new day, the same month
    assert evaluator.notify_budget("global", None, 9.0, 10.0, "day") is not None
    assert evaluator.notify_budget("user", "alice", 90.0, 100.0, "month") is None
    clock.now = datetime(2026, 12, 1, 0, 5, tzinfo=timezone.utc).timestamp()
    assert evaluator.notify_budget("user", "alice", 80.0, 100.0, "month") is not None
    assert [e.rule for e in sender.sent] == ["budget:user:alice", "budget:user:bob",
                                             "budget:global", "budget:global",
                                             "budget:user:alice"]


def test_log_action_levels(caplog: pytest.LogCaptureFixture) -> None:
    clock, alerts = Clock(), settings({**ERROR_RATE, "min_calls": 1})
    evaluator = AlertEvaluator(alerts, clock=clock)
    with caplog.at_level(logging.INFO, logger="adapters.llm.alerts"):
        evaluator.emit(record(clock.now, status="error"))
        clock.now += 16 * 60
        evaluator.emit(record(clock.now))
    assert [(r.levelno, r.getMessage()[:1]) for r in caplog.records] == \
        [(logging.WARNING, "🔴"), (logging.INFO, "✅")]


# -- the webhook -----------------------------------------------------------------------------------
def test_webhook_gets_a_slack_compatible_payload(receiver: Receiver) -> None:
    clock = Clock()
    alerts = settings({**ERROR_RATE, "min_calls": 2}, webhook={"url": receiver.url},
                      actions=["webhook"])
    evaluator = AlertEvaluator(alerts, clock=clock)
    evaluator.emit(record(clock.now, status="error"))
    evaluator.emit(record(clock.now))
    assert evaluator.flush(5.0)
    assert len(receiver.posts) == 1
    payload = receiver.posts[0]
    assert payload["text"] == ("🔴 high-error-rate: error rate 50 % over the last 15 min "
                               "(2 calls) is above 5 %")
    assert payload["alert"] == {
        "rule": "high-error-rate", "state": "firing", "metric": "error_rate", "value": 0.5,
        "threshold": 0.05, "window": 900.0, "calls": 2,
        "at": "2026-11-02T23:00:00+00:00", "text": payload["text"]}


def test_webhook_500_twice_then_200_is_retried_and_delivered(receiver: Receiver) -> None:
    receiver.statuses = [500, 500]
    alerts = settings(webhook={"url": receiver.url, "retries": 3}, actions=["webhook"])
    notifier = Notifier(alerts)
    event = AlertEvaluator(alerts, sender=notifier).notify_budget("global", None, 8, 10, "day")
    assert event is not None
    started = time.monotonic()
    assert notifier.flush(10.0)
    assert len(receiver.posts) == 3             # two refusals, then delivered
    assert time.monotonic() - started >= 1.4    # backoff 0.5 s, then 1 s
    assert all(p["text"] == event.text for p in receiver.posts)


def test_unreachable_webhook_is_logged_never_raised_and_never_blocks(
        caplog: pytest.LogCaptureFixture) -> None:
    with closing(socket.socket()) as s:         # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    alerts = settings({**ERROR_RATE, "min_calls": 1},
                      webhook={"url": f"http://127.0.0.1:{port}/services/SECRET", "retries": 2})
    clock = Clock()
    evaluator = AlertEvaluator(alerts, clock=clock)
    with caplog.at_level(logging.WARNING, logger="adapters.llm.alerts"):
        started = time.monotonic()
        evaluator.emit(record(clock.now, status="error"))       # fires: log + webhook
        assert time.monotonic() - started < 1.0                 # the retries wait 1.5 s
        assert evaluator.flush(10.0)
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 1
    message = failures[0].getMessage()
    assert "could not be posted" in message and "3 attempt(s)" in message
    assert f"http://127.0.0.1:{port}/…" in message and "SECRET" not in message


# -- the store, for cron ---------------------------------------------------------------------------
def open_store(db: str | Path) -> LocalStore:
    return LocalStore(url=str(db)) if "://" in str(db) else LocalStore(db)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the calls are: a file, or (every replica's) a PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "calls.sqlite3")
    return str(request.getfixturevalue("pg_url"))


def seed_store(path: str | Path, now: float) -> None:
    store = open_store(path)
    for i in range(20):                         # production: 5 errors in 20 calls, 25 %
        store.write(record(now - 60 - i, status="error" if i < 5 else "ok", cost=0.5))
    for i in range(40):                         # development: all fine
        store.write(record(now - 60 - i, environment="development", cost=0.0))
    for i in range(10):                         # errors an hour ago, out of a 15 min window
        store.write(record(now - 3600 - i, status="error", cost=0.0))
    assert store.flush(10.0)
    store.close()


STORE_RULES = (
    {"name": "high-error-rate", "metric": "error_rate", "above": 0.1, "window": "15m"},
    {"name": "daily-cost", "metric": "cost", "above": 5, "window": "day"},
    {"name": "slow-p95", "metric": "latency_p95_ms", "above": 5000, "window": "1h"},
)


def test_check_store_over_a_seeded_store(db: str) -> None:
    now = NOV_2_2300
    seed_store(db, now)
    alerts = settings(*STORE_RULES)
    with closing(open_store(db).connect()) as conn:
        production = check_store(conn, alerts, now=now, env="production")
        development = check_store(conn, alerts, now=now, env="development")
        everything = check_store(conn, alerts, now=now)
    assert [(e.rule, e.value, e.calls) for e in production] == [
        ("high-error-rate", 0.25, 20), ("daily-cost", 10.0, 30)]
    assert production[0].text == ("🔴 high-error-rate: error rate 25 % over the last 15 min "
                                  "(20 calls) is above 10 %")
    assert development == []
    assert [(e.rule, e.value) for e in everything] == [("daily-cost", 10.0)]   # 5 / 60 < 10 %


# -- configuration ---------------------------------------------------------------------------------
RULE = {"name": "r", "metric": "error_rate", "above": 0.05, "window": "15m"}


@pytest.mark.parametrize(("section", "parts"), [
    ([], ["alerts", "expected a mapping"]),
    ({"rule": []}, ["alerts.rule", "unknown key 'rule'", "did you mean 'rules'"]),
    ({"rules": {"name": "r"}}, ["alerts.rules", "expected a list of rules"]),
    ({"rules": ["high-error-rate"]}, ["alerts.rules[0]", "must be a mapping", "metric:"]),
    ({"rules": [{**RULE, "name": None}]}, ["alerts.rules[0].name", "name is missing"]),
    ({"rules": [{**RULE, "metric": "error-rate"}]},
     ["alerts.rules[0].metric", "'error-rate' is not a valid metric", "did you mean 'error_rate'"]),
    ({"rules": [{**RULE, "above": -1}]}, ["alerts.rules[0].above", "out of range", ">= 0"]),
    ({"rules": [{**RULE, "above": "lots"}]}, ["alerts.rules[0].above", "expected a number"]),
    ({"rules": [{**RULE, "above": 5}]},
     ["alerts.rules[0].above", "error rate is a fraction", "write 0.05 for 5 %"]),
    ({"rules": [{k: v for k, v in RULE.items() if k != "window"}]},
     ["alerts.rules[0].window", "window is missing"]),
    ({"rules": [{**RULE, "window": "fortnight"}]},
     ["alerts.rules[0].window", "'fortnight' is not a window", "15m", "day, week or month"]),
    ({"rules": [{**RULE, "window": "0s"}]}, ["alerts.rules[0].window", "longer than 0 s"]),
    ({"rules": [{**RULE, "min_calls": 2.5}]}, ["alerts.rules[0].min_calls", "whole number"]),
    ({"rules": [{**RULE, "threshold": 1}]},
     ["alerts.rules[0].threshold", "unknown key 'threshold'", "above"]),
    ({"rules": [RULE, RULE]}, ["alerts.rules[1].name", "'r' is already used"]),
    ({"rules": [{**RULE, "metric": "latency_p95_ms", "above": 5000, "window": "day"}]},
     ["alerts.rules[0].window", "calendar day", "rolling window"]),
    ({"actions": ["email"]},
     ["alerts.actions[0]", "unknown action 'email'", "actions: log, webhook"]),
    ({"actions": []}, ["alerts.actions", "non-empty list"]),
    ({"actions": ["log", "webhook"], "webhook": {"url": None}},
     ["alerts.webhook.url", "has no url", "ALERT_WEBHOOK_URL", "remove webhook"]),
    ({"webhook": {"url": "hooks.slack.com/services/x"}},
     ["alerts.webhook.url", "http:// or https://"]),
    ({"webhook": {"url": "https://example.com/h", "retries": -1}},
     ["alerts.webhook.retries", "between 0 and 10"]),
    ({"webhook": {"urls": "https://example.com/h"}},
     ["alerts.webhook.urls", "unknown key 'urls'", "did you mean 'url'"]),
])
def test_config_validation(section: Any, parts: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        AlertSettings.from_mapping(section, source="config.yaml")
    message = str(caught.value)
    assert message.startswith("config.yaml: ")
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


def test_defaults() -> None:
    alerts = settings(RULE, {"name": "c", "metric": "cost", "above": "100", "window": "week"},
                      {**RULE, "name": "w", "window": 90})
    assert [(r.window, r.min_calls) for r in alerts.rules] == [(900.0, 10), ("week", 0),
                                                               (90.0, 10)]
    assert (alerts.actions, alerts.webhook_url, alerts.retries, alerts.timeout) == \
        (("log",), None, 3, 5.0)
    hooked = settings(webhook={"url": "https://hooks.example.com/x", "timeout": "2"})
    assert (hooked.actions, hooked.timeout) == (("log", "webhook"), 2.0)


CONFIG = """\
model_list:
  - model_name: local
    litellm_params: {model: ollama_chat/llama3.2, api_base: "http://127.0.0.1:9"}
environments:
  development: {default_model: local}
  production:
    default_model: local
    alerts:
      rules:
        - {name: high-error-rate, metric: error_rate, above: 0.1, window: 15m}
        - {name: daily-cost, metric: cost, above: 1000, window: day}
%s
"""
ALERTS = """\
alerts:
  rules:
    - {name: high-error-rate, metric: error_rate, above: 0.5, window: 15m}
"""
HOOK = """\
alerts:
  webhook: {url: "${ALERT_WEBHOOK_URL}", retries: 0, timeout: 2}
  actions: [log, webhook]
"""


def write_config(tmp_path: Path, section: str) -> Path:
    path = tmp_path / f"config-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(CONFIG % section)
    return path


def test_from_config_profile_overrides_and_errors_name_the_profile(tmp_path: Path) -> None:
    path = write_config(tmp_path, ALERTS)
    development = AlertSettings.from_config(load_config(path, load_dotenv=False))
    production = AlertSettings.from_config(load_config(path, environment="production",
                                                       load_dotenv=False))
    assert development is not None and production is not None
    assert [r.above for r in development.rules] == [0.5]
    assert [r.name for r in production.rules] == ["high-error-rate", "daily-cost"]
    assert AlertSettings.from_config(load_config(write_config(tmp_path, ""),
                                                 load_dotenv=False)) is None
    bad = write_config(tmp_path, ALERTS).read_text().replace("above: 0.1", "above: 10")
    (tmp_path / "bad.yaml").write_text(bad)
    with pytest.raises(ConfigError, match=r"environments\.production\.alerts\.rules\[0\]\.above"):
        AlertSettings.from_config(load_config(tmp_path / "bad.yaml", environment="production",
                                              load_dotenv=False))


# -- the commands ----------------------------------------------------------------------------------
def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner(env={"COLUMNS": "200", **(env or {})}).invoke(main, list(args))


def test_cli_check_json_exit_codes(db: str, tmp_path: Path) -> None:
    seed_store(db, time.time())
    config = write_config(tmp_path, ALERTS)
    firing = run("alerts", "check", "--db", str(db), "--config", str(config), "--env",
                 "production", "--json")
    assert firing.exit_code == 1, firing.output
    report = json.loads(firing.stdout)
    assert report["firing"] == ["high-error-rate"]
    assert [(r["rule"], r["firing"]) for r in report["rules"]] == [
        ("high-error-rate", True), ("daily-cost", False)]
    assert (report["rules"][0]["calls"], report["rules"][0]["shown"]) == (20, "25 %")
    calm = run("alerts", "check", "--db", str(db), "--config", str(config), "--env",
               "development", "--json")
    assert calm.exit_code == 0, calm.output
    assert json.loads(calm.stdout)["firing"] == []
    table = run("alerts", "check", "--db", str(db), "--config", str(config), "--env",
                "production")
    assert table.exit_code == 1 and "FIRING" in table.stdout and "25 %" in table.stdout
    empty = run("alerts", "check", "--db", str(tmp_path / "none.sqlite3"), "--config",
                str(config), "--json")
    assert empty.exit_code == 0 and json.loads(empty.stdout)["rules"][0]["calls"] == 0


def test_cli_without_alerts_explains_the_section(tmp_path: Path) -> None:
    config = write_config(tmp_path, "")
    check = run("alerts", "check", "--config", str(config))
    assert check.exit_code == 0 and "Add an alerts: section" in check.stderr
    test = run("alerts", "test", "--config", str(config))
    assert test.exit_code == 1 and "Add an alerts: section" in test.stderr


def test_cli_test_delivers_to_the_webhook(tmp_path: Path, receiver: Receiver) -> None:
    config = write_config(tmp_path, HOOK)
    result = run("alerts", "test", "--config", str(config),
                 env={"ALERT_WEBHOOK_URL": receiver.url})
    assert result.exit_code == 0, result.output
    assert len(receiver.posts) == 1
    assert receiver.posts[0]["text"].startswith("🧪 test alert from llm-adapter")
    assert receiver.posts[0]["alert"]["rule"] == "llm-adapter-test"
    port = receiver.url.split(":")[2].split("/")[0]
    assert f"webhook → http://127.0.0.1:{port}/…: HTTP 200" in result.stdout
    assert "SECRET" not in result.output

    receiver.statuses = [404]
    failed = run("alerts", "test", "--config", str(config),
                 env={"ALERT_WEBHOOK_URL": receiver.url})
    assert failed.exit_code == 1 and "FAILED webhook" in failed.stdout
    unset = run("alerts", "test", "--config", str(config))
    assert unset.exit_code == 1 and "alerts.webhook.url" in unset.output


def test_live_calls_through_the_adapter_fire_the_webhook(make_adapter, sim, receiver,
                                                         monkeypatch) -> None:
    from .conftest import one_group, unique

    name = unique("alerting")
    sim.set_scenario(name, "down")
    monkeypatch.setenv("ALERT_WEBHOOK_URL", receiver.url)
    llm = make_adapter(one_group(name, key="sk-test-alert-0001", alerts={
        "webhook": {"url": "${ALERT_WEBHOOK_URL}"},
        "rules": [{"name": "provider-down", "metric": "error_rate", "above": 0.5,
                   "window": "1h", "min_calls": 3}]}))
    for _ in range(4):
        with pytest.raises(ProviderError):
            llm.generate(prompt="hello", timeout=5)
    assert llm.flush_langfuse(timeout=15)
    firing = [p for p in receiver.posts if p["alert"]["state"] == "firing"]
    assert len(firing) == 1, "fires once, not once per failing call"
    assert firing[0]["alert"]["rule"] == "provider-down" and "provider-down" in firing[0]["text"]
