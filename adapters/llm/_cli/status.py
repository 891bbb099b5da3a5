"""``llm-adapter status``: what the traffic controls see right now, and where that comes from.

With Redis, cooldowns, rate-limit use and budgets are the live counters every process shares.
Without it they live in each process, so a fresh ``status`` process has none of its own: it
says so in its first line and reads what the local store knows instead (failed attempts within
``cooldown_time``, the last minute's requests and tokens, spend in each budget's period). The
alerts are the same evaluation as ``llm-adapter alerts check``; the cache hit rate is the
store's last 24 hours.
"""

from __future__ import annotations

import os
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from .._routing.cooldowns import reason

__all__ = ["collect_status", "status_tables"]


def collect_status(llm: Any, *, alerts_env: str | None = None,
                   now: float | None = None) -> dict[str, Any]:
    """Status of one adapter's config: deployments, limits, cache, budgets, alerts.

    ``alerts_env`` filters the calls the alert rules read, as ``alerts check --env`` does.
    """
    config = llm.config
    moment = time.time() if now is None else now
    shared = bool(config.router_settings.redis_url or os.environ.get("REDIS_URL"))
    store = llm.telemetry.store
    conn = store.connect() if store is not None else None
    try:
        return {
            "environment": config.environment,
            "shared_state": "redis" if shared else "this process only",
            "cooldown_window": f"{config.router_settings.cooldown_time:g} s",
            "store": store.where if store is not None else None,
            "deployments": _deployments(llm, conn, moment, shared=shared),
            "limits": _limits(llm, conn, moment, shared=shared),
            "cache": _cache(llm, conn),
            "budgets": _budgets(llm, conn, moment, shared=shared),
            "alerts": _alerts(config, conn, moment, alerts_env),
            "langfuse": _langfuse(llm),
        }
    finally:
        if conn is not None:
            conn.close()


def _deployments(llm: Any, conn: sqlite3.Connection | None, now: float, *,
                 shared: bool) -> list[dict[str, Any]]:
    """Live cooldowns; without shared state, the store's failed attempts within
    ``cooldown_time`` stand in for them (more than ``allowed_fails`` of them cool a
    deployment down in the process that saw them)."""
    from .._reports.queries import recent_failures

    config = llm.config
    settings = config.router_settings
    failures = recent_failures(conn, now - settings.cooldown_time, config.environment) \
        if conn is not None else {}
    rows = []
    for group in config.groups():
        cooling = llm.gateway.cooldowns.cooling(group)
        for d in config.group(group):
            info = cooling.get(d.id)
            seen = failures.get(d.id)
            row: dict[str, Any] = {"group": group, "deployment": d.id, "provider": d.provider,
                                   "state": "ok", "recent_failures": seen.failures if seen else 0}
            if info:
                ends = float(info.get("timestamp", now)) + float(info.get("cooldown_time", 0))
                row.update(state="cooling", reason=reason(info),
                           expires_in_s=round(max(ends - now, 0.0), 1))
            elif seen is not None:
                likely = not shared and seen.failures > settings.allowed_fails
                row.update(state="cooling (per the store)" if likely else "failing",
                           reason=", ".join(seen.kinds) or "a failure",
                           last_failure_s_ago=round(now - seen.last_at, 1))
                if likely:
                    row["expires_in_s"] = round(max(seen.last_at + settings.cooldown_time - now,
                                                    0.0), 1)
            rows.append(row)
    return rows


def _limits(llm: Any, conn: sqlite3.Connection | None, now: float, *,
            shared: bool) -> dict[str, Any] | None:
    limiter = llm.policies.limiter
    if limiter is None:
        return None
    usage: dict[str, Any] = limiter.usage()
    if shared or conn is None:
        usage["source"] = "live counters"
        return usage
    from .._reports.queries import recent_use

    used = recent_use(conn, now - float(usage.get("window_s", 60)), llm.config.environment)
    scopes = [(None, usage.get("global") or {})]
    scopes += list((usage.get("deployments") or {}).items())
    for deployment, entry in scopes:
        requests, tokens = used.get(deployment, (0, 0))
        for kind, value in (("rpm", requests), ("tpm", tokens)):
            if kind in entry:
                entry[kind] = {**entry[kind], "used": value}
    usage["source"] = "from the store"
    return usage


def _budgets(llm: Any, conn: sqlite3.Connection | None, now: float, *,
             shared: bool) -> list[dict[str, Any]]:
    """Spend per budget and when it resets; from the store when counters are per process."""
    from .._traffic.budgets import _period

    budgets = llm.policies.budgets
    if budgets is None:
        return []
    live = {(u["rule"], u["id"]): u for u in budgets.usage()} if shared else {}
    out = []
    for rule in budgets.rules:
        resets = _period(rule.period, now)[1]
        base = {"scope": rule.scope, "limit": rule.limit, "period": rule.period,
                "rule": rule.key, "resets_at": resets.isoformat() if resets else None,
                "source": "live counters" if shared else "from the store"}
        if shared:
            found = [u for (key, _), u in live.items() if key == rule.key]
            idle = rule.id or (llm.config.environment if rule.scope == "environment" else None)
            out += [{**base, "id": u["id"], "spent": u["spent"], "reserved": u["reserved"]}
                    for u in found] or [{**base, "id": idle, "spent": 0.0, "reserved": 0.0}]
            continue
        out += _stored_spend(rule, base, conn, now, llm.config.environment)
    return out


def _stored_spend(rule: Any, base: dict[str, Any], conn: sqlite3.Connection | None, now: float,
                  environment: str) -> list[dict[str, Any]]:
    from .._observability.alert_rules import period_start
    from .._reports.queries import spend

    value = environment if rule.scope == "environment" else rule.id
    if conn is None:
        return [{**base, "id": value, "spent": None, "reserved": None}]
    since = None if rule.period == "total" else period_start(rule.period, now)
    spent = spend(conn, rule.scope, since, environment, value)
    if value is not None:
        return [{**base, "id": value, "spent": spent.get(value, 0.0), "reserved": None}]
    return [{**base, "id": who, "spent": amount, "reserved": None}
            for who, amount in spent.items()] or [{**base, "id": None, "spent": 0.0,
                                                   "reserved": None}]


def _langfuse(llm: Any) -> dict[str, Any] | None:
    """What the store holds for Langfuse: pending, quarantined, and why."""
    store = llm.telemetry.store
    if store is None:
        return None
    from .._observability.delivery_report import langfuse_status

    sink = llm.telemetry.langfuse
    return langfuse_status(store, sink.credentials.public_key if sink is not None else None)


def _alerts(config: Any, conn: sqlite3.Connection | None, now: float,
            env: str | None) -> list[dict[str, Any]]:
    """The alert rules over the stored calls: the evaluation ``alerts check`` makes."""
    from .._observability.alert_rules import AlertSettings
    from .._observability.alerts import reading_dict, store_readings

    settings = AlertSettings.from_config(config)
    if settings is None or not settings.rules or conn is None:
        return []
    return [reading_dict(r, firing=r.breaching)
            for r in store_readings(conn, settings, now=now, env=env)]


def _cache(llm: Any, conn: sqlite3.Connection | None) -> dict[str, Any] | None:
    settings = llm.config.router_settings.cache
    if not settings:
        return None
    out: dict[str, Any] = {"type": settings.get("type", "local"), "ttl": settings.get("ttl")}
    if conn is not None:
        from .._reports.queries import stats

        since = datetime.now(timezone.utc) - timedelta(hours=24)
        day = stats(conn, since=since, env=llm.config.environment)
        out["calls_24h"] = day.get("calls")
        out["hit_rate_24h_pct"] = day.get("cache_hit_rate_pct")
    return out


# -- rendering ----------------------------------------------------------------------------------
def status_headline(status: dict[str, Any]) -> str:
    """The first line: whose state this is, and where the figures come from."""
    where = f" (store: {status['store']})" if status.get("store") else ""
    if status["shared_state"] == "redis":
        return (f"environment {status['environment']}: state shared through Redis, live for "
                f"every process{where}")
    return (f"environment {status['environment']}: state is per process (no Redis), so this "
            f"process sees no live cooldowns, limits or budgets of others; the figures are "
            f"what the local store recorded{where}")


def status_tables(status: dict[str, Any]) -> list[Any]:
    """The headline, then one table per part (``FitTable``s for ``print_fit``)."""
    from .tables import Col, FitTable
    from .views import fmt_cost

    out: list[Any] = [status_headline(status)]
    deployments = FitTable(
        [Col("group", min_width=12, drop=3), Col("deployment", ellipsis="middle"),
         Col("provider", drop=2), Col("state", "prose", min_width=10),
         Col("reason", "prose", min_width=10, drop=1),
         Col("failures", "figure", "right"), Col("back in", "figure", "right")],
        title=f"deployments (failures: the last {_cooldown_words(status)}, cooldown_time)")
    for d in status["deployments"]:
        colour = "green" if d["state"] == "ok" else "yellow"
        deployments.add_row(d["group"], d["deployment"], d["provider"],
                            f"[{colour}]{d['state']}[/]", d.get("reason", ""),
                            str(d.get("recent_failures", 0)),
                            f"{d['expires_in_s']:g} s" if "expires_in_s" in d else "")
    out.append(deployments)
    limits = status.get("limits")
    if limits:
        table = FitTable([Col("scope", ellipsis="middle", min_width=16),
                          Col("requests used / limit", "figure", "right"),
                          Col("tokens used / limit", "figure", "right")],
                         title=f"rate limits (last {limits.get('window_s', 60):g} s; "
                               f"{limits.get('source', 'live counters')})")
        scopes = [("every deployment", limits.get("global") or {})]
        scopes += [(f"deployment {k}", v) for k, v in (limits.get("deployments") or {}).items()]
        for name, use in scopes:
            table.add_row(name, _use(use.get("rpm")), _use(use.get("tpm")))
        out.append(table)
    cache = status.get("cache")
    if cache:
        table = FitTable([Col("type"), Col("ttl", "figure", "right"),
                          Col("calls (24 h)", "figure", "right"),
                          Col("hit rate (24 h)", "figure", "right")], title="response cache")
        rate = cache.get("hit_rate_24h_pct")
        table.add_row(str(cache["type"]), str(cache.get("ttl")), f"{cache.get('calls_24h', 0):,}"
                      if cache.get("calls_24h") is not None else "-",
                      "-" if rate is None else f"{rate:.1f} %")
        out.append(table)
    if status.get("budgets"):
        table = FitTable([Col("scope", drop=1), Col("id", ellipsis="middle"),
                          Col("spent", "figure", "right"), Col("limit", "figure", "right"),
                          Col("period"), Col("resets (UTC)", "figure", "right")],
                         title=f"budgets ({status['budgets'][0].get('source', 'live counters')})")
        for b in status["budgets"]:
            spent = b.get("spent")
            table.add_row(str(b.get("scope")), str(b.get("id") or "each (none yet)"),
                          "?" if spent is None else fmt_cost(float(spent)),
                          fmt_cost(float(b["limit"])), str(b.get("period")),
                          _resets(b.get("resets_at")))
        out.append(table)
    if status.get("alerts"):
        table = FitTable([Col("rule", ellipsis="middle"), Col("value", "figure", "right"),
                          Col("threshold", "figure", "right"), Col("calls", "figure", "right"),
                          Col("state", "prose", min_width=8)],
                         title="alerts (the evaluation of `llm-adapter alerts check`)")
        for a in status["alerts"]:
            from .._observability.alert_rules import format_value

            state = "[bold red]FIRING[/]" if a.get("firing") else \
                f"[dim]too few calls (min {a['min_calls']})[/]" \
                if a["calls"] < a["min_calls"] else "[green]ok[/]"
            table.add_row(str(a["rule"]), str(a["shown"]), format_value(a["metric"], a["above"]),
                          f"{a['calls']:,}", state)
        out.append(table)
    out += _langfuse_tables(status.get("langfuse"))
    return out


def _langfuse_tables(langfuse: dict[str, Any] | None) -> list[Any]:
    from .tables import Col, FitTable

    if not langfuse:
        return []
    table = FitTable([Col("pending calls", "figure", "right"),
                      Col("quarantined", "figure", "right"),
                      Col("spooled batches", "figure", "right"),
                      Col("last error", "prose", min_width=16)],
                     title="Langfuse delivery (from the local store)")
    quarantined = langfuse["quarantined"] + langfuse["spool_quarantined"]
    table.add_row(str(langfuse["pending"]), f"[red]{quarantined}[/]" if quarantined else "0",
                  str(langfuse["spool_pending"]), escape(str(langfuse["last_error"] or "")))
    out = [table]
    if langfuse["quarantine"]:
        table = FitTable([Col("since", "figure"), Col("count", "figure", "right"),
                          Col("reason", "prose", min_width=16)],
                         title="quarantined: Langfuse refused them for their content "
                               "(`llm-adapter traces sync --retry-quarantined` or --drop)")
        for q in langfuse["quarantine"]:
            table.add_row(str(q["since"]), str(q["count"]), escape(str(q["reason"])))
        out.append(table)
    return out


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _cooldown_words(status: dict[str, Any]) -> str:
    return str(status.get("cooldown_window") or "30 s")


def _resets(at: str | None) -> str:
    if at is None:
        return "never (total)"
    return datetime.fromisoformat(at).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")


def _use(use: Any) -> str:
    if not use:
        return "-"
    return f"{_whole(use.get('used', 0))} / {_whole(use.get('limit'))}"


def _whole(n: Any) -> str:
    if isinstance(n, (int, float)):
        return f"{n:,.0f}" if float(n).is_integer() else f"{n:,.1f}"
    return "-" if n is None else str(n)
