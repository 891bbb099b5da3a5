"""``llm-adapter status``: what the traffic controls see right now.

Cooldowns, rate-limit use and budgets come from the shared state (Redis when configured, so a
status run sees what every replica did; otherwise only this process's, which for a fresh CLI
process is empty and says so); the cache hit rate comes from the local store's last 24 hours.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

from ._cooldowns import reason

__all__ = ["collect_status", "status_tables"]


def collect_status(llm: Any) -> dict[str, Any]:
    """Status of one adapter's config: deployments, limits, cache, budgets, alerts."""
    config = llm.config
    gateway = llm.gateway
    now = time.time()
    deployments = []
    for group in config.groups():
        cooling = gateway.cooldowns.cooling(group)
        for d in config.group(group):
            info = cooling.get(d.id)
            row: dict[str, Any] = {"group": group, "deployment": d.id, "provider": d.provider,
                                   "state": "cooling" if info else "ok"}
            if info:
                ends = float(info.get("timestamp", now)) + float(info.get("cooldown_time", 0))
                row["reason"] = reason(info)
                row["expires_in_s"] = round(max(ends - now, 0.0), 1)
            deployments.append(row)
    policies = llm.policies
    shared = bool(config.router_settings.redis_url) or _redis_env()
    return {
        "environment": config.environment,
        "shared_state": "redis" if shared else "this process only",
        "deployments": deployments,
        "limits": policies.limiter.usage() if policies.limiter else None,
        "cache": _cache(llm),
        "budgets": _budgets(policies.budgets),
        "alerts": llm.telemetry.alerts.state() if llm.telemetry.alerts else [],
        "langfuse": _langfuse(llm),
    }


def _langfuse(llm: Any) -> dict[str, Any] | None:
    """What the store holds for Langfuse: pending, quarantined, and why."""
    store = llm.telemetry.store
    if store is None:
        return None
    from .delivery_report import langfuse_status

    sink = llm.telemetry.langfuse
    return langfuse_status(store, sink.credentials.public_key if sink is not None else None)


def _budgets(budgets: Any) -> list[dict[str, Any]]:
    """Spend per budget; a rule nothing was spent against yet is shown at $0."""
    if budgets is None:
        return []
    usage = list(budgets.usage())
    seen = {u["rule"] for u in usage}
    usage += [{"scope": r.scope, "id": r.id, "spent": 0.0, "reserved": 0.0, "limit": r.limit,
               "period": r.period, "resets_at": None, "rule": r.key}
              for r in budgets.rules if r.key not in seen]
    return usage


def _redis_env() -> bool:
    import os

    return bool(os.environ.get("REDIS_URL"))


def _cache(llm: Any) -> dict[str, Any] | None:
    settings = llm.config.router_settings.cache
    if not settings:
        return None
    out: dict[str, Any] = {"type": settings.get("type", "local"), "ttl": settings.get("ttl")}
    store = llm.telemetry.store
    if store is not None:
        from .reports import stats

        since = datetime.now(timezone.utc) - timedelta(hours=24)
        with store.connect() as conn:
            day = stats(conn, since=since, env=llm.config.environment)
        out["calls_24h"] = day.get("calls")
        out["hit_rate_24h_pct"] = day.get("cache_hit_rate_pct")
    return out


def status_tables(status: dict[str, Any]) -> list[Any]:
    from rich.table import Table

    tables = []
    deployments = Table(title=f"deployments ({status['environment']}; cooldowns seen from "
                              f"{status['shared_state']})")
    for column in ("group", "deployment", "provider", "state", "reason", "back in"):
        deployments.add_column(column)
    for d in status["deployments"]:
        state = "[green]ok[/]" if d["state"] == "ok" else "[yellow]cooling[/]"
        deployments.add_row(d["group"], d["deployment"], d["provider"], state,
                            d.get("reason", ""), f"{d['expires_in_s']} s" if "expires_in_s" in d
                            else "")
    tables.append(deployments)
    limits = status.get("limits")
    if limits:
        table = Table(title=f"rate limits (per {limits.get('window_s', 60):g} s window)")
        for column in ("scope", "rpm used / limit", "tpm used / limit"):
            table.add_column(column)
        scopes = [("global", limits.get("global") or {})]
        scopes += [(f"deployment {k}", v) for k, v in (limits.get("deployments") or {}).items()]
        for name, use in scopes:
            table.add_row(name, _use(use.get("rpm")), _use(use.get("tpm")))
        tables.append(table)
    cache = status.get("cache")
    if cache:
        table = Table(title="response cache")
        for column in ("type", "ttl", "calls (24 h)", "hit rate (24 h)"):
            table.add_column(column)
        rate = cache.get("hit_rate_24h_pct")
        table.add_row(str(cache["type"]), str(cache.get("ttl")), str(cache.get("calls_24h", "")),
                      "" if rate is None else f"{rate:.1f} %")
        tables.append(table)
    if status.get("budgets"):
        table = Table(title="budgets")
        for column in ("scope", "id", "spent", "limit", "period", "resets"):
            table.add_column(column)
        for b in status["budgets"]:
            table.add_row(str(b.get("scope")), str(b.get("id") or "each"),
                          f"${float(b.get('spent') or 0):.4f}", f"${float(b['limit']):.2f}",
                          str(b.get("period")), str(b.get("resets_at") or "never"))
        tables.append(table)
    if status.get("alerts"):
        table = Table(title="alerts")
        for column in ("rule", "state", "value"):
            table.add_column(column)
        for a in status["alerts"]:
            table.add_row(str(a.get("rule")), "[red]firing[/]" if a.get("firing") else "ok",
                          str(a.get("value")))
        tables.append(table)
    langfuse = status.get("langfuse")
    if langfuse:
        table = Table(title="Langfuse delivery (from the local store)")
        for column in ("pending calls", "quarantined", "spooled batches", "last error"):
            table.add_column(column)
        quarantined = langfuse["quarantined"] + langfuse["spool_quarantined"]
        table.add_row(str(langfuse["pending"]),
                      f"[red]{quarantined}[/]" if quarantined else "0",
                      str(langfuse["spool_pending"]), str(langfuse["last_error"] or ""))
        tables.append(table)
        if langfuse["quarantine"]:
            table = Table(title="quarantined: Langfuse refused them for their content "
                                "(`llm-adapter traces sync --retry-quarantined` or --drop)")
            for column in ("since", "count", "reason"):
                table.add_column(column)
            for q in langfuse["quarantine"]:
                table.add_row(q["since"], str(q["count"]), str(q["reason"]))
            tables.append(table)
    return tables


def _use(use: Any) -> str:
    if not use:
        return "-"
    return f"{use.get('used', 0):g} / {use.get('limit', '-')}"
