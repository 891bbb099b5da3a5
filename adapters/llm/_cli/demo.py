"""``llm-adapter demo``: the whole system, offline, in under a minute.

The ``simulation`` environment of the config is served by the provider simulator; the demo
then makes one request stall (a hedge answers it) and takes the primary provider down mid-run
(the fallback answers). Its calls are recorded under the environment ``simulation``, which the
reports leave out unless asked for (``--simulated``).
"""

from __future__ import annotations

import time
from typing import Any

from .._config.loader import load_config
from ..errors import LLMAdapterError
from ..litellm_adapter import LiteLLMAdapter
from .._observability.records import LLMResponse
from .._observability.telemetry import store_path
from .views import attempts_text, fmt_cost, response_table

__all__ = ["run_demo"]

_STALL_S = 10.0
_FALLBACK_SYSTEM = "You are a scheduling assistant for a therapy practice."
_METADATA = {"session_id": "demo-session", "user_id": "admin", "agent": "matching",
             "tags": ["demo"]}


def run_demo(console: Any, *, fast: bool = False) -> int:
    from rich.table import Table

    from ..simulator import Fault, Scenario, Simulator

    console.rule("[bold]llm-adapter demo[/]: offline, every provider played by the simulator")
    with Simulator() as sim:
        try:
            config = load_config(environment="simulation")
            llm = LiteLLMAdapter(config=config, simulator_url=sim.url)
        except LLMAdapterError as exc:
            console.print(f"[red]cannot start the demo:[/] {exc}")
            return 1
        if not config.profile.simulated:
            console.print(f"[red]cannot start the demo:[/] the simulation environment of "
                          f"{config.path} is not served by the simulator, so the demo would "
                          f"call real providers; give it simulator: true")
            return 1
        primary = config.group(llm.model)[0].id
        console.print(f"config [cyan]{config.path or 'built-in'}[/], environment "
                      f"[cyan]{config.environment}[/], model [cyan]{llm.model}[/], fallback chain "
                      f"[cyan]{' → '.join(_chain(config, llm.model))}[/]\n")
        calls: list[LLMResponse] = []
        try:
            system = _system_prompt(llm)
            console.print("[bold]1. The guide's quick start[/]")
            with console.status("first call (litellm is imported on first use) ..."):
                first = llm.generate(prompt="Hello", system=system, metadata=_METADATA)
            calls.append(first)
            console.print(f"[italic]{first.content}[/]")
            console.print(response_table(first))

            console.print("\n[bold]2. Healthy traffic[/]")
            rows = [llm.generate(prompt=f"Find a therapist for patient {i}", system=system)
                    for i in range(3)]
            calls.extend(rows)
            console.print(_calls_table(Table, rows, "healthy"))

            console.print(f"\n[bold]3. One request stalls[/] ([red]{primary}[/] hangs for "
                          f"{_STALL_S:.0f} s)")
            sim.set_scenario(primary, Scenario(faults=[Fault("stall", stall_s=_STALL_S,
                                                             first_n=1)]))
            hedged = llm.generate(prompt="Who is free on Tuesday at 9?", system=system)
            calls.append(hedged)
            console.print(response_table(hedged))
            if hedged.hedged:
                lost = (hedged.cost_details or {}).get("hedge")
                console.print(f"A hedge answered in {hedged.latency_ms / 1000:.1f} s instead of "
                              f"{_STALL_S:.0f}: the stalled request was cancelled"
                              + (f", billed {fmt_cost(lost)} for its input tokens." if lost
                                 else "."))
            sim.set_scenario(primary, "ok")

            console.print(f"\n[bold]4. The primary provider goes down[/] "
                          f"([red]{primary}[/] now answers HTTP 503)")
            sim.set_scenario(primary, "down")
            _pause(fast)
            rows = [llm.generate(prompt=f"Reschedule appointment {i}", system=system)
                    for i in range(5)]
            calls.extend(rows)
            console.print(_calls_table(Table, rows, "during the outage"))
            console.print("The first call paid one failed attempt; the primary is now cooling "
                          "down, so later calls go straight to the fallback.")

            console.print("\n[bold]5. A streamed answer[/] (failed over before its first chunk)")
            stream = llm.generate(prompt="Summarise today's schedule changes", stream=True)
            console.print("  ", end="")
            for text in stream:
                console.print(text, end="", markup=False, highlight=False)
            console.print()
            if stream.response is not None:
                calls.append(stream.response)
                console.print(response_table(stream.response))

            console.print("\n[bold]6. A tool call[/]")
            tool_answer = llm.generate(prompt="Book the 3pm slot for patient 7",
                                       model="gpt-4-fallback", tools=[_BOOK_TOOL])
            calls.append(tool_answer)
            console.print(response_table(tool_answer))

            sim.set_scenario(primary, "ok")
            console.print(f"\n[bold]7. The primary recovers[/]: calls return to it once its "
                          f"cooldown ({config.router_settings.cooldown_time:.0f} s) ends.")
        except LLMAdapterError as exc:
            console.print(f"[red]demo call failed:[/] {exc}")
            return 1
        console.print(_summary(calls))
        llm.flush_langfuse()            # the message below says they are recorded: make it so
    console.print(f"\nThese simulated calls were recorded in [cyan]{store_path(config)}[/] "
                  f"under the environment {config.environment}: [bold]llm-adapter costs "
                  f"--simulated[/] (also traces, stats) shows them; the reports without it "
                  f"show real calls only.")
    return 0


def _chain(config: Any, group: str) -> tuple[str, ...]:
    return (group, *dict(config.fallbacks).get(group, ()))


def _system_prompt(llm: LiteLLMAdapter) -> str:
    try:
        text = llm.get_prompt("smart-scheduling-system-v1")
    except LLMAdapterError:
        return _FALLBACK_SYSTEM
    return text if isinstance(text, str) else _FALLBACK_SYSTEM


def _calls_table(table_cls: Any, rows: list[LLMResponse], title: str) -> Any:
    table = table_cls(title=title)
    for column in ("answered by", "latency", "tokens", "cost", "attempts"):
        table.add_column(column)
    for r in rows:
        table.add_row(f"{r.deployment} ({r.provider})", f"{r.latency_ms:.1f} ms",
                      str(r.usage.total_tokens), fmt_cost(r.cost), attempts_text(r))
    return table


def _summary(calls: list[LLMResponse]) -> str:
    known = [c.cost for c in calls if c.cost is not None]
    fallbacks = sum(1 for c in calls if c.fallback_used)
    hedged = sum(1 for c in calls if c.hedged)
    return (f"\n[bold]{len(calls)} calls[/], {fallbacks} answered after a fallback or skip, "
            f"{hedged} hedged, "
            f"total cost [bold]${sum(known):.6f}[/]"
            + (f" ({len(calls) - len(known)} with unknown price)"
               if len(known) < len(calls) else ""))


def _pause(fast: bool) -> None:
    if not fast:
        time.sleep(0.5)


_BOOK_TOOL = {
    "type": "function",
    "function": {
        "name": "book_appointment",
        "description": "Book an appointment slot for a patient",
        "parameters": {
            "type": "object",
            "properties": {"patient_id": {"type": "string"}, "slot": {"type": "string"}},
            "required": ["patient_id", "slot"],
        },
    },
}
