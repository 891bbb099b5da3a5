"""What the command line says while it waits, and how it reports an error.

On a terminal, a spinner on stderr names what the command waits for (litellm's import takes
seconds); piped or captured output gets nothing, so tests and scripts read clean stdout. An
error is one line that says what to do (an ``AllProvidersFailed`` adds one line per failed
attempt); ``--debug`` (or ``LLM_ADAPTER_DEBUG=1``) shows the traceback as well.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from ..errors import AllProvidersFailed, LLMAdapterError

__all__ = ["Main", "error_lines", "waiting"]

_MAX_ATTEMPT = 160         # an attempt's line: the provider's message can be long


@contextmanager
def waiting(text: str) -> Iterator[None]:
    """A spinner with ``text`` on stderr while the block runs, only when stderr is a TTY."""
    if not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(text, spinner="dots"):
        yield


def error_lines(exc: BaseException) -> list[str]:
    """``exc`` as a message of one line (plus one per failed attempt of a provider chain)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, (LLMAdapterError, click.ClickException)):
        text = f"{type(exc).__name__}: {text} (unexpected: rerun with --debug for the traceback)"
    lines = [text]                  # whole: the fix is at its end
    if isinstance(exc, AllProvidersFailed):
        seen: dict[str, int] = {}
        for a in exc.attempts:
            if a.outcome == "ok":
                continue
            what = " ".join(str(p) for p in (a.error_kind, a.status) if p) or a.outcome
            message = " ".join(str(a.message or "").split())
            line = _clip(f"  {a.deployment or a.model_group}: {what}"
                         + (f": {message}" if message else ""))
            seen[line] = seen.get(line, 0) + 1
        lines += [line if n == 1 else f"{line} (×{n})" for line, n in seen.items()]
    return lines


def _clip(line: str) -> str:
    return line if len(line) <= _MAX_ATTEMPT else line[:_MAX_ATTEMPT - 1] + "…"


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.params.get("debug")) or os.environ.get("LLM_ADAPTER_DEBUG", "") not in (
        "", "0", "false")


class Main(click.Group):
    """The ``llm-adapter`` group: every command's errors end here, as one line each."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, click.UsageError, KeyboardInterrupt):
            raise
        except (click.ClickException, LLMAdapterError) as exc:
            if _debug(ctx):
                cause = exc.__cause__ or exc.__context__
                traceback.print_exception(cause if isinstance(exc, click.ClickException)
                                          and cause is not None else exc)
            self._fail(exc)
        except Exception as exc:    # anything else: one line, the traceback with --debug
            if _debug(ctx):
                raise
            self._fail(exc)

    @staticmethod
    def _fail(exc: BaseException) -> None:
        lines = error_lines(exc)
        click.echo(f"Error: {lines[0]}", err=True)
        for line in lines[1:]:
            click.echo(line, err=True)
        code = exc.exit_code if isinstance(exc, click.ClickException) else 1
        sys.exit(code)
