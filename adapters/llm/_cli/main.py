"""``llm-adapter``: the command line (also ``python -m adapters.llm``).

Rich tables for people, ``--json`` for machines. litellm is imported only by the commands that
make calls, so ``--help``, ``models`` and ``doctor`` answer at once.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .feedback import Main, waiting
from .tables import print_fit, wide_option
from .._config.loader import Config, load_config
from ..errors import LLMAdapterError

__all__ = ["main"]

_config_option = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                              help="Config file (default: $LLM_ADAPTER_CONFIG or "
                                   "config/litellm_config.yaml).")
_env_option = click.option("--env", "environment",
                           help="Environment profile (default: $ENVIRONMENT or development).")


def _console() -> Any:
    from rich.console import Console

    return Console()


def _load_litellm() -> None:
    """Import litellm (seconds) under a spinner on a terminal, before the command's work.

    The import runs on the adapter's own loop thread, where every call (and so every lazy
    import of litellm's) runs anyway; the calling thread only waits for it.
    """
    from .._routing.litellm import litellm
    from .._process.loop import default_loop

    async def load() -> None:
        litellm()

    with waiting("loading litellm…"):
        default_loop().run(load())


def _load(config_path: str | None, environment: str | None) -> Config:
    try:
        return load_config(config_path, environment=environment)
    except LLMAdapterError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llm-adapter")
@click.option("--debug", is_flag=True,
              help="Show the traceback of an error (also LLM_ADAPTER_DEBUG=1).")
def main(debug: bool) -> None:
    """Reliable, observable, cost-controlled LLM calls (LiteLLM routing + Langfuse)."""


@main.command()
@click.option("--fast", is_flag=True, help="Skip the pauses between steps.")
def demo(fast: bool) -> None:
    """Run the whole system offline against the built-in provider simulator."""
    from .demo import run_demo

    sys.exit(run_demo(_console(), fast=fast))


@main.command()
@click.argument("prompt")
@click.option("--model", help="Model group (default: the environment's default_model).")
@click.option("--system", help="System prompt.")
@click.option("--stream", is_flag=True, help="Print the answer as it arrives.")
@click.option("--json", "as_json", is_flag=True, help="Print the response as JSON.")
@click.option("--max-tokens", type=int)
@click.option("--timeout", type=float, help="Deadline for the whole call, in seconds.")
@_config_option
@_env_option
def chat(prompt: str, model: str | None, system: str | None, stream: bool, as_json: bool,
         max_tokens: int | None, timeout: float | None, config_path: str | None,
         environment: str | None) -> None:
    """Send PROMPT and print the answer."""
    from ..litellm_adapter import LiteLLMAdapter
    from .views import response_dict, response_table

    config = _load(config_path, environment)
    console = _console()
    llm = LiteLLMAdapter(model=model, config=config)
    _load_litellm()
    if stream and not as_json:
        with waiting(f"waiting for {llm.model}…"):
            chunks = llm.generate(prompt=prompt, system=system, max_tokens=max_tokens,
                                  timeout=timeout, stream=True)
        for text in chunks:
            console.print(text, end="", markup=False, highlight=False)
        console.print()
        if chunks.response is not None:
            console.print(response_table(chunks.response, title="call"))
        return
    with waiting(f"waiting for {llm.model}…"):
        response = llm.generate(prompt=prompt, system=system, max_tokens=max_tokens,
                                timeout=timeout)
    if as_json:
        click.echo(json.dumps(response_dict(response), indent=2))
    else:
        console.print(response.content, markup=False, highlight=False)
        console.print(response_table(response, title="call"))


@main.command()
@click.option("--json", "as_json", is_flag=True)
@wide_option
@_config_option
@_env_option
def models(as_json: bool, wide: bool, config_path: str | None, environment: str | None) -> None:
    """Model groups, their deployments, and which keys are present or missing."""
    from .views import models_rows, models_table

    config = _load(config_path, environment)
    if as_json:
        click.echo(json.dumps(models_rows(config), indent=2))
    else:
        print_fit(_console(), models_table(config), wide=wide)


@main.command()
@click.option("--ping", is_flag=True, help="Make a 1-token call to every deployment.")
@click.option("--production", is_flag=True,
              help="Walk the production checklist: Langfuse keys, prompts in Langfuse, rate "
                   "limits, cache, alerts, masking (implies --env production unless --env).")
@click.option("--json", "as_json", is_flag=True)
@wide_option
@_config_option
@_env_option
def doctor(ping: bool, production: bool, as_json: bool, wide: bool, config_path: str | None,
           environment: str | None) -> None:
    """Check config, environment and keys; exit 1 when something needs fixing."""
    from .doctor import run_checks
    from .views import checks_table

    if production and environment is None:
        environment = "production"
    try:
        config = load_config(config_path, environment=environment)
    except LLMAdapterError as exc:
        checks = [{"check": "config", "ok": False, "detail": str(exc), "fix": "edit the file"}]
    else:
        with waiting("loading litellm and pinging…" if ping else "checking…"):
            checks = run_checks(config, ping=ping, production=production)
            if production:
                from .production_checks import production_checks

                checks.extend(production_checks(config))
    if as_json:
        click.echo(json.dumps(checks, indent=2))
    else:
        print_fit(_console(), checks_table(checks), wide=wide)
    sys.exit(0 if all(c["ok"] for c in checks) else 1)


@main.command()
@click.option("--json", "as_json", is_flag=True)
@wide_option
@_config_option
@_env_option
def status(as_json: bool, wide: bool, config_path: str | None, environment: str | None) -> None:
    """Cooldowns, rate-limit use, cache hit rate, budgets and alerts, right now."""
    from .tables import FitTable
    from ..litellm_adapter import LiteLLMAdapter
    from .status import collect_status, status_tables

    config = _load(config_path, environment)
    _load_litellm()
    current = collect_status(LiteLLMAdapter(config=config), alerts_env=environment)
    if as_json:
        click.echo(json.dumps(current, indent=2, default=str))
        return
    console = _console()
    for part in status_tables(current):
        if isinstance(part, FitTable):
            print_fit(console, part, wide=wide)
        else:
            console.print(part, markup=False, highlight=False)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
@click.option("--scenario", "scenarios", multiple=True, metavar="NAME=BUILTIN",
              help="Start scenario NAME as a copy of a built-in one "
                   "(e.g. claude-sonnet-primary=down).")
def simulate(host: str, port: int, scenarios: tuple[str, ...]) -> None:
    """Serve the provider simulator (OpenAI, Anthropic, Gemini, Ollama wire formats)."""
    from ..simulator import BUILTIN_SCENARIOS, serve

    chosen = {}
    for item in scenarios:
        name, _, builtin = item.partition("=")
        if builtin not in BUILTIN_SCENARIOS:
            raise click.BadParameter(f"{builtin!r} is not a built-in scenario; choose from "
                                     f"{', '.join(BUILTIN_SCENARIOS)}", param_hint="--scenario")
        chosen[name] = BUILTIN_SCENARIOS[builtin]
    click.echo(f"provider simulator on http://{host}:{port}  "
               f"(api_base: http://{host}:{port}/s/<scenario>; "
               f"control: /control/scenarios, /control/stats)")
    serve(host, port, chosen)


from .reports import register  # noqa: E402  (the report commands: costs, traces, stats)

register(main)
from .prompts import register as register_prompts  # noqa: E402  (the prompts command group)
register_prompts(main)
from .alerts import register as register_alerts  # noqa: E402  (the alerts command group)
register_alerts(main)
from .store import register as register_store  # noqa: E402  (store migrate, store copy)
register_store(main)


if __name__ == "__main__":  # pragma: no cover
    main()
