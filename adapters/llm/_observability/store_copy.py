"""Copying history from one store to another (``llm-adapter store copy``), in batches.

Calls are read by call id order (keyset, so a batch costs the same at any depth) with their
attempts, and written with the store's own upsert: copying again replaces a call by itself.
Scores have no natural key, so a score is added only where the destination has none with the
same trace, call, name, value and time. The Langfuse outbox and spool are not copied: what
waits for Langfuse is delivered from where it was recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from functools import partial
from typing import Any

from .store_rows import _ATTEMPT, _COLUMNS, _insert, _record, _Score
from .records import Attempt
from .store import LocalStore, StoreError

__all__ = ["copy_store"]

_BATCH = 1000


def copy_store(source: LocalStore, destination: LocalStore, *,
               progress: Callable[[int, int], None] | None = None) -> tuple[int, int]:
    """Copy ``source``'s calls and scores into ``destination``; (calls copied, scores added)."""
    backend = destination._backend
    try:
        with closing(source.connect()) as src, closing(destination.connect()) as dst:
            total = int(src.execute("SELECT COUNT(*) FROM calls").fetchone()[0])
            done, after = 0, ""
            if progress is not None:
                progress(0, total)
            while True:
                rows = src.execute(f"SELECT {', '.join(_COLUMNS)} FROM calls WHERE call_id > ? "
                                   f"ORDER BY call_id LIMIT ?", (after, _BATCH)).fetchall()
                if not rows:
                    break
                records = _records(src, rows)
                backend.retrying(partial(backend.transaction, dst,
                                         partial(_insert, dst, records, [], [])))
                done += len(records)
                after = rows[-1][0]                 # call_id: rows come in its order
                if progress is not None:
                    progress(done, total)
            added = _copy_scores(src, dst, backend)
    except (*source.errors, *destination.errors) as exc:
        raise StoreError(f"copying {source.where} to {destination.where} failed: "
                         f"{type(exc).__name__}: {exc}") from exc
    return done, added


def _records(src: Any, rows: list[Any]) -> list[Any]:
    values = [dict(zip(_COLUMNS, row)) for row in rows]
    ids = [v["call_id"] for v in values]
    attempts: dict[str, list[Attempt]] = {i: [] for i in ids}
    marks = ", ".join("?" * len(ids))
    for row in src.execute(f"SELECT call_id, {', '.join(_ATTEMPT)} FROM attempts WHERE call_id "
                           f"IN ({marks}) ORDER BY call_id, seq", ids):
        attempts[row[0]].append(Attempt(**dict(zip(_ATTEMPT, tuple(row)[1:]))))
    return [_record(v, attempts[v["call_id"]]) for v in values]


def _copy_scores(src: Any, dst: Any, backend: Any) -> int:
    columns = "trace_id, call_id, name, value_num, value_text, comment, created_at"
    have = {tuple(r) for r in dst.execute(f"SELECT {columns} FROM scores")}
    new = [_Score(*tuple(r)) for r in src.execute(f"SELECT {columns} FROM scores ORDER BY id")
           if tuple(r) not in have]
    for start in range(0, len(new), _BATCH):
        chunk = new[start:start + _BATCH]
        backend.retrying(partial(backend.transaction, dst, partial(_insert, dst, [], chunk, [])))
    return len(new)
