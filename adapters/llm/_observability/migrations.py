"""The local store's schema, as an append-only list of named migrations (as in simonw/llm).

Each migration runs once per database and its name is recorded in ``_migrations``, so a store
written by an older version is brought up to date when it is opened. Never edit, rename or
reorder a migration that has shipped: append a new function to ``MIGRATIONS`` instead.

One list serves SQLite and PostgreSQL: statements are written for SQLite and ``_run`` has the
connection's dialect spell their types (``_store_dialect``); the rare statement only one of
them needs checks ``dialect_of(conn)``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any, Final

from .store_dialect import POSTGRES, dialect_of

__all__ = ["MIGRATIONS", "Migration", "migrate"]

_PG_MIGRATION_LOCK: Final = 0x6C6C6D5F6D6967   # pg_advisory_xact_lock key of migrate()

Migration = Callable[[Any], None]        # of an sqlite3 or a PostgreSQL store connection


def _run(conn: Any, *statements: str) -> None:
    # One execute per statement: executescript() would COMMIT the surrounding transaction.
    dialect = dialect_of(conn)
    for statement in statements:
        conn.execute(dialect.ddl(statement))


def m001_calls(conn: Any) -> None:
    """One row per call, a column per scalar field so reports are plain SQL."""
    _run(conn, """
        CREATE TABLE calls (
            call_id TEXT PRIMARY KEY,
            trace_id TEXT NOT NULL,
            span_id TEXT,
            parent_span_id TEXT,
            started_at REAL NOT NULL,
            ended_at REAL,
            day TEXT NOT NULL,
            environment TEXT,
            model_group TEXT,
            deployment TEXT,
            provider TEXT,
            provider_model TEXT,
            status TEXT NOT NULL,
            error_kind TEXT,
            error_message TEXT,
            latency_ms REAL,
            ttft_ms REAL,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            cached_tokens INTEGER NOT NULL DEFAULT 0,
            cache_write_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            reasoning_tokens INTEGER NOT NULL DEFAULT 0,
            cost REAL,
            cost_input REAL,
            cost_cached REAL,
            cost_cache_write REAL,
            cost_output REAL,
            cache_hit INTEGER NOT NULL DEFAULT 0,
            cost_saved REAL,
            prompt_name TEXT,
            prompt_version INTEGER,
            prompt_variant TEXT,
            session_id TEXT,
            user_id TEXT,
            agent TEXT,
            stage TEXT,
            trace_name TEXT,
            tags TEXT NOT NULL DEFAULT '[]',
            metadata TEXT NOT NULL DEFAULT '{}',
            input TEXT NOT NULL DEFAULT '[]',
            output TEXT,
            tool_calls TEXT NOT NULL DEFAULT '[]',
            model_parameters TEXT NOT NULL DEFAULT '{}',
            stream INTEGER NOT NULL DEFAULT 0,
            fallback INTEGER NOT NULL DEFAULT 0
        )""",
         *(f"CREATE INDEX calls_{column} ON calls({column})"
           for column in ("started_at", "session_id", "user_id", "agent", "trace_id", "day")))


def m002_call_tags(conn: Any) -> None:
    """Tags one per row, so ``costs --by tag`` is a join rather than JSON parsing."""
    _run(conn, "CREATE TABLE call_tags (call_id TEXT NOT NULL, tag TEXT NOT NULL, "
               "PRIMARY KEY (call_id, tag))",
         "CREATE INDEX call_tags_tag ON call_tags(tag)")


def m003_attempts(conn: Any) -> None:
    """Every deployment tried or skipped by a call, in order."""
    _run(conn, """
        CREATE TABLE attempts (
            call_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            deployment TEXT,
            model_group TEXT,
            provider TEXT,
            outcome TEXT NOT NULL,
            error_kind TEXT,
            status INTEGER,
            latency_ms REAL,
            message TEXT,
            PRIMARY KEY (call_id, seq)
        )""")


def m004_spool(conn: Any) -> None:
    """What Langfuse has not acknowledged yet, kept until a replay gets through."""
    _run(conn, """
        CREATE TABLE spool (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            payload BLOB NOT NULL,
            created_at REAL NOT NULL,
            tries INTEGER NOT NULL DEFAULT 0,
            last_error TEXT
        )""",
         "CREATE INDEX spool_kind ON spool(kind, id)")


def m005_scores(conn: Any) -> None:
    """Scores given with ``llm.score(...)``, numeric or categorical."""
    _run(conn, """
        CREATE TABLE scores (
            id INTEGER PRIMARY KEY,
            trace_id TEXT,
            call_id TEXT,
            name TEXT NOT NULL,
            value_num REAL,
            value_text TEXT,
            comment TEXT,
            created_at REAL NOT NULL
        )""",
         "CREATE INDEX scores_trace_id ON scores(trace_id)",
         "CREATE INDEX scores_call_id ON scores(call_id)")


def m006_prompt_source(conn: Any) -> None:
    """Where a call's prompt came from (langfuse, local, fallback), for prompt reports."""
    _run(conn, "ALTER TABLE calls ADD COLUMN prompt_source TEXT")


def m007_hedging(conn: Any) -> None:
    """Hedged calls: whether one was raced, what lost hedges cost, and each attempt's cost."""
    _run(conn, "ALTER TABLE calls ADD COLUMN hedged INTEGER NOT NULL DEFAULT 0",
         "ALTER TABLE calls ADD COLUMN cost_hedge REAL",
         "ALTER TABLE attempts ADD COLUMN cost REAL")


def m008_langfuse_outbox(conn: Any) -> None:
    """The Langfuse outbox: a call's masked record, written with its ``calls`` row, until
    Langfuse acknowledges it. ``lease_until``/``lease_owner``: a process delivering rows holds
    them so no other sends them at the same time; a dead process's lease expires. A row
    Langfuse rejects for its content is quarantined (``quarantined_at``, ``last_error``)
    instead of blocking the rows behind it. The spool gets the same lease and quarantine."""
    _run(conn, """
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            call_id TEXT NOT NULL,
            destination TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at REAL NOT NULL,
            tries INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            lease_until REAL NOT NULL DEFAULT 0,
            lease_owner TEXT,
            quarantined_at REAL
        )""",
         "CREATE INDEX outbox_ready ON outbox(destination, quarantined_at, id)",
         "ALTER TABLE spool ADD COLUMN lease_until REAL NOT NULL DEFAULT 0",
         "ALTER TABLE spool ADD COLUMN lease_owner TEXT",
         "ALTER TABLE spool ADD COLUMN quarantined_at REAL")


def m009_answered_group(conn: Any) -> None:
    """The model group that answered a call, beside ``model_group`` (the one asked for): they
    differ when a fallback group answered. Older rows keep NULL (not known then)."""
    _run(conn, "ALTER TABLE calls ADD COLUMN answered_group TEXT")


def m010_fleet_reports(conn: Any) -> None:
    """Reports over many replicas' calls: one index keyed by time that holds every column a
    time-bounded report by user, session, agent or model group reads, so such a report scans
    a slice of the index and never the wide rows (1,000,000 calls: seconds → well under one,
    see bench/README.md). On PostgreSQL, ``llm_iso_week`` (SQLite gets it per connection)."""
    _run(conn, "CREATE INDEX calls_time_report ON calls(started_at, environment, user_id, "
               "session_id, agent, model_group, status, cache_hit, cost, input_tokens, "
               "cached_tokens, cache_write_tokens, output_tokens, latency_ms, cost_hedge)")
    if dialect_of(conn) is POSTGRES:
        conn.execute("CREATE OR REPLACE FUNCTION llm_iso_week(day text) RETURNS text "
                     "LANGUAGE sql IMMUTABLE STRICT AS "
                     "$$ SELECT to_char(day::date, 'IYYY-\"W\"IW') $$")


MIGRATIONS: Final[tuple[Migration, ...]] = (
    m001_calls,
    m002_call_tags,
    m003_attempts,
    m004_spool,
    m005_scores,
    m006_prompt_source,
    m007_hedging,
    m008_langfuse_outbox,
    m009_answered_group,
    m010_fleet_reports,
)


def _applied(conn: Any) -> set[str]:
    if dialect_of(conn) is POSTGRES:
        if conn.execute("SELECT to_regclass('_migrations')").fetchone()[0] is None:
            return set()
        return {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    try:
        return {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return set()
        raise


def migrate(conn: Any,
            migrations: tuple[Migration, ...] = MIGRATIONS) -> list[str]:
    """Apply the migrations ``conn``'s database lacks; returns the names applied.

    The common case (nothing to do) is one read, so opening a store stays fast. Otherwise the
    check is repeated inside one write transaction, so processes opening a new file at the same
    time apply each migration exactly once (on PostgreSQL under an advisory lock, as DDL takes
    no lock on a table not yet made). ``conn`` must be in autocommit mode
    (``isolation_level=None``) because the transaction is managed here.
    """
    if conn.isolation_level is not None:
        raise ValueError("migrate() needs a connection opened with isolation_level=None")
    if {m.__name__ for m in migrations} <= _applied(conn):
        return []
    dialect = dialect_of(conn)
    conn.execute(dialect.begin)
    try:
        if dialect is POSTGRES:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (_PG_MIGRATION_LOCK,))
        conn.execute(dialect.ddl("CREATE TABLE IF NOT EXISTS _migrations "
                     "(name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"))
        done = _applied(conn)
        applied = []
        for migration in migrations:
            if migration.__name__ not in done:
                migration(conn)
                conn.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                             (migration.__name__, time.time()))
                applied.append(migration.__name__)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return applied
