"""What waits for Langfuse in a store, for ``llm-adapter status`` and ``traces sync``."""

from __future__ import annotations

from contextlib import closing
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from . import outbox
from .delivery import SPOOL_KIND
from .outbox import OUTBOX, SPOOL

if TYPE_CHECKING:
    from .store import LocalStore

__all__ = ["dropped", "langfuse_status", "quarantine_lines"]


def langfuse_status(store: LocalStore, key: str | None) -> dict[str, Any]:
    """Pending and quarantined calls (of the project ``key``, or all) and the reasons."""
    with closing(store.connect()) as conn:
        calls = outbox.counts(conn, OUTBOX, key)
        spool = outbox.counts(conn, SPOOL, SPOOL_KIND)
        groups = outbox.quarantined(conn, OUTBOX, key) + outbox.quarantined(conn, SPOOL)
    return {"pending": calls.pending, "quarantined": calls.quarantined,
            "spool_pending": spool.pending, "spool_quarantined": spool.quarantined,
            "last_error": calls.last_error or spool.last_error,
            "quarantine": [{"reason": g.reason, "count": g.count, "since": _utc(g.since),
                            "call_ids": list(g.call_ids)} for g in groups]}


def quarantine_lines(store: LocalStore, key: str | None) -> list[str]:
    """One line per reason Langfuse refused calls for, then their call ids."""
    lines = []
    with closing(store.connect()) as conn:
        for group in outbox.quarantined(conn, OUTBOX, key) + outbox.quarantined(conn, SPOOL):
            what = "call(s)" if group.call_ids else "span batch(es)"
            lines.append(f"quarantined since {_utc(group.since)}: {group.count} {what}: "
                         f"{group.reason}")
            lines += [f"  {call_id}" for call_id in group.call_ids]
    return lines


def dropped(store: LocalStore) -> int:
    """Delete every quarantined row for good; returns how many."""
    with closing(store.connect()) as conn:
        return outbox.drop_quarantined(conn, OUTBOX) + outbox.drop_quarantined(conn, SPOOL)


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
