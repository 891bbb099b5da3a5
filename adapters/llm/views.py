"""How responses, models and checks look: rich tables for people, plain dicts for ``--json``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from .config import Config
from .records import LLMResponse

__all__ = ["checks_table", "fmt_cost", "models_rows", "models_table", "response_dict",
           "response_table"]


def fmt_cost(cost: float | None) -> str:
    return "unknown price" if cost is None else f"${cost:.6f}"


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
        table.add_row("tool calls", ", ".join(f"{t.name}({t.arguments})" for t in response.tool_calls))
    return table


def models_rows(config: Config) -> list[dict[str, Any]]:
    chains = dict(config.fallbacks) if config.profile.fallbacks_enabled else {}
    rows = []
    for d in config.deployments:
        rows.append({
            "group": d.model_name, "deployment": d.id, "provider": d.provider,
            "model": d.litellm_params.get("model"), "api_base": d.litellm_params.get("api_base"),
            "key_env": d.key_env, "key_present": d.key_present or config.profile.simulated,
            "fallbacks": list(chains.get(d.model_name, ())),
            "default": d.model_name == config.default_model,
        })
    return rows


def models_table(config: Config) -> Any:
    from rich.table import Table

    sim = " (simulated: every deployment served by the provider simulator)" \
        if config.profile.simulated else ""
    table = Table(title=f"environment {config.environment}{sim}")
    for column in ("group", "deployment", "model", "key", "falls back to"):
        table.add_column(column)
    for row in models_rows(config):
        if row["key_env"] is None:
            key = "[dim]not needed[/]"
        elif row["key_present"]:
            key = f"[green]{row['key_env']} set[/]"
        else:
            key = f"[red]{row['key_env']} missing[/]"
        group = f"[bold]{row['group']}[/] (default)" if row["default"] else row["group"]
        table.add_row(group, row["deployment"], str(row["model"]), key,
                      " → ".join(row["fallbacks"]) or "-")
    return table


def checks_table(checks: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="llm-adapter doctor")
    for column in ("", "check", "detail", "fix"):
        table.add_column(column)
    for c in checks:
        table.add_row("[green]✓[/]" if c["ok"] else "[red]✗[/]", c["check"], c.get("detail", ""),
                      "" if c["ok"] else c.get("fix", ""))
    return table
