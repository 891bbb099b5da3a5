"""The store on PostgreSQL: connections that read like ``sqlite3`` ones, a pool, the schema.

psycopg 3 is the driver: native (libpq, the binary wheel), COPY and pipeline mode when a bulk
load needs them, server-side cursors, and a pool of its own (``psycopg_pool``); the store's SQL
is a few dozen statements, so no ORM sits between them. ``PgConnection`` gives the store's
queries the ``sqlite3`` surface they were written against (``execute`` with ``?``, rows by index
and by name, ``in_transaction``), binding values client-side: a query such as
``? IS NULL OR kind = ?`` then means what it means in SQLite, where server-side binding could
not type the first parameter. Autocommit throughout: transactions are explicit, as on SQLite.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from .store_dialect import POSTGRES, Dialect, mask_url, placeholders
from .migrations import migrate

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = ["PgConnection", "PostgresBackend", "Row"]

log = logging.getLogger("adapters.llm")
_T = TypeVar("_T")
_CONNECT_TIMEOUT = 5
_INSERT_HEAD = re.compile(r"INSERT INTO (\w+) \(([\w, ]+)\)")
_RETRIES = 3                # a serialization failure or deadlock, tried again this often


class Row(tuple):  # type: ignore[type-arg]
    """A result row by index (``row[0]``, unpacking) and by column name (``row["cost"]``)."""

    _index: dict[str, int]

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return super().__getitem__(self._index[key])
        return super().__getitem__(key)

    def keys(self) -> list[str]:
        return list(self._index)


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    index = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: Row(values, index)


class PgCursor:
    """A cursor as ``sqlite3`` gives it: ``execute`` returns it, rows iterate."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor
        self.row_factory: Any = None        # accepted and ignored: rows always have names

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> PgCursor:
        if parameters:
            self._cursor.execute(placeholders(sql), tuple(parameters))
        else:
            self._cursor.execute(sql)
        return self

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> PgCursor:
        self._cursor.executemany(placeholders(sql), [tuple(p) for p in parameters])
        return self

    def fetchone(self) -> Row | None:
        return self._cursor.fetchone() if self._cursor.description else None

    def fetchall(self) -> list[Row]:
        return list(self._cursor.fetchall()) if self._cursor.description else []

    def __iter__(self) -> Iterator[Row]:
        return iter(self.fetchall())

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)

    @property
    def lastrowid(self) -> None:
        return None                         # PostgreSQL has none: use RETURNING

    def close(self) -> None:
        self._cursor.close()


class PgConnection:
    """A psycopg connection with the ``sqlite3.Connection`` surface the store uses."""

    dialect: Dialect = POSTGRES
    isolation_level = None                  # autocommit, as the store opens SQLite
    row_factory: Any = None

    def __init__(self, raw: psycopg.Connection[Any],
                 on_close: Callable[[psycopg.Connection[Any]], None] | None = None) -> None:
        self.raw = raw
        self._on_close = on_close

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> PgCursor:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> PgCursor:
        return self.cursor().executemany(sql, parameters)

    def cursor(self) -> PgCursor:
        cursor = self.raw.cursor()
        cursor.row_factory = _row_factory   # type: ignore[assignment]
        return PgCursor(cursor)

    def insert_rows(self, head: str, tail: str, width: int,
                    rows: Sequence[Sequence[Any]]) -> None:
        """``head VALUES … tail`` for ``rows`` by COPY: straight into the table, or, for an
        upsert (``tail``), into a temporary copy of it first and from there in one
        ``INSERT … SELECT … tail``. A multi-row VALUES of thousands of placeholders costs
        seconds per batch of 500 calls in query parsing alone; COPY costs none."""
        match = _INSERT_HEAD.fullmatch(head)
        assert match is not None, head
        table, columns = match.group(1), match.group(2)
        into = table
        if tail:
            into = f"_in_{table}"
            self.raw.execute(f"CREATE TEMP TABLE IF NOT EXISTS {into} (LIKE {table}) "
                             f"ON COMMIT DELETE ROWS")
        with self.raw.cursor().copy(f"COPY {into} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        if tail:
            self.raw.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {into}"
                             f"{tail}")
            self.raw.execute(f"DELETE FROM {into}")   # used again within this transaction

    def create_function(self, *args: Any, **kwargs: Any) -> None:
        """The report functions are in the schema already (migration m010)."""

    @property
    def in_transaction(self) -> bool:
        from psycopg import pq

        return self.raw.info.transaction_status != pq.TransactionStatus.IDLE

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close(self.raw)
        else:
            self.raw.close()

    def __enter__(self) -> PgConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PostgresBackend:
    """The store's database on a PostgreSQL server (see the module doc)."""

    dialect: Dialect = POSTGRES

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        self.where = mask_url(url)
        self.errors: tuple[type[BaseException], ...] = (psycopg.Error,)
        self.down_errors: tuple[type[BaseException], ...] = (psycopg.OperationalError,
                                                            psycopg.InterfaceError)
        self.content_errors: tuple[type[BaseException], ...] = (
            ValueError, TypeError, OverflowError, psycopg.DataError, psycopg.IntegrityError,
            psycopg.ProgrammingError)
        self._pool: ConnectionPool[Any] | None = None
        self._lock = threading.Lock()

    def prepare(self) -> None:
        """Bring the schema up to date (``migrate``: once per database, whoever is first)."""
        self.migrate()

    def migrate(self) -> list[str]:
        conn = self.connect()
        try:
            return migrate(conn)
        finally:
            conn.close()

    def connect(self) -> PgConnection:
        """A new connection of the caller's own (the writer's, a report's)."""
        import psycopg

        raw = psycopg.connect(self.url, autocommit=True, cursor_factory=psycopg.ClientCursor,
                              connect_timeout=_CONNECT_TIMEOUT, application_name="llm-adapter")
        return PgConnection(raw)

    @contextmanager
    def session(self) -> Iterator[PgConnection]:
        """A pooled connection for one short piece of work (spool, outbox, counts)."""
        pool = self._get_pool()
        with pool.connection(timeout=_CONNECT_TIMEOUT * 2) as raw:
            yield PgConnection(raw, on_close=lambda _: None)

    def _get_pool(self) -> ConnectionPool[Any]:
        with self._lock:
            if self._pool is None:
                import psycopg
                from psycopg_pool import ConnectionPool

                self._pool = ConnectionPool(
                    self.url, min_size=1, max_size=4, open=True, name="llm-adapter-store",
                    kwargs={"autocommit": True, "cursor_factory": psycopg.ClientCursor,
                            "connect_timeout": _CONNECT_TIMEOUT,
                            "application_name": "llm-adapter"})
            return self._pool

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def transaction(self, conn: Any, work: Callable[[], object]) -> None:
        conn.execute("BEGIN")
        try:
            work()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction and not conn.raw.closed:
                conn.execute("ROLLBACK")
            raise

    def retrying(self, action: Callable[[], _T]) -> _T:
        """Run ``action``, again after a deadlock or serialization failure."""
        import psycopg.errors

        tries = 0
        while True:
            try:
                return action()
            except (psycopg.errors.DeadlockDetected,
                    psycopg.errors.SerializationFailure):
                tries += 1
                if tries >= _RETRIES:
                    raise
                time.sleep(0.05 * 2 ** tries)

    def explain(self, doing: str, exc: BaseException) -> str:
        """What went wrong with the server and what to do, the URL's password masked."""
        import psycopg

        text = str(exc).strip().replace(self.url, self.where)
        if isinstance(exc, psycopg.OperationalError):
            fix = ("check that PostgreSQL runs there and accepts this user (LLM_ADAPTER_STORE_URL "
                   "or store.url); calls go on meanwhile and their records wait locally")
        elif not isinstance(exc, psycopg.Error):
            fix = "a record holds a value that cannot be stored; please report it as a bug"
        else:
            fix = "check the database's permissions and free space"
        return f"{doing} {self.where} failed: {type(exc).__name__}: {text} ({fix})"
