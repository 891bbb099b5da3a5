"""The Langfuse outbox and the spool as queues in the store: lease, acknowledge, quarantine.

Rows get into ``outbox`` in the same transaction as their ``calls`` row (see ``LocalStore``);
this module is how a delivering process works through them, from any process on the machine:

* ``take`` leases the oldest deliverable rows in one ``UPDATE``: while the lease runs no other
  process sends them. A lease ends when it expires, when it is released after a failure, or at
  once when its owner is a process of this host that no longer exists (killed).
* ``ack`` deletes what Langfuse acknowledged; ``release`` gives rows back after a transient
  failure; ``quarantine`` sets aside the rows Langfuse refused for their content, with the
  reason, so they block nothing; ``retry_quarantined`` and ``drop_quarantined`` end that.

The same operations serve the older ``spool`` table (whole OTLP requests), keyed by ``kind``
rather than by the Langfuse public key.

On PostgreSQL, shared by replicas on many hosts, ``take`` picks its rows with ``FOR UPDATE SKIP
LOCKED`` in the transaction that leases them: two replicas (or a replica and ``traces sync``)
taking at once get different rows and never wait on each other. A replica on another host
that died holding a lease is not seen dying: its rows are taken again when the lease expires.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from .sqlite import _retrying, _transaction
from .store_dialect import POSTGRES, dialect_of

__all__ = ["OUTBOX", "SPOOL", "Queue", "QueueCounts", "Quarantined", "lease_owner"]


@dataclass(frozen=True, slots=True)
class Queue:
    """A table worked through by lease: which rows (``key_column = key``) and its payload."""

    table: str
    key_column: str


OUTBOX: Final = Queue("outbox", "destination")
SPOOL: Final = Queue("spool", "kind")


@dataclass(frozen=True, slots=True)
class QueueCounts:
    pending: int
    quarantined: int
    last_error: str | None          # of the most recently failed pending row


@dataclass(frozen=True, slots=True)
class Quarantined:
    """Rows set aside for one reason."""

    reason: str
    count: int
    since: float                    # when the first of them was quarantined
    call_ids: tuple[str, ...]       # outbox rows only (up to 20)


def lease_owner() -> str:
    """Who holds a lease: host and pid, so a lease of a killed process is seen as dead."""
    return f"{socket.gethostname()}:{os.getpid()}:{time.monotonic_ns() % 10**9}"


def _owner_dead(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:         # alive, another user's
        return False
    return False


def expire_dead_leases(conn: Any, queue: Queue, now: float) -> int:
    """End the leases of processes of this host that are gone; returns how many rows."""
    owners = [row[0] for row in conn.execute(
        f"SELECT DISTINCT lease_owner FROM {queue.table} WHERE lease_until >= ? "
        f"AND lease_owner IS NOT NULL", (now,))]
    freed = 0
    for owner in owners:
        if _owner_dead(owner):
            sql = (f"UPDATE {queue.table} SET lease_until = 0 WHERE lease_owner = ? "
                   f"AND lease_until >= ?")
            args = (owner, now)
            freed += _retrying(partial(conn.execute, sql, args)).rowcount
    return freed


def take(conn: Any, queue: Queue, key: str, *, owner: str, lease_s: float,
         limit: int, max_bytes: int) -> list[tuple[int, str | bytes]]:
    """Lease up to ``limit`` of the oldest deliverable rows (at least one, at most
    ``max_bytes`` of payload beyond the first); returns (id, payload), oldest first."""
    now = time.time()
    dialect = dialect_of(conn)
    taken: list[tuple[int, str | bytes]] = []

    def work() -> None:
        sizes = conn.execute(
            f"SELECT id, LENGTH(payload) FROM {queue.table} WHERE {queue.key_column} = ? "
            f"AND quarantined_at IS NULL AND lease_until < ? ORDER BY id LIMIT ?"
            f"{dialect.lock_rows}", (key, now, limit)).fetchall()
        ids: list[int] = []
        total = 0
        for row_id, size in sizes:
            if ids and total + size > max_bytes:
                break
            ids.append(row_id)
            total += size
        if not ids:
            return
        marks = ", ".join("?" * len(ids))
        # One UPDATE: a row another process leased meanwhile fails `lease_until < now`, so it
        # is taken by one process only (on PostgreSQL the rows are locked besides).
        rows = _retrying(lambda: conn.execute(
            f"UPDATE {queue.table} SET lease_until = ?, lease_owner = ? WHERE id IN ({marks}) "
            f"AND quarantined_at IS NULL AND lease_until < ? RETURNING id, payload",
            (now + lease_s, owner, *ids, now)).fetchall())
        taken.extend(sorted((int(r[0]), r[1]) for r in rows))

    if dialect is POSTGRES:
        _transaction(conn, work)    # the row locks of the SELECT hold until the UPDATE
    else:
        work()
    return taken


def renew(conn: Any, queue: Queue, ids: Sequence[int], *, owner: str,
          lease_s: float) -> None:
    """Extend this owner's lease on ``ids`` (a long delivery round)."""
    _many(conn, f"UPDATE {queue.table} SET lease_until = ? WHERE id IN ({{}}) "
                f"AND lease_owner = ?", ids, (time.time() + lease_s,), (owner,))


def ack(conn: Any, queue: Queue, ids: Sequence[int]) -> None:
    """Forget rows Langfuse acknowledged."""
    _many(conn, f"DELETE FROM {queue.table} WHERE id IN ({{}})", ids)


def release(conn: Any, queue: Queue, ids: Sequence[int], error: str, *,
            owner: str) -> None:
    """Give rows back after a transient failure (counted, with the error)."""
    _many(conn, f"UPDATE {queue.table} SET lease_until = 0, tries = tries + 1, last_error = ? "
                f"WHERE id IN ({{}}) AND lease_owner = ?", ids, (error,), (owner,))


def quarantine(conn: Any, queue: Queue, ids: Sequence[int], reason: str) -> None:
    """Set rows aside: Langfuse refused them for their content."""
    _many(conn, f"UPDATE {queue.table} SET quarantined_at = ?, last_error = ?, "
                f"lease_until = 0, tries = tries + 1 WHERE id IN ({{}})",
          ids, (time.time(), reason))


def split(conn: Any, queue: Queue, row_id: int,
          parts: Sequence[str | bytes]) -> None:
    """Replace one row by ``parts`` (same key and age), in one transaction."""
    def work() -> None:
        row = conn.execute(f"SELECT {queue.key_column}, created_at, tries FROM {queue.table} "
                           f"WHERE id = ?", (row_id,)).fetchone()
        if row is None:
            return
        conn.executemany(f"INSERT INTO {queue.table} ({queue.key_column}, payload, created_at, "
                         f"tries) VALUES (?, ?, ?, ?)",
                         [(row[0], p, row[1], row[2]) for p in parts])
        conn.execute(f"DELETE FROM {queue.table} WHERE id = ?", (row_id,))

    _retrying(lambda: _transaction(conn, work))


def counts(conn: Any, queue: Queue, key: str | None = None) -> QueueCounts:
    """Pending and quarantined rows (of ``key``, or of every key)."""
    pending, quarantined = conn.execute(
        f"SELECT COALESCE(SUM(CASE WHEN quarantined_at IS NULL THEN 1 ELSE 0 END), 0), "
        f"COALESCE(SUM(CASE WHEN quarantined_at IS NULL THEN 0 ELSE 1 END), 0) FROM "
        f"{queue.table} WHERE ? IS NULL OR {queue.key_column} = ?",
        (key, key)).fetchone()
    error = conn.execute(
        f"SELECT last_error FROM {queue.table} WHERE (? IS NULL OR {queue.key_column} = ?) "
        f"AND quarantined_at IS NULL AND last_error IS NOT NULL ORDER BY id DESC LIMIT 1",
        (key, key)).fetchone()
    return QueueCounts(int(pending), int(quarantined), error[0] if error else None)


def quarantined(conn: Any, queue: Queue,
                key: str | None = None) -> list[Quarantined]:
    """Quarantined rows grouped by reason, the oldest reason first."""
    ids = "call_id" if queue is OUTBOX else "NULL"
    out = []
    for reason, count, since in conn.execute(
            f"SELECT last_error, COUNT(*), MIN(quarantined_at) FROM {queue.table} "
            f"WHERE quarantined_at IS NOT NULL AND (? IS NULL OR {queue.key_column} = ?) "
            f"GROUP BY last_error ORDER BY MIN(quarantined_at)", (key, key)).fetchall():
        calls = [r[0] for r in conn.execute(
            f"SELECT {ids} FROM {queue.table} WHERE quarantined_at IS NOT NULL AND "
            f"(last_error = ? OR (last_error IS NULL AND ? IS NULL)) AND (? IS NULL OR "
            f"{queue.key_column} = ?) ORDER BY id LIMIT 20",
            (reason, reason, key, key)) if r[0]]
        out.append(Quarantined(reason or "rejected", int(count), float(since), tuple(calls)))
    return out


def retry_quarantined(conn: Any, queue: Queue, key: str | None = None) -> int:
    """Put quarantined rows back in line; returns how many."""
    return int(_retrying(lambda: conn.execute(
        f"UPDATE {queue.table} SET quarantined_at = NULL, lease_until = 0 WHERE "
        f"quarantined_at IS NOT NULL AND (? IS NULL OR {queue.key_column} = ?)",
        (key, key))).rowcount)


def drop_quarantined(conn: Any, queue: Queue, key: str | None = None) -> int:
    """Delete quarantined rows for good; returns how many."""
    return int(_retrying(lambda: conn.execute(
        f"DELETE FROM {queue.table} WHERE quarantined_at IS NOT NULL AND "
        f"(? IS NULL OR {queue.key_column} = ?)", (key, key))).rowcount)


def _many(conn: Any, sql: str, ids: Sequence[int], before: tuple[object, ...] = (),
          after: tuple[object, ...] = ()) -> None:
    """Run ``sql`` (``{}`` = the id placeholders) over ``ids`` in chunks SQLite accepts."""
    ids = list(ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        statement = sql.format(", ".join("?" * len(chunk)))
        args = (*before, *chunk, *after)
        _retrying(partial(conn.execute, statement, args))
