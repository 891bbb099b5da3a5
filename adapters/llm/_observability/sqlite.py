"""The store's SQLite file: created private, opened in WAL mode, written under retries, and
every failure explained with its fix. ``store.py`` builds on these; nothing here knows rows."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TypeVar

from .store_dialect import SQLITE, dialect_of
from ..errors import LLMAdapterError
from .migrations import migrate

__all__ = ["SqliteBackend", "StoreError"]

_LOCK_TRIES = 6             # each waits busy_timeout (5 s): ~30 s before giving up
_T = TypeVar("_T")


class StoreError(LLMAdapterError):
    """The store's file cannot be opened or written; the message names the file and the fix."""


# -- the file and connections -----------------------------------------------------------------
def _prepare(path: Path) -> list[str]:
    """Create the file private before SQLite touches it, then bring its schema up to date.

    An existing file is never opened here: closing any descriptor of a database file drops
    every POSIX lock this process holds on it, SQLite's included, and another process could
    then check-point and delete the WAL under this one's feet (a corrupt database).
    """
    try:
        if not path.parent.is_dir():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            if path.stat().st_mode & 0o777 != 0o600:
                os.chmod(path, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot create the call store {path}: {exc.strerror} (make its "
                         f"directory writable, or choose another place with LLM_ADAPTER_HOME "
                         f"or LocalStore(path=...))") from exc
    try:
        with closing(_connect(path)) as conn:
            return _retrying(lambda: _initialise(conn))
    except sqlite3.Error as exc:
        raise StoreError(_explain(path, "opening", exc)) from exc


def _initialise(conn: sqlite3.Connection) -> list[str]:
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA journal_mode = WAL")     # persistent: stored in the file
    return migrate(conn)


def _connect(path: Path) -> sqlite3.Connection:
    # Autocommit: transactions are explicit (BEGIN IMMEDIATE), so a writer never upgrades a
    # read lock, which WAL cannot do without failing with "database is locked".
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def _transaction(conn: sqlite3.Connection, work: Callable[[], object]) -> None:
    conn.execute(dialect_of(conn).begin)        # PostgreSQL's connections say theirs
    try:
        work()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _retrying(action: Callable[[], _T]) -> _T:
    """Run ``action``, again while another process holds the lock past the busy timeout."""
    tries = 0
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            tries += 1
            if tries >= _LOCK_TRIES or not _locked(exc):
                raise
            time.sleep(0.05 * 2 ** tries)


def _locked(exc: sqlite3.Error) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


_FIXES = (
    ("not a database", "it is not an SQLite file: move it away or choose another path"),
    ("malformed", "the file is damaged: move it away, and a new one is created"),
    ("readonly", "the file or its directory is read-only: give this user write access"),
    ("unable to open", "check that its directory exists and this user may write in it"),
    ("disk is full", "free some disk space"),
)


def _explain(path: Path, doing: str, exc: BaseException) -> str:
    """What went wrong with the file and what to do about it, for the user."""
    text = str(exc)
    if not isinstance(exc, sqlite3.Error):
        fix = "a record holds a value that cannot be stored; please report it as a bug"
    elif _locked(exc):
        fix = "another process held a write lock for over 30 s; find and stop it, then retry"
    else:
        fix = next((fix for needle, fix in _FIXES if needle in text),
                   "check the file's permissions and the free disk space")
    return f"{doing} {path} failed: {text} ({fix})"


class SqliteBackend:
    """The store's database in one SQLite file: the functions above behind the interface
    the store shares with ``PostgresBackend``."""

    dialect = SQLITE
    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
    down_errors: tuple[type[BaseException], ...] = ()      # a file is not "down"
    content_errors: tuple[type[BaseException], ...] = (
        ValueError, TypeError, OverflowError, sqlite3.InterfaceError, sqlite3.ProgrammingError,
        sqlite3.DataError, sqlite3.IntegrityError)

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)

    def prepare(self) -> None:
        _prepare(self.path)

    def migrate(self) -> list[str]:
        return _prepare(self.path)

    def connect(self) -> sqlite3.Connection:
        return _connect(self.path)

    @contextmanager
    def session(self) -> Iterator[sqlite3.Connection]:
        with closing(_connect(self.path)) as conn:
            yield conn

    def close(self) -> None:
        """Nothing is held between sessions."""

    def transaction(self, conn: sqlite3.Connection, work: Callable[[], object]) -> None:
        _transaction(conn, work)

    def retrying(self, action: Callable[[], _T]) -> _T:
        return _retrying(action)

    def explain(self, doing: str, exc: BaseException) -> str:
        return _explain(self.path, doing, exc)
