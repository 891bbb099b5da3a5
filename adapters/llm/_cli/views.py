"""How responses, models and checks look: rich tables for people, plain dicts for ``--json``."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from .tables import Col, FitTable
from .._config.loader import Config
from .._observability.records import LLMResponse

__all__ = ["checks_table", "fmt_cost", "models_rows", "models_table", "response_dict",
           "response_table"]


def fmt_cost(cost: float | None) -> str:
    """USD with the precision its size needs: $12.34, $0.50, $0.0123, $0.000123.

    Amounts of a dollar or more get cents; smaller ones three significant digits (trailing
    zeros dropped down to cents), so a fraction of a cent is never shown as $0.00.
    """
    if cost is None:
        return "unknown price"
    if cost == 0:
        return "$0.00"
    size = abs(cost)
    if size >= 1:
        return f"{'-' if cost < 0 else ''}${size:,.2f}"
    decimals = max(2 - math.floor(math.log10(size)), 2)
    digits = f"{size:.{decimals}f}"
    whole, _, frac = digits.partition(".")
    frac = frac.rstrip("0").ljust(2, "0")
    return f"{'-' if cost < 0 else ''}${whole}.{frac}"


def response_dict(response: LLMResponse) -> dict[str, Any]:
    return {
        "content": response.content,
        "model": response.model,
        "answered_group": response.answered_group,
        "deployment": response.deployment,
        "provider": response.provider,
        "provider_model": response.provider_model,
        "usage": {**asdict(response.usage), "total_tokens": response.usage.total_tokens},
        "cost": response.cost,
        "latency_ms": round(response.latency_ms, 2),
        "ttft_ms": None if response.ttft_ms is None else round(response.ttft_ms, 2),
        "finish_reason": response.finish_reason,
        "tool_calls": [asdict(t) for t in response.tool_calls],
        "attempts": [asdict(a) for a in response.attempts],
        "call_id": response.call_id,
    }


def attempts_text(response: LLMResponse) -> str:
    parts = []
    for a in response.attempts:
        if a.outcome == "ok":
            parts.append(f"[green]{a.deployment} ok[/]")
        else:
            what = f"{a.error_kind}{' ' + str(a.status) if a.status else ''}"
            colour = "yellow" if a.outcome == "skipped" else "red"
            took = "" if a.outcome == "skipped" else f" {a.latency_ms or 0:.0f}ms"
            if a.cost:                                  # a lost hedge, billed
                took += f" {fmt_cost(a.cost)}"
            parts.append(f"[{colour}]{a.deployment or a.model_group} {a.outcome}: {what}{took}[/]")
    return " → ".join(parts)


def response_table(response: LLMResponse, *, title: str | None = None) -> Any:
    from rich.table import Table

    table = Table(title=title, show_header=False, box=None, padding=(0, 1))
    table.add_column(style="bold cyan")
    table.add_column()
    u = response.usage
    via = f" → {response.answered_group}" if response.answered_group not in (
        None, response.model) else ""
    table.add_row("model", f"{response.model}{via} → {response.deployment} "
                           f"({response.provider}/{response.provider_model})")
    table.add_row("latency", f"{response.latency_ms:.1f} ms" +
                  (f" (first chunk {response.ttft_ms:.1f} ms)" if response.ttft_ms else ""))
    table.add_row("tokens", f"{u.input_tokens} in + {u.cached_tokens} cached + "
                            f"{u.output_tokens} out = {u.total_tokens}")
    table.add_row("cost", fmt_cost(response.cost))
    table.add_row("attempts", attempts_text(response))
    if response.tool_calls:
        table.add_row("tool calls",
                      ", ".join(f"{t.name}({t.arguments})" for t in response.tool_calls))
    return table


def models_rows(config: Config) -> list[dict[str, Any]]:
    """One row per deployment; ``key_present`` is the truth about the environment, and
    ``key_needed`` is false where the simulator serves the deployment."""
    chains = dict(config.fallbacks) if config.profile.fallbacks_enabled else {}
    rows = []
    for d in config.deployments:
        rows.append({
            "group": d.model_name, "deployment": d.id, "provider": d.provider,
            "model": d.litellm_params.get("model"), "api_base": d.litellm_params.get("api_base"),
            "key_env": d.key_env, "key_present": d.key_present,
            "key_needed": d.key_env is not None and not config.profile.simulated,
            "fallbacks": list(chains.get(d.model_name, ())),
            "default": d.model_name == config.default_model,
        })
    return rows


def models_table(config: Config) -> FitTable:
    sim = " (simulated: every deployment served by the provider simulator)" \
        if config.profile.simulated else ""
    table = FitTable([Col("group", "prose", min_width=14), Col("deployment", ellipsis="middle"),
                      Col("model", ellipsis="middle", drop=2), Col("key", "prose", min_width=14),
                      Col("falls back to", "prose", min_width=14, drop=1)],
                     title=f"environment {config.environment}{sim}")
    for row in models_rows(config):
        if row["key_env"] is None:
            key = "[dim]not needed[/]"
        elif not row["key_needed"]:
            key = "[dim]not needed (simulated)[/]"
        elif row["key_present"]:
            key = f"[green]{row['key_env']} set[/]"
        else:
            key = f"[red]{row['key_env']} missing[/]"
        group = f"[bold]{row['group']}[/] (default)" if row["default"] else row["group"]
        table.add_row(group, row["deployment"], escape(str(row["model"])), key,
                      " → ".join(row["fallbacks"]) or "-")
    return table


_MARKS = {"ok": "[green]✓[/]", "fail": "[red]✗[/]", "info": "[blue]i[/]"}


def checks_table(checks: list[dict[str, Any]]) -> FitTable:
    """Doctor's checks; details and fixes wrap at word boundaries rather than being cut."""
    table = FitTable([Col("", "figure"), Col("check", "prose", min_width=16),
                      Col("detail", "prose", min_width=20), Col("fix", "prose", min_width=20)],
                     title="llm-adapter doctor (✓ ok, ✗ to fix, i for information)")
    for c in checks:
        level = c.get("level") or ("ok" if c["ok"] else "fail")
        table.add_row(_MARKS.get(level, level), escape(c["check"]),
                      escape(c.get("detail", "")),
                      "" if level != "fail" else escape(c.get("fix", "")))
    return table


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)
