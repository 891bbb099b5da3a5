"""``llm-adapter costs``, ``traces`` and ``stats``: the local store's reports on the command line.

Rich tables and trees for people, ``--json`` (and ``--csv`` for costs) for machines. Nothing
here imports litellm, so the reports answer at once; ``register(main)`` adds the commands.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
import sys
from contextlib import closing
from dataclasses import asdict, fields
from datetime import datetime, timedelta, timezone
from typing import Any, cast

import click

from .._durations import parse_duration
from .tables import Col, FitTable, print_fit, wide_option
from ..errors import UsageError
from .._reports.queries import (DIMENSIONS, SIMULATED_ENV, CostRow, DailyCost, SessionTree, Sort,
                      TraceGroup, cost_report, daily_costs, list_traces, session_tree, stats,
                      trace_detail)
from .store import open_store, resolve
from .._observability.store import StoreError
from .views import fmt_cost

__all__ = ["register"]

_BLOCKS = ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")
SIMULATION_ENV = SIMULATED_ENV        # the shipped simulated profile, reported apart


class _Moment(click.ParamType):
    """A date (``2026-11-01``), a datetime, or a span back from now (``7d``, ``24h``, ``30s``:
    the one duration grammar); UTC."""

    name = "DATE"

    def __init__(self, *, end: bool) -> None:
        self.end = end              # a bare date as an end means "through that day"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        try:
            back: float | None = parse_duration(text)
        except ValueError:          # not a span back from now: a date
            back = None
        if back is not None:
            return datetime.now(timezone.utc) - timedelta(seconds=back)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r} is not a date: use YYYY-MM-DD, YYYY-MM-DDTHH:MM, or a span "
                      f"back from now (ms, s, m, h, d or w) such as 30m, 24h, 7d or 2w",
                      param, ctx)
        if self.end and re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            moment += timedelta(days=1)
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


_db_option = click.option("--db", help="The store: a file, postgresql://… or sqlite:///… "
                                       "(default: LLM_ADAPTER_STORE_URL, else "
                                       "$LLM_ADAPTER_HOME/calls.sqlite3, else the user data "
                                       "directory's).")
_simulated_option = click.option(
    "--simulated", is_flag=True,
    help=f"Report the simulated calls (environment {SIMULATION_ENV}: the demo's), which the "
         f"reports leave out otherwise; the same as --env {SIMULATION_ENV}.")
_since_option = click.option("--since", type=_Moment(end=False),
                             help="From this date or span back (2026-11-01, 7d, 24h); UTC.")
_until_option = click.option("--until", type=_Moment(end=True),
                             help="Up to this date, that day included, or span back; UTC.")
_env_filter = click.option("--env", "environment",
                           help="Only calls made in this environment (default: all).")
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def register(main: click.Group) -> None:
    """Add the report commands to the ``llm-adapter`` group."""
    for command in (costs, traces, stats_command):
        main.add_command(command)


def _open(db: str | None) -> sqlite3.Connection | None:
    """A read connection, or None (after saying so) when nothing was recorded there yet."""
    store = open_store(db)
    if store is None:
        return None
    try:
        return store.connect()
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def _esc(text: object) -> str:
    from rich.markup import escape

    return escape(str(text))


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=lambda o: o.isoformat()
                          if isinstance(o, datetime) else str(o)))


# -- costs -------------------------------------------------------------------------------------
@click.command()
@click.option("--by", type=click.Choice(list(DIMENSIONS)), default="model", show_default=True,
              help="Group by (model is the model group).")
@_since_option
@_until_option
@_env_filter
@click.option("--chart", is_flag=True, help="Also draw the daily costs (always with --by day).")
@_json_option
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV, one row per group (no totals).")
@_db_option
@_simulated_option
@wide_option
def costs(by: str, since: datetime | None, until: datetime | None, environment: str | None,
          chart: bool, as_json: bool, as_csv: bool, db: str | None, simulated: bool,
          wide: bool) -> None:
    """What the calls cost, by group, with their share of calls and of cost."""
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    environment = SIMULATION_ENV if simulated else environment
    conn = _open(db)
    if conn is None:
        return
    with closing(conn):
        report = cost_report(conn, by, since, until, environment)
        daily = daily_costs(conn, since, until, environment) \
            if (chart or by == "day") and not (as_json or as_csv) else []
    if as_json:
        _echo_json({"by": by, "since": since, "until": until, "env": environment,
                    "rows": [asdict(r) for r in report.rows], "total": asdict(report.total)})
    elif as_csv:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([by, *[f.name for f in fields(CostRow)][1:]])
        writer.writerows([tuple(asdict(r).values()) for r in report.rows])
        click.echo(out.getvalue(), nl=False)
    else:
        console = _console()
        print_fit(console, _costs_table(by, report.rows, report.total, since, until,
                                        environment), wide=wide)
        if daily:
            console.print(_daily_chart(daily))


def _costs_table(by: str, rows: list[CostRow], total: CostRow, since: datetime | None,
                 until: datetime | None, environment: str | None) -> FitTable:
    window = " ".join(part for part in (
        f"from {since:%Y-%m-%d %H:%M}" if since else "", f"until {until:%Y-%m-%d %H:%M}"
        if until else "", f"env {environment}" if environment else "") if part)
    hedges = total.hedge_cost > 0                   # a column only where hedging cost something
    columns = [Col(by, "text", ellipsis="middle", min_width=14),
               Col("calls", "figure", "right"), Col("calls %", "figure", "right", drop=4),
               Col("cost", "figure", "right"),
               *((Col("of it hedges", "figure", "right", drop=2),) if hedges else ()),
               Col("cost %", "figure", "right", drop=3),
               Col("unknown price", "figure", "right", drop=1),
               Col("tokens in/cached/out", "figure", "right", drop=6),
               Col("mean latency", "figure", "right", drop=5)]
    table = FitTable(columns, title=f"costs by {by}" + (f" ({window} UTC)" if window else ""))

    def cells(row: CostRow, key: str) -> list[str]:
        hedge = [fmt_cost(row.hedge_cost) if row.hedge_cost else "-"] if hedges else []
        return [key, f"{row.calls:,}", f"{row.call_share_pct:.1f}%", fmt_cost(row.cost), *hedge,
                "-" if row.cost_share_pct is None else f"{row.cost_share_pct:.1f}%",
                f"[yellow]{_count(row.unknown_price_calls, 'call')}[/]"
                if row.unknown_price_calls else "-",
                f"{row.input_tokens:,}/{row.cached_tokens:,}/{row.output_tokens:,}",
                "-" if row.mean_latency_ms is None else f"{row.mean_latency_ms:,.0f} ms"]

    for row in rows:
        table.add_row(*cells(row, _esc(row.key) if row.key is not None else "[dim](none)[/]"))
    table.add_section()
    table.add_row(*cells(total, "[bold]total[/]"), style="bold")
    return table


def _daily_chart(days: list[DailyCost], width: int = 40) -> Any:
    from rich.table import Table

    peak = max((d.cost or 0.0 for d in days), default=0.0)
    table = Table(title="daily cost (UTC)", box=None, show_header=False, padding=(0, 1))
    for _ in range(4):
        table.add_column()
    for day in days:
        eighths = round((day.cost or 0.0) / peak * width * 8) if peak else 0
        bar = "█" * (eighths // 8) + _BLOCKS[eighths % 8]
        table.add_row(day.day, f"[cyan]{bar or '·'}[/]", fmt_cost(day.cost),
                      _count(day.calls, "call"))
    return table


# -- traces ------------------------------------------------------------------------------------
@click.group(invoke_without_command=True)
@click.option("--session", help="Show this session as a tree: session → traces → calls.")
@click.option("--user", help="Only this user's calls.")
@click.option("--agent", help="Only this agent's calls.")
@click.option("--last", type=click.IntRange(min=1), default=20, show_default=True,
              help="How many traces.")
@click.option("--sort", type=click.Choice(["time", "cost", "latency"]), default="time",
              show_default=True, help="time: the latest; cost, latency: the highest first.")
@_json_option
@_db_option
@_simulated_option
@click.pass_context
def traces(ctx: click.Context, session: str | None, user: str | None, agent: str | None,
           last: int, sort: str, as_json: bool, db: str | None, simulated: bool) -> None:
    """Recent traces and their calls (``traces show ID`` for one, ``traces sync`` to send)."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = db
        return                      # `traces --db X show ID` reads X too
    if sum(v is not None for v in (session, user, agent)) > 1:
        raise click.UsageError("choose one of --session, --user and --agent")
    env = SIMULATION_ENV if simulated else None
    conn = _open(db)
    if conn is None:
        return
    with closing(conn):
        if session is None:
            _print_traces(list_traces(conn, user=user, agent=agent, last=last,
                                      sort=cast(Sort, sort), env=env), sort, as_json)
        else:
            _print_session(session_tree(conn, session, last, cast(Sort, sort), env), as_json)


def _print_session(tree: SessionTree, as_json: bool) -> None:
    if as_json:
        _echo_json({**asdict(tree), "traces": [_trace_json(t) for t in tree.traces]})
    elif not tree.traces:
        click.echo(f"no calls recorded in session {tree.session_id}")
    else:
        _console().print(_session_view(tree))


def _print_traces(found: list[TraceGroup], sort: str, as_json: bool) -> None:
    from rich.tree import Tree

    if as_json:
        _echo_json([_trace_json(t) for t in found])
    elif not found:
        click.echo("no traces match")
    else:
        root = Tree(f"[bold]traces[/] ({len(found)}, by {sort}; times UTC)")
        for trace in found:
            _add_trace(root, trace)
        _console().print(root)


def _trace_json(trace: TraceGroup) -> dict[str, Any]:
    return {**asdict(trace), "cost": trace.cost, "latency_ms": trace.latency_ms,
            "unknown_price_calls": trace.unknown_price_calls}


def _session_view(tree: SessionTree) -> Any:
    from rich.tree import Tree

    shown = "" if len(tree.traces) == tree.trace_count else f", {len(tree.traces)} shown"
    root = Tree(f"[bold]Session {_esc(tree.session_id)}[/] · {_count(tree.trace_count, 'trace')}"
                f"{shown} · {_count(tree.call_count, 'call')} · "
                f"{_cost_text(tree.cost, tree.unknown_price_calls)} · "
                f"{tree.latency_ms:,.0f} ms (times UTC)")
    for trace in tree.traces:
        _add_trace(root, trace)
    return root


def _add_trace(parent: Any, trace: TraceGroup) -> None:
    node = parent.add(
        f"[bold]{_esc(trace.name or 'call')}[/] [dim]{trace.trace_id[:12]}[/] · "
        f"{_when(trace.started_at)} · {_count(len(trace.calls), 'call')} · "
        f"{_cost_text(trace.cost, trace.unknown_price_calls)} · {trace.latency_ms:,.0f} ms")
    for c in trace.calls:
        who = "/".join(_esc(p) for p in (c.agent, c.stage) if p) or "-"
        status = "" if c.status == "ok" else f" [red]{_esc(c.error_kind or c.status)}[/]"
        cost = fmt_cost(c.cost) if c.cost is not None or c.unknown_price else "-"
        latency = "-" if c.latency_ms is None else f"{c.latency_ms:,.0f} ms"
        node.add(f"[cyan]{who}[/] {_esc(c.model_group)} → {_esc(c.deployment or '-')} · "
                 f"{latency} · {cost}{status} [dim]{c.call_id[:12]}[/]\n"
                 f"[dim]{_esc(c.input_preview)}[/] → {_esc(c.output_preview)}")


def _cost_text(cost: float | None, unknown: int) -> str:
    extra = f" + {unknown} unknown price" if unknown and cost is not None else ""
    return fmt_cost(cost) + extra


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@traces.command("show")
@click.argument("ident", metavar="ID")
@_json_option
@_db_option
@click.pass_obj
def show(group_db: str | None, ident: str, as_json: bool, db: str | None) -> None:
    """Every field of a call, or of each call of a trace, with its attempts (ID: 6+ hex chars)."""
    conn = _open(db or group_db)
    if conn is None:
        return
    try:
        with closing(conn):
            detail = trace_detail(conn, ident)
    except UsageError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        _echo_json(detail)
        return
    console = _console()
    console.print(f"[bold]{detail['kind']} {detail['id']}[/] · "
                  f"{_count(len(detail['calls']), 'call')} · "
                  f"{_cost_text(detail['cost'], detail['unknown_price_calls'])}")
    for call in detail["calls"]:
        console.print(_call_table(call))
    if detail["scores"]:
        console.print("scores: " + ", ".join(
            f"{_esc(s['name'])}={_esc(s['value'])}" for s in detail["scores"]))


def _call_table(call: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"call {call['call_id']}", show_header=False, title_justify="left")
    table.add_column(style="bold cyan")
    table.add_column(overflow="fold")
    u = call["usage"]
    skip = {"call_id", "usage", "attempts", "input", "output", "tool_calls", "started_at",
            "ended_at"}
    table.add_row("time", f"{_when(call['started_at'])} → {_when(call['ended_at'])} UTC")
    table.add_row("tokens", f"{u['input_tokens']} in + {u['cached_tokens']} cached + "
                            f"{u['cache_write_tokens']} cache write + {u['output_tokens']} out "
                            f"({u['reasoning_tokens']} reasoning)")
    for key, value in call.items():
        if key not in skip and value is not None and value is not False and \
                value not in ((), [], {}):
            shown = fmt_cost(value) if key in ("cost", "cost_saved") else \
                json.dumps(value, default=str, ensure_ascii=False) \
                if isinstance(value, (dict, list, tuple)) else value
            table.add_row(key.replace("_", " "), _esc(shown))
    if call["cost"] is None and call["status"] == "ok" and not call["cache_hit"]:
        table.add_row("cost", "unknown price")
    for message in call["input"]:
        table.add_row(f"input: {_esc(message.get('role', '?'))}",
                      _esc(message.get("content") if isinstance(message.get("content"), str)
                           else json.dumps(message.get("content"), ensure_ascii=False)))
    table.add_row("output", _esc(call["output"] or ""))
    for tool in call["tool_calls"]:
        table.add_row("tool call", _esc(json.dumps(tool, ensure_ascii=False)))
    for n, a in enumerate(call["attempts"], 1):
        outcome = {"ok": "green", "skipped": "yellow"}.get(a["outcome"], "red")
        detail = " ".join(str(p) for p in (a["error_kind"], a["status"], a["message"]) if p)
        took = "" if a["latency_ms"] is None else f" {a['latency_ms']:,.0f} ms"
        if a.get("cost"):                               # a lost hedge, billed
            took += f" {fmt_cost(a['cost'])}"
        table.add_row(f"attempt {n}", f"{_esc(a['deployment'] or a['model_group'])} "
                                      f"[{outcome}]{a['outcome']}[/]{took} {_esc(detail)}")
    return table


@traces.command("sync")
@click.option("--retry-quarantined", is_flag=True,
              help="Send again the calls Langfuse refused earlier (e.g. after fixing its limits).")
@click.option("--drop", is_flag=True, help="Delete the quarantined calls for good.")
@_db_option
@click.pass_obj
def sync(group_db: str | None, retry_quarantined: bool, drop: bool, db: str | None) -> None:
    """Send to Langfuse now what it has not acknowledged; list what it refused.

    Exits non-zero while anything is still pending or quarantined.
    """
    if retry_quarantined and drop:
        raise click.UsageError("choose one of --retry-quarantined and --drop")
    found = open_store(db or group_db, quiet=True)
    if found is None:
        click.echo(f"nothing to send: no store at {resolve(db or group_db)}")
        return
    try:
        from .._observability.delivery_report import dropped, langfuse_status, quarantine_lines
        from .._observability.tracing import langfuse_credentials
        from .._observability.tracing import sync as deliver

        store = found
        store.recover_pending()     # what processes killed outright left in its journal
        if store.recovered:
            click.echo(f"recovered {store.recovered} call(s) that ended processes had not "
                       f"committed to the store")
        if drop:
            click.echo(f"dropped {dropped(store)} quarantined row(s)")
        credentials = langfuse_credentials()
        if credentials is None:
            held = langfuse_status(store, None)
            click.echo(f"sent nothing; pending: {held['pending']} call(s), "
                       f"{held['spool_pending']} span batch(es)")
            raise click.ClickException("LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY are not "
                                       "set: set them (and LANGFUSE_BASE_URL) to send to "
                                       "Langfuse")
        state = deliver(store, credentials, retry_quarantined=retry_quarantined)
    except ImportError as exc:
        raise click.ClickException(f"Langfuse delivery is not available in this installation "
                                   f"({exc}); reinstall with `pip install -r requirements.txt`"
                                   ) from None
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    if state is None:               # keys unset meanwhile
        raise click.ClickException("LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY are not set")
    click.echo(f"sent {state.sent} span(s); pending: {state.pending} call(s), "
               f"{state.spool_pending} span batch(es); "
               f"quarantined: {state.quarantined + state.spool_quarantined}")
    for line in quarantine_lines(store, credentials.public_key):
        click.echo(line)
    if state.pending or state.spool_pending:
        click.echo(f"some traces are still waiting: {state.last_error or 'Langfuse is busy'}",
                   err=True)
    if state.quarantined or state.spool_quarantined:
        click.echo("Langfuse refused the quarantined calls for their content: "
                   "`traces sync --retry-quarantined` sends them again, `--drop` deletes them",
                   err=True)
    if not state.ok:
        sys.exit(1)


# -- stats -------------------------------------------------------------------------------------
@click.command("stats")
@_since_option
@_until_option
@_env_filter
@_json_option
@_db_option
@_simulated_option
def stats_command(since: datetime | None, until: datetime | None, environment: str | None,
                  as_json: bool, db: str | None, simulated: bool) -> None:
    """Calls, success rate, mean and p95 latency, cost, fallback and cache-hit rates."""
    environment = SIMULATION_ENV if simulated else environment
    conn = _open(db)
    if conn is None:
        return
    with closing(conn):
        numbers = stats(conn, since, until, environment)
    if as_json:
        _echo_json(numbers)
        return
    from rich.table import Table

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}%"

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f} ms"

    table = Table(title="call metrics", show_header=False)
    table.add_column(style="bold cyan")
    table.add_column(justify="right")
    for name, value in (
            ("calls", f"{numbers['calls']:,}"), ("success rate", pct(numbers["success_rate_pct"])),
            ("mean latency", ms(numbers["mean_latency_ms"])),
            ("p95 latency", ms(numbers["p95_latency_ms"])),
            ("total cost", _cost_text(numbers["total_cost"], numbers["unknown_price_calls"])),
            ("fallback rate", pct(numbers["fallback_rate_pct"])),
            ("hedged calls", pct(numbers["hedged_rate_pct"])),
            ("hedge cost", fmt_cost(numbers["hedge_cost"])),
            ("cache hit rate", pct(numbers["cache_hit_rate_pct"]))):
        table.add_row(name, value)
    for title, counts in (("status", numbers["by_status"]), ("error", numbers["by_error_kind"])):
        for key, count in counts.items():
            table.add_row(f"{title}: {_esc(key)}", f"{count:,}")
    _console().print(table)
