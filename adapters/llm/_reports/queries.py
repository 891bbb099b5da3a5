"""Reports over the local store: costs by dimension, traces and sessions, call statistics.

Pure functions of a connection from ``LocalStore.connect()``, returning dataclasses and dicts;
rendering is the CLI's. Times are UTC; ``since`` is inclusive, ``until`` exclusive, and naive
datetimes are taken as UTC. A call with an unknown price is counted as such, never as $0: costs
are sums of the known prices, ``None`` when prices were unknown and none was known.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any, Final, Literal, NamedTuple

from .._percentiles import percentile
from .._observability.store_dialect import dialect_of
from ..errors import UsageError
from .._observability.store import read_calls

__all__ = ["DIMENSIONS", "CostRow", "DailyCost", "RecentFailures", "Report", "SessionTree", "Sort",
           "TraceCall", "TraceGroup", "cost_report", "daily_costs", "list_traces", "percentile",
           "recent_failures", "recent_use", "session_tree", "spend", "stats", "trace_detail"]

# --by NAME -> the SQL expression grouped by (``c`` is calls, ``t`` is call_tags).
DIMENSIONS: Final[Mapping[str, str]] = MappingProxyType({
    "model": "c.model_group", "provider": "c.provider", "deployment": "c.deployment",
    "user": "c.user_id", "session": "c.session_id", "agent": "c.agent", "tag": "t.tag",
    "day": "c.day", "week": "llm_iso_week(c.day)", "month": "substr(c.day, 1, 7)"})
_TIME_BUCKETS: Final = frozenset({"day", "week", "month"})
_UNKNOWN_PRICE: Final = "c.status = 'ok' AND c.cost IS NULL AND c.cache_hit = 0"
Sort = Literal["time", "cost", "latency"]


@dataclass(frozen=True, slots=True)
class CostRow:
    """One group of a cost report (or its totals, where ``key`` is None)."""

    key: str | None
    calls: int
    call_share_pct: float
    cost: float | None              # sum of known costs; None when every price was unknown
    cost_share_pct: float | None    # None when the row's or the total's cost is unknown
    unknown_price_calls: int        # answered calls whose price is unknown
    input_tokens: int               # uncached input, as in Usage
    cached_tokens: int              # read from and written to the provider's cache
    output_tokens: int
    mean_latency_ms: float | None
    hedge_cost: float               # part of ``cost``: what lost hedges were billed


@dataclass(frozen=True, slots=True)
class Report:
    """``cost_report``'s answer. With ``by="tag"`` a call counts once per tag, so the rows'
    shares can add up to more than 100%; ``total`` counts every call once."""

    by: str
    rows: list[CostRow]
    total: CostRow


class DailyCost(NamedTuple):
    day: str                        # YYYY-MM-DD (UTC)
    cost: float | None              # None: calls that day, none with a known price
    calls: int


@dataclass(frozen=True, slots=True)
class TraceCall:
    """One call as a trace listing shows it: who, which model, how long, how much, previews."""

    call_id: str
    started_at: float
    model_group: str | None
    deployment: str | None
    agent: str | None
    stage: str | None
    input_preview: str
    output_preview: str
    latency_ms: float | None
    cost: float | None
    status: str
    error_kind: str | None
    unknown_price: bool


@dataclass(frozen=True, slots=True)
class TraceGroup:
    """The calls of one trace (an ``llm.trace(...)`` block, or a single call)."""

    trace_id: str
    name: str | None
    session_id: str | None
    user_id: str | None
    started_at: float
    ended_at: float
    calls: list[TraceCall]

    @property
    def latency_ms(self) -> float:
        """Wall-clock time from the first call's start to the last call's end."""
        return (self.ended_at - self.started_at) * 1000

    @property
    def cost(self) -> float | None:
        return _spent(_known_sum(c.cost for c in self.calls), self.unknown_price_calls)

    @property
    def unknown_price_calls(self) -> int:
        return sum(c.unknown_price for c in self.calls)


@dataclass(frozen=True, slots=True)
class SessionTree:
    """A session, its traces (as chosen by ``last`` and ``sort``) and totals over all of them."""

    session_id: str
    traces: list[TraceGroup]
    trace_count: int
    call_count: int
    cost: float | None
    latency_ms: float               # sum of the traces' wall-clock times
    unknown_price_calls: int


# -- costs ---------------------------------------------------------------------------------
def cost_report(conn: sqlite3.Connection, by: str, since: datetime | None = None,
                until: datetime | None = None, env: str | None = None) -> Report:
    """Calls, cost, tokens and latency per ``by`` group, with shares of calls and cost."""
    if by not in DIMENSIONS:
        raise UsageError(f"cannot group costs by {by!r}; choose one of {', '.join(DIMENSIONS)}")
    conn.create_function("llm_iso_week", 1, _iso_week, deterministic=True)
    where, params = _where(since, until, env)
    join = "LEFT JOIN call_tags t ON t.call_id = c.call_id" if by == "tag" else ""
    calls = dialect_of(conn).report_calls
    groups = conn.execute(f"SELECT {DIMENSIONS[by]} AS key, {_AGGREGATES} FROM {calls} {join} "
                          f"WHERE {where} GROUP BY key", params).fetchall()
    totals = conn.execute(f"SELECT NULL, {_AGGREGATES} FROM {calls} WHERE {where}",
                          params).fetchone()
    total = _cost_row(totals, totals[1], totals[2])
    rows = [_cost_row(g, total.calls, total.cost) for g in groups]
    if by in _TIME_BUCKETS:
        rows.sort(key=lambda r: r.key or "")
    else:
        rows.sort(key=lambda r: (-(r.cost or 0.0), -r.calls, r.key is None, r.key or ""))
    return Report(by, rows, total)


_AGGREGATES: Final = (
    f"COUNT(*), SUM(c.cost), SUM(CASE WHEN {_UNKNOWN_PRICE} THEN 1 ELSE 0 END), "
    "COALESCE(SUM(c.input_tokens), 0), "
    "COALESCE(SUM(c.cached_tokens + c.cache_write_tokens), 0), "
    "COALESCE(SUM(c.output_tokens), 0), AVG(c.latency_ms), COALESCE(SUM(c.cost_hedge), 0)")


def _cost_row(row: Any, total_calls: int | None, total_cost: float | None) -> CostRow:
    key, calls, cost, unknown, tokens_in, tokens_cached, tokens_out, latency, hedge = tuple(row)
    unknown = unknown or 0
    cost = _spent(cost, unknown)
    return CostRow(key=key, calls=calls,
                   call_share_pct=100.0 * calls / total_calls if total_calls else 0.0,
                   cost=cost,
                   cost_share_pct=None if cost is None or not total_cost else
                   100.0 * cost / total_cost,
                   unknown_price_calls=unknown, input_tokens=tokens_in,
                   cached_tokens=tokens_cached, output_tokens=tokens_out,
                   mean_latency_ms=latency, hedge_cost=hedge)


def daily_costs(conn: sqlite3.Connection, since: datetime | None = None,
                until: datetime | None = None, env: str | None = None) -> list[DailyCost]:
    """Cost and calls per UTC day, days without calls included (for a chart)."""
    rows = {r.key: r for r in cost_report(conn, "day", since, until, env).rows if r.key}
    if not rows and (since is None or until is None):
        return []
    first = _utc(since).date() if since else date.fromisoformat(min(rows))
    last = (_utc(until) - timedelta(microseconds=1)).date() if until else \
        date.fromisoformat(max(rows))
    days = (first + timedelta(days=n) for n in range((last - first).days + 1))
    return [DailyCost(d, rows[d].cost, rows[d].calls) if d in rows else DailyCost(d, 0.0, 0)
            for d in (day.isoformat() for day in days)]


# -- statistics -------------------------------------------------------------------------------
def stats(conn: sqlite3.Connection, since: datetime | None = None,
          until: datetime | None = None, env: str | None = None) -> dict[str, Any]:
    """Volume, success, latency (mean, p95), cost, fallback, hedge and cache-hit rates.

    Rates are percentages of all calls; latencies cover every call, failed ones included,
    because that is what callers waited for.
    """
    where, params = _where(since, until, env)
    calls, ok, fallback, hedged, hedge_cost, cache_hit, cost, unknown, mean = conn.execute(
        f"SELECT COUNT(*), SUM(CASE WHEN c.status = 'ok' THEN 1 ELSE 0 END), SUM(c.fallback), "
        f"SUM(c.hedged), COALESCE(SUM(c.cost_hedge), 0), SUM(c.cache_hit), SUM(c.cost), "
        f"SUM(CASE WHEN {_UNKNOWN_PRICE} THEN 1 ELSE 0 END), AVG(c.latency_ms) FROM calls c "
        f"WHERE {where}",
        params).fetchone()
    latencies = [r[0] for r in conn.execute(
        f"SELECT c.latency_ms FROM calls c WHERE {where} AND c.latency_ms IS NOT NULL "
        f"ORDER BY c.latency_ms", params)]

    def counts(column: str) -> dict[str, int]:
        return {str(k): n for k, n in conn.execute(
            f"SELECT c.{column}, COUNT(*) FROM calls c WHERE {where} AND c.{column} IS NOT NULL"
            f" GROUP BY c.{column} ORDER BY COUNT(*) DESC, c.{column}", params)}

    def pct(part: int | None) -> float | None:
        return 100.0 * (part or 0) / calls if calls else None

    return {"calls": calls, "ok": ok or 0, "errors": calls - (ok or 0),
            "success_rate_pct": pct(ok), "mean_latency_ms": mean,
            "p95_latency_ms": percentile(latencies, 95), "total_cost": _spent(cost, unknown or 0),
            "unknown_price_calls": unknown or 0, "fallback_rate_pct": pct(fallback),
            "hedged_rate_pct": pct(hedged), "hedge_cost": hedge_cost,
            "cache_hit_rate_pct": pct(cache_hit), "by_status": counts("status"),
            "by_error_kind": counts("error_kind")}


# -- what the store knows of the present (for ``llm-adapter status``) --------------------------
_SCOPE_COLUMNS: Final[Mapping[str, str]] = MappingProxyType({
    "user": "c.user_id", "session": "c.session_id", "agent": "c.agent", "tag": "t.tag",
    "environment": "c.environment"})


@dataclass(frozen=True, slots=True)
class RecentFailures:
    """Failed attempts of one deployment since a moment, and the latest of them."""

    deployment: str
    failures: int
    last_at: float                  # when the call holding the latest failure ended
    kinds: tuple[str, ...]


def recent_failures(conn: sqlite3.Connection, since: float, env: str | None = None
                    ) -> dict[str, RecentFailures]:
    """Per deployment, its failed attempts in calls that ended at or after ``since``."""
    where, params = _where(None, None, env)
    rows = conn.execute(
        "SELECT a.deployment, COUNT(*), MAX(COALESCE(c.ended_at, c.started_at)), "
        f"{dialect_of(conn).group_concat('a.error_kind')} FROM attempts a JOIN calls c "
        f"ON c.call_id = a.call_id WHERE {where} AND a.outcome = 'error' "
        "AND a.deployment IS NOT NULL AND COALESCE(c.ended_at, c.started_at) >= ? "
        "GROUP BY a.deployment", [*params, since]).fetchall()
    return {d: RecentFailures(d, n, last, tuple(sorted((kinds or "").split(",")) if kinds else ()))
            for d, n, last, kinds in rows}


def recent_use(conn: sqlite3.Connection, since: float, env: str | None = None
               ) -> dict[str | None, tuple[int, int]]:
    """(requests, tokens) sent to providers since ``since``: ``None`` for every deployment
    together, else per deployment (cache hits sent nothing)."""
    where, params = _where(None, None, env)
    tokens = "c.input_tokens + c.cached_tokens + c.cache_write_tokens + c.output_tokens"
    total = conn.execute(f"SELECT COUNT(*), COALESCE(SUM({tokens}), 0) FROM calls c "
                         f"WHERE {where} AND c.cache_hit = 0 AND c.started_at >= ?",
                         [*params, since]).fetchone()
    out: dict[str | None, tuple[int, int]] = {None: (total[0], total[1])}
    for deployment, n, used in conn.execute(
            f"SELECT c.deployment, COUNT(*), COALESCE(SUM({tokens}), 0) FROM calls c "
            f"WHERE {where} AND c.cache_hit = 0 AND c.started_at >= ? AND c.deployment IS "
            "NOT NULL GROUP BY c.deployment", [*params, since]):
        out[deployment] = (n, used)
    return out


def spend(conn: sqlite3.Connection, scope: str, since: float | None, env: str | None = None,
          value: str | None = None) -> dict[str, float]:
    """Known cost per value of a budget scope (user, session, agent, tag, environment) since
    ``since`` (None: ever), highest first; only ``value`` when given."""
    column = _SCOPE_COLUMNS.get(scope)
    if column is None:
        raise UsageError(f"no budget scope {scope!r}; choose one of {', '.join(_SCOPE_COLUMNS)}")
    where, params = _where(None, None, env)
    join = "JOIN call_tags t ON t.call_id = c.call_id" if scope == "tag" else ""
    clauses = [where, f"{column} IS NOT NULL"]
    if since is not None:
        clauses.append("c.started_at >= ?")
        params.append(since)
    if value is not None:
        clauses.append(f"{column} = ?")
        params.append(value)
    return {str(k): total for k, total in conn.execute(
        f"SELECT {column}, COALESCE(SUM(c.cost), 0) FROM calls c {join} WHERE "
        f"{' AND '.join(clauses)} GROUP BY {column} ORDER BY 2 DESC, 1", params)}


# -- traces -----------------------------------------------------------------------------------
def list_traces(conn: sqlite3.Connection, session: str | None = None, user: str | None = None,
                agent: str | None = None, last: int | None = 20, sort: Sort = "time",
                since: datetime | None = None, until: datetime | None = None,
                env: str | None = None) -> list[TraceGroup]:
    """The calls matching the filters, grouped by trace.

    ``sort="time"`` gives the ``last`` most recent traces, oldest first (read like a log);
    ``"cost"`` and ``"latency"`` give the ``last`` highest, highest first.
    """
    order = {"time": "MIN(c.started_at)", "cost": "COALESCE(SUM(c.cost), 0)",
             "latency": "MAX(c.ended_at) - MIN(c.started_at)"}.get(sort)
    if order is None:
        raise UsageError(f"cannot sort traces by {sort!r}; choose time, cost or latency")
    where, params = _where(since, until, env, session_id=session, user_id=user, agent=agent)
    if last is not None and last < 0:
        raise UsageError(f"last must be 0 or more, not {last}")
    limit = "" if last is None else f"LIMIT {int(last)}"
    trace_ids = [r[0] for r in conn.execute(
        f"SELECT c.trace_id FROM calls c WHERE {where} GROUP BY c.trace_id "
        f"ORDER BY {order} DESC, c.trace_id {limit}", params)]
    if not trace_ids:
        return []
    if sort == "time":
        trace_ids.reverse()
    cursor = conn.cursor()
    cursor.row_factory = sqlite3.Row            # by name, whatever the connection's factory
    by_trace: dict[str, list[sqlite3.Row]] = {t: [] for t in trace_ids}
    for row in cursor.execute(
            f"SELECT c.*, ({_UNKNOWN_PRICE}) AS unknown_price FROM calls c WHERE {where} "
            f"AND c.trace_id IN ({', '.join('?' * len(trace_ids))}) "
            f"ORDER BY c.started_at, c.call_id", [*params, *trace_ids]):
        by_trace[row["trace_id"]].append(row)
    return [_trace_group(trace_id, rows) for trace_id, rows in by_trace.items()]


def _trace_call(row: sqlite3.Row) -> TraceCall:
    if row["status"] != "ok":
        shown = f"{row['error_kind'] or 'error'}: {row['error_message'] or ''}"
    else:
        names = [str(t.get("name")) for t in json.loads(row["tool_calls"]) if isinstance(t, dict)]
        shown = row["output"] or ("tool calls: " + ", ".join(names) if names else "")
    asked = _last_user_text(json.loads(row["input"]))
    return TraceCall(row["call_id"], row["started_at"], row["model_group"], row["deployment"],
                     row["agent"], row["stage"], _preview(asked), _preview(shown),
                     row["latency_ms"], row["cost"], row["status"], row["error_kind"],
                     bool(row["unknown_price"]))


def _trace_group(trace_id: str, rows: list[sqlite3.Row]) -> TraceGroup:
    def first(column: str) -> Any:              # the first call that has it
        return next((r[column] for r in rows if r[column]), None)

    return TraceGroup(trace_id=trace_id, name=first("trace_name"), session_id=first("session_id"),
                      user_id=first("user_id"), started_at=min(r["started_at"] for r in rows),
                      ended_at=max(r["ended_at"] or r["started_at"] for r in rows),
                      calls=[_trace_call(r) for r in rows])


def session_tree(conn: sqlite3.Connection, session_id: str, last: int = 20,
                 sort: Sort = "time", env: str | None = None) -> SessionTree:
    """Session → traces → calls, with totals over the whole session."""
    traces = list_traces(conn, session=session_id, last=None, sort=sort, env=env)
    shown = traces[max(len(traces) - last, 0):] if sort == "time" else traces[:last]
    unknown = sum(t.unknown_price_calls for t in traces)
    return SessionTree(session_id=session_id, traces=shown,
                       trace_count=len(traces), call_count=sum(len(t.calls) for t in traces),
                       cost=_spent(_known_sum(t.cost for t in traces), unknown),
                       latency_ms=sum(t.latency_ms for t in traces),
                       unknown_price_calls=unknown)


def trace_detail(conn: sqlite3.Connection, ident: str) -> dict[str, Any]:
    """Every stored field of a call, or of each call of a trace, with attempts and scores.

    ``ident`` is a call id or a trace id, or an unambiguous prefix of at least 6 characters.
    """
    prefix = ident.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{6,32}", prefix):
        raise UsageError(f"{ident!r} is not a call or trace id: give at least 6 of its hex "
                         f"characters (`llm-adapter traces` lists them)")
    span = (prefix, prefix + "~")                       # every id starting with prefix
    traces = {r[0] for r in conn.execute(
        "SELECT DISTINCT trace_id FROM calls WHERE trace_id >= ? AND trace_id < ?", span)}
    calls = {r[0]: r[1] for r in conn.execute(
        "SELECT call_id, trace_id FROM calls WHERE call_id >= ? AND call_id < ?", span)}
    if len(traces) == 1 and set(calls.values()) <= traces:
        (trace_id,) = traces
        kind, full = "trace", trace_id
        call_ids = [r[0] for r in conn.execute(
            "SELECT call_id FROM calls WHERE trace_id = ?", (trace_id,))]
    elif not traces and len(calls) == 1:
        ((full, trace_id),) = calls.items()
        kind, call_ids = "call", [full]
    elif not traces and not calls:
        raise UsageError(f"no call or trace id starts with {prefix!r} in this store "
                         f"(`llm-adapter traces` lists the recorded ones)")
    else:
        found = sorted(traces | set(calls))
        raise UsageError(f"{prefix!r} matches {len(found)} ids ({', '.join(found[:5])}"
                         f"{', ...' if len(found) > 5 else ''}); give more characters")
    records = read_calls(conn, call_ids)
    scores = [dict(zip(("name", "value", "comment", "trace_id", "call_id", "created_at"),
                       (r[0], r[1] if r[1] is not None else r[2], *tuple(r)[3:])))
              for r in conn.execute(
                  "SELECT name, value_num, value_text, comment, trace_id, call_id, "
                  f"created_at FROM scores WHERE trace_id = ? OR call_id IN "
                  f"({', '.join('?' * len(call_ids))}) ORDER BY created_at, id",
                  (trace_id, *call_ids))]
    unknown = sum(r.status == "ok" and r.cost is None and not r.cache_hit for r in records)
    return {"kind": kind, "id": full, "trace_id": trace_id,
            "cost": _spent(_known_sum(r.cost for r in records), unknown),
            "unknown_price_calls": unknown,
            "calls": [{**asdict(r), "fallback": any(a.outcome != "ok" for a in r.attempts)}
                      for r in records],
            "scores": scores}


# -- helpers ----------------------------------------------------------------------------------
SIMULATED_ENV = "simulation"    # the simulated profile (the demo's): its calls are reported apart


def _where(since: datetime | None, until: datetime | None, env: str | None,
           **equal: str | None) -> tuple[str, list[Any]]:
    parts: list[str] = ["1 = 1"]
    params: list[Any] = []
    for clause, value in (("c.started_at >= ?", since), ("c.started_at < ?", until)):
        if value is not None:
            parts.append(clause)
            params.append(_utc(value).timestamp())
    if env is None:         # made-up spend never mixes with real calls unless asked for
        parts.append("c.environment != ?")
        params.append(SIMULATED_ENV)
    for column, wanted in (("environment", env), *equal.items()):
        if wanted is not None:
            parts.append(f"c.{column} = ?")
            params.append(wanted)
    return " AND ".join(parts), params


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def _iso_week(day: str | None) -> str | None:
    if day is None:
        return None
    year, week, _ = date.fromisoformat(day).isocalendar()
    return f"{year}-W{week:02d}"


def _known_sum(costs: Iterable[float | None]) -> float | None:
    known = [c for c in costs if c is not None]
    return sum(known) if known else None


def _spent(known: float | None, unknown_price_calls: int) -> float | None:
    """The known sum; None only when prices were unknown and none was known, else at least 0
    (failed and cached calls cost nothing, which is not the same as an unknown price)."""
    return known if known is not None or unknown_price_calls else 0.0


def _last_user_text(messages: Any) -> str:
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):     # content parts: keep the text ones
                return " ".join(str(p.get("text", "")) for p in content
                                if isinstance(p, dict) and p.get("type") == "text")
            return "" if content is None else str(content)
    return ""


def _preview(text: str, width: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width - 1] + "…"
