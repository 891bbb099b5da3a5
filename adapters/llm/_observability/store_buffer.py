"""Where a PostgreSQL store's records wait while the server cannot be reached: a local SQLite
file with the store's own schema, bounded, emptied into PostgreSQL when it answers again.

``keep`` appends a batch the writer could not commit; ``forward`` hands the oldest batches to a
commit function (the store's, so values PostgreSQL refuses are handled as for any batch) and
deletes them from the file once committed. Each forwarded batch is read, committed and deleted
under the file's write lock, so two processes sharing the file never forward the same rows;
calls are upserts by call id, so a batch committed again after a crash changes nothing.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import closing
from typing import Any

from .sqlite import SqliteBackend, StoreError
from .store_rows import OutboxEntry, _insert, _Score, _WithOutbox, read_calls
from .records import CallRecord

__all__ = ["StoreBuffer"]

log = logging.getLogger("adapters.llm")
_BATCH = 500


class StoreBuffer:
    def __init__(self, backend: SqliteBackend, *, limit: int) -> None:
        self.backend = backend
        self.limit = limit
        self.waiting = 0                # rows (calls, scores, outbox) in the file

    def prepare(self) -> None:
        """Create the file (private, migrated); what an earlier process left is forwarded."""
        self.backend.prepare()
        with closing(self.backend.connect()) as conn:
            self.waiting = self._count(conn)
        if self.waiting:
            log.warning("llm-adapter: %d record(s) wait in %s for PostgreSQL; they are "
                        "forwarded when it answers", self.waiting, self.backend.where)

    def keep(self, records: list[CallRecord], scores: list[_Score],
             outbox: list[OutboxEntry]) -> int:
        """Append a batch; returns how many of its rows could not be kept (full, failed)."""
        total = len(records) + len(scores) + len(outbox)
        room = self.limit - self.waiting
        if room < total:
            return total            # all or nothing: a call stays with its outbox row
        try:
            with closing(self.backend.connect()) as conn:
                self.backend.retrying(lambda: self.backend.transaction(
                    conn, lambda: _insert(conn, records, scores, outbox)))
        except (*self.backend.errors, *self.backend.content_errors) as exc:
            log.warning("llm-adapter: %s", self.backend.explain("buffering calls in", exc))
            return total
        self.waiting += total
        return 0

    def forward(self, commit: Callable[[Sequence[Any]], bool]) -> int:
        """Hand the oldest batches to ``commit`` until it reports the server down (False) or
        the file is empty; returns how many rows were forwarded."""
        sent = 0
        try:
            with closing(self.backend.connect()) as conn:
                while True:
                    moved = self._forward_one(conn, commit)
                    if moved <= 0:
                        self.waiting = self._count(conn)
                        return sent
                    sent += moved
        except (sqlite3.Error, StoreError) as exc:
            log.warning("llm-adapter: %s", self.backend.explain("forwarding calls from", exc))
            return sent

    def _forward_one(self, conn: sqlite3.Connection,
                     commit: Callable[[Sequence[Any]], bool]) -> int:
        moved = 0

        def work() -> None:
            nonlocal moved
            ids = [r[0] for r in conn.execute(
                "SELECT call_id FROM calls ORDER BY started_at LIMIT ?", (_BATCH,))]
            scores = conn.execute("SELECT id, trace_id, call_id, name, value_num, value_text, "
                                  "comment, created_at FROM scores ORDER BY id LIMIT ?",
                                  (_BATCH,)).fetchall()
            outbox = conn.execute("SELECT id, call_id, destination, payload, created_at FROM "
                                  "outbox ORDER BY id LIMIT ?", (_BATCH,)).fetchall()
            items: list[Any] = [*read_calls(conn, ids),
                                *(_Score(*row[1:]) for row in scores),
                                *(_WithOutbox(None, OutboxEntry(*row[1:])) for row in outbox)]
            if not items:
                return
            if not commit(items):
                moved = -1
                return
            _delete(conn, "DELETE FROM attempts WHERE call_id", ids)
            _delete(conn, "DELETE FROM call_tags WHERE call_id", ids)
            _delete(conn, "DELETE FROM calls WHERE call_id", ids)
            _delete(conn, "DELETE FROM scores WHERE id", [r[0] for r in scores])
            _delete(conn, "DELETE FROM outbox WHERE id", [r[0] for r in outbox])
            moved = len(items)

        self.backend.retrying(lambda: self.backend.transaction(conn, work))
        return moved

    @staticmethod
    def _count(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT (SELECT COUNT(*) FROM calls) + (SELECT COUNT(*) FROM "
                                "scores) + (SELECT COUNT(*) FROM outbox)").fetchone()[0])


def _delete(conn: sqlite3.Connection, head: str, values: Sequence[Any]) -> None:
    for i in range(0, len(values), 500):
        chunk = values[i:i + 500]
        conn.execute(f"{head} IN ({', '.join('?' * len(chunk))})", chunk)
