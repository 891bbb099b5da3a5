"""``llm-adapter prompts ...``: list, show, diff, push, pull, promote (and roll back), stats.

Push and pull keep the local registry (``prompts/``) and Langfuse in step by content, not by
version number: a version is created only when no version on the other side has the same type,
template and config, so both commands are idempotent. Rolling back is promoting an older
version. Nothing here imports litellm; ``register(main)`` adds the group.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from typing import TYPE_CHECKING, Any

import click

from .tables import Col, FitTable, print_fit, wide_option
from ..errors import LLMAdapterError
from .._prompts.sources import (PromptMissing, PromptRecord, SourceUnreachable, merge_pulled,
                             same_content)

from .views import fmt_cost

if TYPE_CHECKING:
    from .._prompts.sources import LangfuseSource
    from .._prompts.registry import Prompt, PromptRegistry

__all__ = ["prompts", "register"]

_config_option = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                              help="Config file (default: $LLM_ADAPTER_CONFIG or "
                                   "config/litellm_config.yaml).")
_env_option = click.option("--env", "environment",
                           help="Environment profile (default: $ENVIRONMENT or development).")
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
_local_option = click.option("--local", is_flag=True,
                             help="Only the local registry, even when Langfuse is configured.")
_NO_LANGFUSE = ("Langfuse is not configured: set LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY and "
                "LANGFUSE_BASE_URL")


def register(main: click.Group) -> None:
    """Add the ``prompts`` group to the ``llm-adapter`` command."""
    main.add_command(prompts)


@click.group()
def prompts() -> None:
    """The prompt registry: local prompts/ and Langfuse, versions, labels, A/B stats."""


# -- helpers ---------------------------------------------------------------------------------
@contextmanager
def _errors() -> Iterator[None]:
    """Errors as one line that says what to do, not a traceback."""
    try:
        yield
    except (LLMAdapterError, PromptMissing, SourceUnreachable) as exc:
        raise click.ClickException(str(exc)) from None


def _registry(config_path: str | None, environment: str | None, *,
              local: bool = False) -> PromptRegistry:
    """The registry the adapter would build, with Langfuse whenever its keys are set."""
    from .._config.loader import load_config
    from .._prompts.registry import build_registry

    with _errors():
        config = load_config(config_path, environment=environment)
        return build_registry(config, enable_langfuse=not local, prefetch=False)


def _langfuse(registry: PromptRegistry) -> LangfuseSource:
    if registry.langfuse is None:
        raise click.ClickException(_NO_LANGFUSE)
    return registry.langfuse


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def _esc(text: object) -> str:
    from rich.markup import escape

    return escape(str(text))


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def _selector(value: str) -> dict[str, Any]:
    """``3`` -> version 3; anything else is a label."""
    return {"version": int(value)} if value.isdigit() else {"label": value}


def _label_map(versions: list[PromptRecord]) -> str:
    return ", ".join(f"{label}→v{v['version']}" for v in versions for label in v["labels"]
                     if label != "latest")


def _prompt_dict(p: Prompt) -> dict[str, Any]:
    return {"name": p.name, "version": p.version, "type": p.type, "labels": list(p.labels),
            "source": p.source, "location": p.location, "config": dict(p.config),
            "variables": list(p.variables),
            "placeholders": list(p.placeholders),
            "template": p.template if isinstance(p.template, str) else list(p.template)}


def _template_lines(p: Prompt) -> list[str]:
    if isinstance(p.template, str):
        return p.template.splitlines()
    return [f"[placeholder: {m['name']}]" if m.get("type") == "placeholder"
            else f"[{m.get('role')}] {m.get('content')}" for m in p.template]


def _render(p: Prompt) -> list[str]:
    """Template then config, as lines to diff."""
    config = json.dumps(dict(p.config), indent=2, sort_keys=True, default=str).splitlines()
    return [*_template_lines(p), "", "config:", *config]


# -- list, show, diff ------------------------------------------------------------------------
@prompts.command("list")
@_local_option
@_json_option
@wide_option
@_config_option
@_env_option
def list_command(local: bool, as_json: bool, wide: bool, config_path: str | None,
                 environment: str | None) -> None:
    """Every prompt, local and in Langfuse, with versions, labels and A/B experiments."""
    registry = _registry(config_path, environment, local=local)
    rows: dict[str, dict[str, Any]] = {}
    with _errors():
        for name in registry.local.names():
            versions = registry.local.versions(name)
            rows[name] = {"name": name, "type": versions[0]["type"],
                          "local_versions": [v["version"] for v in versions],
                          "local_labels": _label_map(versions),
                          "location": str(registry.local.file_of(name)),
                          "description": registry.local.description(name)}
    if registry.langfuse is not None:
        try:
            catalog = registry.langfuse.catalog()
        except SourceUnreachable as exc:
            click.echo(f"warning: {exc}; showing the local registry only", err=True)
            catalog = []
        for meta in catalog:
            row = rows.setdefault(meta["name"], {"name": meta["name"], "type": meta["type"]})
            row.update(langfuse_versions=meta["versions"], langfuse_labels=", ".join(
                x for x in meta["labels"] if x != "latest"))
    for name, experiment in registry.experiments.items():
        rows.setdefault(name, {"name": name})["experiment"] = {
            label: round(share, 4) for label, share in experiment.shares.items()}
    ordered = [rows[k] for k in sorted(rows)]
    if as_json:
        _echo_json(ordered)
        return
    table = FitTable([Col("name", ellipsis="middle", min_width=20), Col("type", drop=1),
                      Col("local", "prose", min_width=12), Col("langfuse", "prose", min_width=12),
                      Col("A/B", "prose", min_width=12, drop=2)],
                     title=f"prompts ({registry.local.searched()}"
                           f"{', ' + registry.langfuse.base_url if registry.langfuse else ''})")
    for r in ordered:
        local_text = f"v{', v'.join(map(str, r['local_versions']))}  {r['local_labels']}" \
            if "local_versions" in r else "—"
        remote = f"v{', v'.join(map(str, r['langfuse_versions']))}  {r['langfuse_labels']}" \
            if "langfuse_versions" in r else ("—" if registry.langfuse else "(not configured)")
        ab = " / ".join(f"{k} {v:.0%}" for k, v in r.get("experiment", {}).items())
        table.add_row(_esc(r["name"]), r.get("type", "?"), _esc(local_text), _esc(remote),
                      _esc(ab))
    print_fit(_console(), table, wide=wide)


@prompts.command()
@click.argument("name")
@click.option("--version", "version", type=int, help="Version number.")
@click.option("--label", help="Label (default: production).")
@_local_option
@_json_option
@_config_option
@_env_option
def show(name: str, version: int | None, label: str | None, local: bool, as_json: bool,
         config_path: str | None, environment: str | None) -> None:
    """One prompt version: where it comes from, labels, config, variables, template."""
    if version is not None and label is not None:
        raise click.UsageError("give --version or --label, not both")
    registry = _registry(config_path, environment, local=local)
    with _errors():
        p = registry.get(name, version=version,
                         label=label if label or version is not None else "production")
    if as_json:
        _echo_json(_prompt_dict(p))
        return
    console = _console()
    console.print(f"[bold]{_esc(p.name)}[/] v{p.version} ({p.type}) from [cyan]{p.source}[/]"
                  f"  labels: {_esc(', '.join(p.labels) or '—')}")
    if p.location:
        console.print(f"read from {_esc(p.location)}")
    if p.variables or p.placeholders:
        console.print(f"variables: {_esc(', '.join(p.variables) or '—')}"
                      + (f"   placeholders: {_esc(', '.join(p.placeholders))}"
                         if p.placeholders else ""))
    experiment = registry.experiments.get(name)
    if experiment:
        console.print("A/B: " + ", ".join(f"{k} {v:.0%}" for k, v in experiment.shares.items())
                      + f" (sticky by {experiment.sticky_by})")
    console.print(f"config: {_esc(json.dumps(dict(p.config), sort_keys=True, default=str))}\n")
    for line in _template_lines(p):         # as written: never re-wrapped to the terminal
        console.print(line, markup=False, soft_wrap=True)


@prompts.command()
@click.argument("name")
@click.argument("a")
@click.argument("b")
@_local_option
@_config_option
@_env_option
def diff(name: str, a: str, b: str, local: bool, config_path: str | None,
         environment: str | None) -> None:
    """Unified diff of two versions (numbers or labels) of NAME: template and config."""
    registry = _registry(config_path, environment, local=local)
    with _errors():
        left, right = registry.get(name, **_selector(a)), registry.get(name, **_selector(b))
    lines = list(difflib.unified_diff(
        _render(left), _render(right), lineterm="",
        fromfile=f"{name} {a} (v{left.version}, {left.source})",
        tofile=f"{name} {b} (v{right.version}, {right.source})"))
    if not lines:
        click.echo(f"{name}: {a} and {b} are the same (v{left.version}, v{right.version})")
        return
    colours = {"+": "green", "-": "red", "@": "cyan"}
    console = _console()
    for line in lines:      # one output line per diff line, never wrapped: each keeps its +/-
        colour = colours.get(line[:1]) if not line.startswith(("+++", "---")) else "bold"
        console.print(f"[{colour}]{_esc(line)}[/]" if colour else _esc(line), soft_wrap=True)


# -- push, pull, promote ---------------------------------------------------------------------
def _names(name: str | None, every: bool, available: Callable[[], list[str]]) -> list[str]:
    if bool(name) == every:
        raise click.UsageError("give a prompt NAME or --all (not both)")
    return [name] if name else available()


def _progress(total: int, as_json: bool) -> Any:
    from rich.progress import Progress

    return Progress(console=_console(), transient=True, disable=as_json or total == 0)


@prompts.command()
@click.argument("name", required=False)
@click.option("--all", "every", is_flag=True, help="Every prompt of the local registry.")
@_json_option
@_config_option
@_env_option
def push(name: str | None, every: bool, as_json: bool, config_path: str | None,
         environment: str | None) -> None:
    """Local registry → Langfuse: a new version for each local version Langfuse lacks."""
    registry = _registry(config_path, environment)
    lf = _langfuse(registry)
    results: list[dict[str, Any]] = []
    with _errors():
        names = _names(name, every, registry.local.names)
        plans = [(n, registry.local.versions(n)) for n in names]
    total = sum(len(v) for _, v in plans)
    with _progress(total, as_json) as progress, _errors():
        task = progress.add_task("pushing", total=total)
        for prompt_name, local_versions in plans:
            remote = lf.versions(prompt_name)
            for v in local_versions:
                progress.update(task, description=f"{prompt_name} v{v['version']}")
                results.append(_push_one(lf, v, remote))
                progress.advance(task)
    _report(results, as_json, "pushed to " + lf.base_url)


def _push_one(lf: LangfuseSource, v: PromptRecord, remote: list[PromptRecord]) -> dict[str, Any]:
    row: dict[str, Any] = {"name": v["name"], "local_version": v["version"]}
    if remote and remote[-1]["type"] != v["type"]:
        return {**row, "result": "error", "detail": f"type differs ({v['type']} locally, "
                f"{remote[-1]['type']} in Langfuse): rename one of them"}
    same = next((r for r in remote if same_content(r, v)), None)
    if same is not None:
        return {**row, "result": "unchanged", "langfuse_version": same["version"]}
    created = lf.create(v, labels=v["labels"])
    remote.append(created)
    return {**row, "result": "created", "langfuse_version": created["version"],
            "labels": [x for x in created["labels"] if x != "latest"]}


@prompts.command()
@click.argument("name", required=False)
@click.option("--all", "every", is_flag=True, help="Every prompt in Langfuse.")
@_json_option
@_config_option
@_env_option
def pull(name: str | None, every: bool, as_json: bool, config_path: str | None,
         environment: str | None) -> None:
    """Langfuse → local registry: append the versions prompts/ lacks, take Langfuse's labels."""
    registry = _registry(config_path, environment)
    lf = _langfuse(registry)
    results: list[dict[str, Any]] = []
    with _errors():
        names = _names(name, every, lambda: [m["name"] for m in lf.catalog()])
    with _progress(len(names), as_json) as progress, _errors():
        task = progress.add_task("pulling", total=len(names))
        for prompt_name in names:
            progress.update(task, description=prompt_name)
            results.append(_pull_one(registry, lf, prompt_name))
            progress.advance(task)
    _report(results, as_json, f"pulled into {registry.local.directory}")


def _pull_one(registry: PromptRegistry, lf: LangfuseSource, name: str) -> dict[str, Any]:
    remote = lf.versions(name)
    if not remote:
        return {"name": name, "result": "error", "detail": "not in Langfuse"}
    exists = registry.local.path(name).is_file()
    local = registry.local.versions(name) if exists else []
    if local and local[0]["type"] != remote[0]["type"]:
        return {"name": name, "result": "error", "detail": f"type differs ({local[0]['type']} "
                f"locally, {remote[0]['type']} in Langfuse): rename one of them"}
    merged, changes = merge_pulled(local, remote)
    if not changes:
        return {"name": name, "result": "unchanged"}
    path = registry.local.write(name, merged, description=registry.local.description(name)
                                if exists else None)
    return {"name": name, "result": "updated", "detail": "; ".join(changes), "file": str(path)}


def _report(results: list[dict[str, Any]], as_json: bool, title: str) -> None:
    failed = any(r["result"] == "error" for r in results)
    if as_json:
        _echo_json(results)
    else:
        table = FitTable([Col("prompt", ellipsis="middle", min_width=20), Col("result"),
                          Col("detail", "prose", min_width=20)], title=title)
        colours = {"created": "green", "updated": "green", "error": "red"}
        for r in results:
            detail = r.get("detail") or ""
            if "langfuse_version" in r:
                detail = f"local v{r['local_version']} = Langfuse v{r['langfuse_version']}" + \
                    (f" [{', '.join(r['labels'])}]" if r.get("labels") else "")
            colour = colours.get(r["result"], "dim")
            table.add_row(_esc(r["name"]), f"[{colour}]{r['result']}[/]", _esc(detail))
        print_fit(_console(), table)
    if failed:
        sys.exit(1)


@prompts.command()
@click.argument("name")
@click.argument("version", type=int)
@click.option("--label", default="production", show_default=True,
              help="The label to move onto VERSION.")
@_local_option
@_config_option
@_env_option
def promote(name: str, version: int, label: str, local: bool, config_path: str | None,
            environment: str | None) -> None:
    """Move LABEL onto VERSION of NAME (in Langfuse; in prompts/ with --local or without
    Langfuse). Rolling back is promoting the older version."""
    if label == "latest":
        raise click.UsageError("'latest' always points at the newest version; pick another label")
    registry = _registry(config_path, environment, local=local)
    with _errors():
        if registry.langfuse is not None:
            lf = registry.langfuse
            try:
                before: int | None = lf.fetch(name, label=label)["version"]
            except PromptMissing:
                before = None
            if before != version:
                lf.set_labels(name, version, [label])
            where = f"Langfuse ({lf.base_url})"
        else:
            versions = registry.local.versions(name)
            if not any(v["version"] == version for v in versions):
                raise click.ClickException(f"prompt {name!r} has no version {version} in "
                                           f"{registry.local.path(name)} (it has "
                                           f"{', '.join(str(v['version']) for v in versions)})")
            before = next((v["version"] for v in versions if label in v["labels"]), None)
            moved = [[x for x in v["labels"] if x != label] +
                     ([label] if v["version"] == version else []) for v in versions]
            if [set(m) for m in moved] != [set(v["labels"]) for v in versions]:   # else untouched
                for v, labels in zip(versions, moved):
                    v["labels"] = labels
                registry.local.write(name, versions,
                                     description=registry.local.description(name))
            where = str(registry.local.path(name))
    if before == version:
        click.echo(f"{name}: {label} is already on v{version} in {where}; nothing changed")
        return
    was = f"v{before}" if before is not None else "nothing"
    click.echo(f"{name}: {label} → v{version} (was {was}) in {where}")


# -- stats -----------------------------------------------------------------------------------
@prompts.command()
@click.argument("name")
@click.option("--db", help="The store: a file, postgresql://… or sqlite:///… (default: "
                           "LLM_ADAPTER_STORE_URL, else $LLM_ADAPTER_HOME/calls.sqlite3, else "
                           "the user data directory's).")
@click.option("--score", "score_name", help="Only scores with this name (default: every "
                                            "numeric score).")
@_json_option
@wide_option
@_config_option
@_env_option
def stats(name: str, db: str | None, score_name: str | None, as_json: bool, wide: bool,
          config_path: str | None, environment: str | None) -> None:
    """Compare the variants of NAME's A/B test: calls, errors, latency, cost, score."""
    from .._reports.prompt_stats import compare, variant_stats, winner
    from .store import open_store, resolve

    registry = _registry(config_path, environment, local=True)
    store = open_store(db, quiet=True)
    if store is None:
        click.echo(f"no calls recorded yet at {resolve(db)} (pass --db, or make calls with "
                   "the adapter first)", err=True)
        return
    with _errors(), closing(store.connect()) as conn:
        rows = variant_stats(conn, name, score_name)
    comparisons = compare(rows)
    best, why = winner(comparisons)
    experiment = registry.experiments.get(name)
    total = sum(r.calls for r in rows)
    if as_json:
        _echo_json({"prompt": name, "variants": [r.as_dict() for r in rows],
                    "configured_shares": experiment.shares if experiment else None,
                    "comparisons": [c.as_dict() for c in comparisons],
                    "best": best, "why": why})
        return
    if not rows:
        click.echo(f"no calls of prompt {name!r} in {store.where}")
        return
    table = FitTable([Col("variant", ellipsis="middle"), Col("versions", "prose", drop=1),
                      Col("calls", "figure", "right"), Col("share", "figure", "right"),
                      Col("errors", "figure", "right"),
                      Col("latency mean / p95", "figure", "right", drop=2),
                      Col("mean cost", "figure", "right"),
                      Col("mean score", "figure", "right")],
                     title=f"{name}: variants ({total} calls, {store.where})")
    shares = experiment.shares if experiment else {}
    for r in rows:
        share = f"{r.calls / total:.0%}" + (f" (of {shares[r.variant]:.0%})"
                                            if r.variant in shares else "")
        latency = "—" if r.latency_mean_ms is None else \
            f"{r.latency_mean_ms:,.0f} / {r.latency_p95_ms or 0:,.0f} ms"
        table.add_row(_esc(r.variant), ", ".join(f"v{v}" for v in r.versions), f"{r.calls:,}",
                      share, f"{100 * (r.error_rate or 0):.1f}%", latency,
                      "—" if r.cost_mean is None else fmt_cost(r.cost_mean),
                      "—" if r.score_mean is None else f"{r.score_mean:.3f} (n={r.scores})")
    console = _console()
    print_fit(console, table, wide=wide)
    for c in comparisons:
        console.print(f"  {c.metric}: {_esc(c.best)} vs {_esc(c.runner_up)}: {c.verdict}")
    console.print(f"[bold]best: {_esc(best or '—')}[/] ({_esc(why)})")
