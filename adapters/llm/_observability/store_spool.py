"""The store's spool: OTLP payloads the Langfuse SDK could not deliver, kept until they are.

Synchronous, each operation on its own short-lived connection (the spool is written when an
export fails and read by the delivery, never on a call's path).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from .store_rows import SpoolItem

__all__ = ["Spool"]


class Spool:
    """``store.spool``: add, read, count and forget spooled payloads by kind."""

    def __init__(self, backend: Any, session: Callable[[str], AbstractContextManager[Any]]
                 ) -> None:
        self._backend = backend
        self._session = session             # a connection, errors said as ``doing`` failed

    def add(self, kind: str, payload: bytes, *, created_at: float | None = None) -> int:
        """Keep ``payload`` until it is delivered; returns its id."""
        with self._session("adding to the spool") as conn:
            row = self._backend.retrying(lambda: conn.execute(
                "INSERT INTO spool (kind, payload, created_at) VALUES (?, ?, ?) RETURNING id",
                (kind, payload, time.time() if created_at is None else created_at)).fetchone())
            return int(row[0])

    def items(self, kind: str, limit: int = 100) -> list[SpoolItem]:
        """The oldest ``limit`` payloads of ``kind``, oldest first."""
        with self._session("reading the spool") as conn:
            rows = conn.execute("SELECT id, kind, payload, created_at, tries, last_error "
                                "FROM spool WHERE kind = ? AND quarantined_at IS NULL "
                                "ORDER BY id LIMIT ?",
                                (kind, limit)).fetchall()
        return [SpoolItem(r[0], r[1], bytes(r[2]), r[3], r[4], r[5]) for r in rows]

    def delete(self, ids: Sequence[int]) -> None:
        """Forget delivered payloads."""
        if not ids:
            return
        with self._session("deleting from the spool") as conn:
            self._backend.retrying(lambda: self._backend.transaction(conn, lambda: conn.executemany(
                "DELETE FROM spool WHERE id = ?", [(i,) for i in ids])))

    def failed(self, item_id: int, error: str) -> None:
        """Note a failed delivery of one payload (``tries`` + 1, ``last_error``)."""
        with self._session("updating the spool") as conn:
            self._backend.retrying(lambda: conn.execute(
                "UPDATE spool SET tries = tries + 1, last_error = ? WHERE id = ?",
                (error, item_id)))

    def count(self, kind: str | None = None) -> int:
        """How many payloads wait (of ``kind``, or of every kind); quarantined ones do not."""
        with self._session("counting the spool") as conn:
            return int(conn.execute("SELECT COUNT(*) FROM spool WHERE (? IS NULL OR kind = ?) "
                                    "AND quarantined_at IS NULL", (kind, kind)).fetchone()[0])

    def size(self) -> int:
        """Total size of the waiting payloads, to watch the spool's growth."""
        with self._session("measuring the spool") as conn:
            return int(conn.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM spool")
                       .fetchone()[0])
