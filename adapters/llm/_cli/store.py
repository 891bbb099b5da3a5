"""``llm-adapter store migrate`` and ``store copy``, and how the report commands find the store:
``--db`` (a file, or a ``postgresql://`` / ``sqlite:///`` URL), else ``LLM_ADAPTER_STORE_URL``,
else this machine's file."""

from __future__ import annotations

from typing import Any

import click

from .._observability.store_dialect import StoreTarget, parse_store_url
from ..errors import ConfigError
from .._observability.store import LocalStore, StoreError, store_target

__all__ = ["open_store", "register", "resolve"]


def resolve(db: str | None) -> StoreTarget:
    """The store ``--db`` names (a path or a URL), else the process's default."""
    try:
        if db is not None and "://" in db:
            return parse_store_url(db, key="--db")
        return store_target(db)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--db") from None


def open_store(db: str | None, *, quiet: bool = False) -> LocalStore | None:
    """The store to read, or None (after saying so) when no file was recorded yet."""
    target = resolve(db)
    if target.path is not None and not target.path.exists():
        if not quiet:
            click.echo(f"no calls recorded yet at {target.path}", err=True)
        return None
    try:
        if target.url is not None:
            return LocalStore(url=target.url)
        return LocalStore(target.path)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("store")
def store_group() -> None:
    """The call store: apply its migrations, copy history between stores."""


@store_group.command()
@click.option("--db", help="The store: a file, postgresql://… or sqlite:///… (default: "
                           "LLM_ADAPTER_STORE_URL, else $LLM_ADAPTER_HOME/calls.sqlite3).")
def migrate(db: str | None) -> None:
    """Bring the store's schema up to date (the first use does it too)."""
    from .._observability.sqlite import SqliteBackend

    target = resolve(db)
    try:
        if target.url is None:
            assert target.path is not None
            applied = SqliteBackend(target.path).migrate()
        else:
            from .._observability.store_postgres import PostgresBackend

            backend = PostgresBackend(target.url)
            try:
                applied = backend.migrate()
            except backend.errors as exc:
                raise StoreError(backend.explain("migrating", exc)) from exc
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{target}: " + (f"applied {', '.join(applied)}" if applied
                                else "up to date"))


@store_group.command()
@click.option("--from", "source", required=True, help="The store to read (sqlite:///PATH, "
                                                      "postgresql://…, or a file).")
@click.option("--to", "destination", required=True, help="The store to write.")
def copy(source: str, destination: str) -> None:
    """Copy every call, attempt, tag and score from one store to another.

    Idempotent: a call already there is replaced by the same call, a score already there is
    not added again, so an interrupted copy is simply run again."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from .._observability.store_copy import copy_store

    ends = [open_store(source), open_store(destination, quiet=True)]
    if ends[0] is None:
        raise click.ClickException(f"nothing to copy: no store at {resolve(source)}")
    if ends[1] is None:
        target = resolve(destination)
        ends[1] = LocalStore(target.path)
    src, dst = ends
    assert src is not None and dst is not None
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeRemainingColumn()) as progress:
        task: Any = None

        def advance(done: int, total: int) -> None:
            nonlocal task
            if task is None:
                task = progress.add_task(f"{src.where} → {dst.where}", total=total)
            progress.update(task, completed=done)

        try:
            calls, scores = copy_store(src, dst, progress=advance)
        except StoreError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"copied {calls} call(s) and {scores} new score(s) to {dst.where}")


def register(main: click.Group) -> None:
    main.add_command(store_group)
