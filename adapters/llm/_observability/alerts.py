"""Alerts: someone is told when the error rate, latency or cost crosses a threshold.

``AlertEvaluator`` is a recording sink: it sees every call as it ends and keeps running sums per
window (rolling windows drop calls as they age, calendar windows restart at their UTC boundary).
A rule fires once when it crosses its threshold and resolves once when it is back under it; with
fewer than ``min_calls`` calls in the window it neither fires nor resolves, since there is no
evidence either way. ``Notifier`` writes the events to the log and posts them to a
Slack-compatible webhook from a background thread, so no call waits for the network.
``check_store`` applies the same rules to the local store, for a cron job.
"""

from __future__ import annotations

import bisect
import logging
import math
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from .batching import BatchWorker
from .._percentiles import percentile
from .alert_rules import (AlertSettings, Calendar, Rule, Window, describe_window, format_value,
                          is_calendar, metric_label, period_start, window_start)
from .records import CallRecord
from .._reports.queries import stats

__all__ = ["AlertEvaluator", "AlertEvent", "Delivery", "Notifier", "Reading", "check_store",
           "reading_dict", "store_readings"]

log = logging.getLogger("adapters.llm.alerts")

_MAX_SAMPLES: Final = 100_000       # per rolling window: beyond, the oldest calls are dropped
_BACKOFF: Final = 0.5               # seconds before the first webhook retry, doubled after


@dataclass
class AlertEvent:
    """A rule (or a budget) that started or stopped firing; ``text`` is what people read."""

    rule: str
    state: Literal["firing", "resolved"]
    metric: str
    value: float | None
    threshold: float
    window: Window | str
    calls: int
    at: datetime
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "at": self.at.isoformat()}


@dataclass(frozen=True)
class Reading:
    """A rule's metric at one moment: ``value`` (None without calls) over ``calls`` calls."""

    rule: Rule
    value: float | None
    calls: int

    @property
    def breaching(self) -> bool:
        return self._enough and self.value is not None and self.value > self.rule.above

    @property
    def recovered(self) -> bool:
        return self._enough and self.value is not None and self.value <= self.rule.above

    @property
    def _enough(self) -> bool:
        return self.calls >= self.rule.min_calls

    def event(self, state: Literal["firing", "resolved"], at: float) -> AlertEvent:
        rule = self.rule
        measured = (f"{metric_label(rule.metric)} {format_value(rule.metric, self.value)} "
                    f"{describe_window(rule.window)} ({self.calls:,} call"
                    f"{'' if self.calls == 1 else 's'})")
        limit = format_value(rule.metric, rule.above)
        text = (f"🔴 {rule.name}: {measured} is above {limit}" if state == "firing" else
                f"✅ {rule.name} recovered: {measured} is no longer above {limit}")
        return AlertEvent(rule=rule.name, state=state, metric=rule.metric, value=self.value,
                          threshold=rule.above, window=rule.window, calls=self.calls,
                          at=_utc(at), text=text)


def _value(metric: str, *, calls: int, errors: int, mean: float | None, p95: float | None,
           cost: float) -> float | None:
    """One metric from a window's numbers (live sums or the store's ``stats``)."""
    if metric == "cost":
        return cost
    if not calls:
        return None
    if metric == "error_rate":
        return errors / calls
    return mean if metric == "latency_mean_ms" else p95


# -- windows over live calls ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Sample:
    at: float
    error: bool
    latency_ms: float
    cost: float


@dataclass(slots=True)
class _Totals:
    calls: int = 0
    errors: int = 0
    latency_ms: float = 0.0
    cost: float = 0.0

    def add(self, sample: _Sample, sign: int = 1) -> None:
        self.calls += sign
        self.errors += sign * sample.error
        self.latency_ms += sign * sample.latency_ms
        self.cost += sign * sample.cost


@dataclass
class _Window:
    """Running sums of one window, shared by the rules that use it."""

    totals: _Totals = field(default_factory=_Totals)
    ranked: list[float] | None = None   # sorted latencies, kept only when a p95 rule needs them

    def reading(self, rule: Rule) -> Reading:
        t = self.totals
        value = _value(rule.metric, calls=t.calls, errors=t.errors,
                       mean=t.latency_ms / t.calls if t.calls else None,
                       p95=percentile(self.ranked or [], 95), cost=max(t.cost, 0.0))
        return Reading(rule, value, t.calls)


@dataclass
class _Rolling(_Window):
    """The calls of the last ``seconds``: each is kept until it ages out, then subtracted."""

    seconds: float = 0.0
    samples: deque[_Sample] = field(default_factory=deque)
    capped: bool = False

    def add(self, sample: _Sample, now: float) -> None:
        if sample.at <= now - self.seconds:
            return
        self.samples.append(sample)
        self.totals.add(sample)
        if self.ranked is not None:
            bisect.insort(self.ranked, sample.latency_ms)
        if len(self.samples) > _MAX_SAMPLES:
            self._drop_oldest()
            if not self.capped:
                self.capped = True
                log.warning("llm-adapter: more than %d calls in an alert window of %s s; its "
                            "rules now read the latest %d (use a shorter window to cover all)",
                            _MAX_SAMPLES, f"{self.seconds:g}", _MAX_SAMPLES)

    def prune(self, now: float) -> None:
        while self.samples and self.samples[0].at <= now - self.seconds:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        sample = self.samples.popleft()
        if not self.samples:            # start again from exact zeros: no float drift
            self.totals = _Totals()
            self.ranked = None if self.ranked is None else []
            return
        self.totals.add(sample, -1)
        if self.ranked is not None:
            del self.ranked[bisect.bisect_left(self.ranked, sample.latency_ms)]


@dataclass
class _Calendar(_Window):
    """The calls of the current UTC day, week or month: sums only, reset at the boundary."""

    period: Calendar = "day"
    start: float = -math.inf

    def add(self, sample: _Sample, now: float) -> None:
        began = period_start(self.period, sample.at)
        if began < self.start:          # a late call of the period already closed
            return
        if began > self.start:
            self.start, self.totals = began, _Totals()
        self.totals.add(sample)

    def prune(self, now: float) -> None:
        began = period_start(self.period, now)
        if began > self.start:
            self.start, self.totals = began, _Totals()


# -- the evaluator -------------------------------------------------------------------------------
class AlertEvaluator:
    """A recording sink that turns the live calls into alert events (see the module docstring).

    Each process sees its own calls only; ``check_store`` sees every process's.
    """

    name = "alerts"
    wants_masked = True

    def __init__(self, settings: AlertSettings, *, clock: Callable[[], float] = time.time,
                 sender: Notifier | None = None) -> None:
        self.settings = settings
        self._clock = clock
        self._sender = sender if sender is not None else Notifier(settings)
        self._lock = threading.Lock()
        ranked = {r.window for r in settings.rules if r.metric == "latency_p95_ms"}
        self._windows: dict[Window, _Rolling | _Calendar] = {
            w: _Calendar(period=w) if isinstance(w, str) else
            _Rolling(seconds=w, ranked=[] if w in ranked else None)
            for w in dict.fromkeys(r.window for r in settings.rules)}
        self._firing: dict[str, float] = {}                 # rule name -> since (unix s)
        self._budgets: dict[tuple[str, str | None, str], str] = {}  # -> period notified

    def emit(self, record: CallRecord) -> None:
        """Count ``record`` (at the moment it ended) and send what changed state."""
        sample = _Sample(record.ended_at, record.status == "error", record.latency_ms,
                         record.cost or 0.0)
        with self._lock:
            now = self._clock()
            for window in self._windows.values():
                window.add(sample, now)
            self._sender.send(self._transitions(now))

    def evaluate(self, now: float | None = None) -> list[AlertEvent]:
        """Re-check every rule at ``now`` (e.g. from a timer); returns and sends the changes."""
        with self._lock:
            events = self._transitions(self._clock() if now is None else now)
            self._sender.send(events)
        return events

    def flush(self, timeout: float) -> bool:
        """Wait for the pending webhook deliveries; False when some are still running."""
        return self._sender.flush(timeout)

    def notify_budget(self, scope: str, id: str | None, spent: float, limit: float,
                      period: str) -> AlertEvent | None:
        """Alert that a budget's soft threshold was crossed, once per period and scope/id.

        ``period`` is ``day``, ``week`` or ``month`` (the current UTC one is meant) or any
        other label that names one period, e.g. ``2026-11``. Returns None when already sent.
        """
        now = self._clock()
        current = str(period_start(period, now)) if is_calendar(period) else period
        who = f"{scope} {id}" if id else scope
        when = describe_window(period) if is_calendar(period) else f"in {period}"
        share = f" ({spent / limit * 100:.0f} % of the limit)" if limit > 0 else ""
        event = AlertEvent(
            rule=f"budget:{scope}" + (f":{id}" if id else ""), state="firing", metric="budget",
            value=spent, threshold=limit, window=period, calls=0, at=_utc(now),
            text=f"🟠 budget {who}: {format_value('cost', spent)} spent of "
                 f"{format_value('cost', limit)} {when}{share}")
        with self._lock:
            if self._budgets.get((scope, id, period)) == current:
                return None
            self._budgets[(scope, id, period)] = current
            self._sender.send([event])
        return event

    def state(self) -> list[dict[str, Any]]:
        """Each rule with its current value and whether it is firing (for ``status``)."""
        with self._lock:
            now = self._clock()
            for window in self._windows.values():
                window.prune(now)
            readings = [self._windows[r.window].reading(r) for r in self.settings.rules]
            firing = dict(self._firing)
        return [reading_dict(r, firing=r.rule.name in firing,
                             since=firing.get(r.rule.name)) for r in readings]

    def _transitions(self, now: float) -> list[AlertEvent]:
        for window in self._windows.values():
            window.prune(now)
        events = []
        for rule in self.settings.rules:
            reading = self._windows[rule.window].reading(rule)
            if rule.name not in self._firing and reading.breaching:
                self._firing[rule.name] = now
                events.append(reading.event("firing", now))
            elif rule.name in self._firing and reading.recovered:
                del self._firing[rule.name]
                events.append(reading.event("resolved", now))
        return events


def reading_dict(reading: Reading, *, firing: bool, since: float | None = None
                 ) -> dict[str, Any]:
    """A reading as plain values, for ``--json`` and ``status``."""
    rule = reading.rule
    return {"rule": rule.name, "metric": rule.metric, "above": rule.above,
            "window": rule.window, "min_calls": rule.min_calls, "calls": reading.calls,
            "value": reading.value, "shown": format_value(rule.metric, reading.value),
            "firing": firing, "since": None if since is None else _utc(since).isoformat()}


# -- the store, for cron -------------------------------------------------------------------------
def store_readings(conn: sqlite3.Connection, settings: AlertSettings, *,
                   now: float | None = None, env: str | None = None) -> list[Reading]:
    """Every rule's reading over the calls stored in its window (of ``env`` only, if given).

    Stored calls count by when they started (the store's index); live ones by when they ended.
    """
    moment = time.time() if now is None else now
    numbers = {w: stats(conn, _utc(window_start(w, moment)), _utc(moment), env)
               for w in dict.fromkeys(r.window for r in settings.rules)}
    readings = []
    for rule in settings.rules:
        n = numbers[rule.window]
        value = _value(rule.metric, calls=n["calls"], errors=n["errors"],
                       mean=n["mean_latency_ms"], p95=n["p95_latency_ms"],
                       cost=n["total_cost"] or 0.0)
        readings.append(Reading(rule, value, n["calls"]))
    return readings


def check_store(conn: sqlite3.Connection, settings: AlertSettings, *, now: float | None = None,
                env: str | None = None) -> list[AlertEvent]:
    """The rules firing over the stored calls (stateless: what is above its threshold now)."""
    moment = time.time() if now is None else now
    return [r.event("firing", moment)
            for r in store_readings(conn, settings, now=moment, env=env) if r.breaching]


# -- delivery ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Delivery:
    """Where one event went and whether it arrived there."""

    action: str
    target: str
    ok: bool
    detail: str


class Notifier:
    """Sends alert events to the configured actions: ``log`` and a Slack-compatible ``webhook``.

    The webhook gets ``{"text": ..., "alert": {...}}`` (Slack shows ``text``), retried after
    0.5, 1, 2 ... s on connection errors, 429 and 5xx. A failure is logged, never raised.
    """

    def __init__(self, settings: AlertSettings) -> None:
        self.settings = settings
        self._worker: BatchWorker[AlertEvent] | None = None
        if "webhook" in settings.actions and settings.webhook_url:
            self._worker = BatchWorker("llm-adapter-alerts", self._post_all, queue_size=1000)

    def send(self, events: Iterable[AlertEvent]) -> None:
        """Log now, post from the background thread; never blocks, never raises."""
        for event in events:
            if "log" in self.settings.actions:
                self._log(event)
            if self._worker is not None:
                self._worker.put(event)

    def deliver(self, event: AlertEvent) -> list[Delivery]:
        """Send ``event`` through every action now and say how each went (``alerts test``)."""
        done = [self._log(event)] if "log" in self.settings.actions else []
        if "webhook" in self.settings.actions:
            done.append(self._post(event))
        return done

    def flush(self, timeout: float) -> bool:
        return self._worker.drain(timeout) if self._worker is not None else True

    def _log(self, event: AlertEvent) -> Delivery:
        level = logging.WARNING if event.state == "firing" else logging.INFO
        log.log(level, "%s", event.text, extra={"alert": event.as_dict()})
        return Delivery("log", f"logger {log.name}", True, logging.getLevelName(level))

    def _post_all(self, events: list[AlertEvent]) -> None:
        for event in events:
            self._post(event)

    def _post(self, event: AlertEvent) -> Delivery:
        import httpx

        url, target = self.settings.webhook_url or "", _target(self.settings.webhook_url)
        tries, problem = 1 + self.settings.retries, "no url"
        for attempt in range(tries if url else 0):
            if attempt:
                time.sleep(_BACKOFF * 2 ** (attempt - 1))
            try:
                response = httpx.post(url, json={"text": event.text, "alert": event.as_dict()},
                                      timeout=self.settings.timeout)
            except httpx.TransportError as exc:       # refused, reset, timed out: try again
                problem = f"{type(exc).__name__}: {exc}"
                continue
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                break
            if response.is_success:
                return Delivery("webhook", target, True, f"HTTP {response.status_code}")
            problem = f"HTTP {response.status_code} {response.text[:200]!r}"
            if response.status_code < 500 and response.status_code != 429:
                break                                   # the request itself is refused
        log.error("llm-adapter: alert %r could not be posted to the webhook %s after %d "
                  "attempt(s): %s (check alerts.webhook.url and that the receiver is "
                  "reachable; `llm-adapter alerts test` sends a sample)",
                  event.rule, target, tries, problem)
        return Delivery("webhook", target, False, problem)


def _target(url: str | None) -> str:
    """The webhook without its path: Slack's secret token lives there, so it is never shown."""
    if not url:
        return "(no url)"
    parts = urlsplit(url)
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    hidden = parts.path not in ("", "/") or parts.query
    return f"{parts.scheme}://{host}" + ("/…" if hidden else "")


def _utc(at: float) -> datetime:
    return datetime.fromtimestamp(at, timezone.utc)
