"""``python -m adapters.llm.simulator [--host H] [--port N] [--scenarios FILE]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .runner import serve
from .scenarios import Scenario


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve simulated LLM providers on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--scenarios", type=Path, help="JSON file: {name: scenario object}")
    args = parser.parse_args(argv)
    scenarios = None
    if args.scenarios is not None:
        raw = json.loads(args.scenarios.read_text())
        if not isinstance(raw, dict):
            parser.error(f"{args.scenarios}: expected a JSON object of scenario name -> scenario")
        try:
            scenarios = {name: Scenario.from_dict(data) for name, data in raw.items()}
        except ValueError as exc:
            parser.error(f"{args.scenarios}: {exc}")
    serve(args.host, args.port, scenarios, on_ready=_announce)


def _announce(url: str) -> None:
    print(f"provider simulator on {url} (api_base {url}/s/<scenario>)", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
