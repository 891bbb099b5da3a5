"""The store's rows: a call record as its ``calls``, ``attempts`` and ``call_tags`` rows and
back, the batch insert both databases take, and the repair of values neither can store.

``_insert`` writes a batch in as few statements as the database takes: one statement per table
and batch, not one per row (see ``_values``). The statements are SQLite's; ``Dialect`` spells
the upsert and insert-or-ignore of PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import json
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Union, cast, overload

from .store_dialect import dialect_of
from .records import Attempt, CallRecord, Usage

__all__ = ["OutboxEntry", "REPLACED_KEY", "SpoolItem", "read_calls", "storable"]

_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACED_KEY = "_unstorable_text_replaced"   # metadata key naming the fields storable() changed

# CallRecord fields stored as they are, one column each (the other columns are derived below).
_SCALARS = ("call_id", "trace_id", "span_id", "parent_span_id", "started_at", "ended_at",
            "environment", "model_group", "answered_group", "deployment", "provider",
            "provider_model", "status",
            "error_kind", "error_message", "latency_ms", "ttft_ms", "cost", "cost_saved",
            "prompt_name", "prompt_version", "prompt_variant", "prompt_source", "session_id",
            "user_id", "agent",
            "stage", "trace_name", "output")
_USAGE = ("input_tokens", "cached_tokens", "cache_write_tokens", "output_tokens",
          "reasoning_tokens")
_COST_PARTS = ("input", "cached", "cache_write", "output", "hedge")  # cost_details -> cost_<key>
_JSON = ("metadata", "input", "tool_calls", "model_parameters")
_COLUMNS = (*_SCALARS, "day", *_USAGE, *(f"cost_{p}" for p in _COST_PARTS), "cache_hit", "tags",
            *_JSON, "stream", "fallback", "hedged")
_ATTEMPT = ("deployment", "model_group", "provider", "outcome", "error_kind", "status",
            "latency_ms", "message", "cost")
_SCALAR_VALUES = operator.attrgetter(*_SCALARS)
_USAGE_VALUES = operator.attrgetter(*_USAGE)
_JSON_VALUES = operator.attrgetter(*_JSON)


@dataclass(frozen=True, slots=True)
class SpoolItem:
    """One payload Langfuse has not acknowledged yet."""

    id: int
    kind: str
    payload: bytes
    created_at: float
    tries: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """What Langfuse is to get for one call (JSON text), kept until it acknowledges it."""

    call_id: str
    destination: str                # the Langfuse public key
    payload: str
    created_at: float


@dataclass(frozen=True, slots=True)
class _WithOutbox:
    """A call's row (None: the store keeps no calls) and its outbox row: one transaction."""

    record: CallRecord | None
    entry: OutboxEntry


@dataclass(frozen=True, slots=True)
class _Score:
    trace_id: str | None
    call_id: str | None
    name: str
    value_num: float | None
    value_text: str | None
    comment: str | None
    created_at: float


# -- rows ------------------------------------------------------------------------------------
def _call_row(record: CallRecord) -> dict[str, Any]:
    """The ``calls`` row of ``record``: its scalars plus the derived and JSON columns."""
    details = record.cost_details or {}
    row = dict(zip(_SCALARS, _SCALAR_VALUES(record)))
    row.update(zip(_USAGE, _USAGE_VALUES(record.usage)))
    row.update({f"cost_{p}": details.get(p) for p in _COST_PARTS})
    row.update(zip(_JSON, map(_dumps, _JSON_VALUES(record))))
    row.update(day=datetime.fromtimestamp(record.started_at, timezone.utc).strftime("%Y-%m-%d"),
               cache_hit=int(record.cache_hit), tags=_dumps(list(record.tags)),
               stream=int(record.stream), hedged=int(record.hedged),
               fallback=int(any(a.outcome not in ("ok", "cancelled") for a in record.attempts)))
    return row


def read_calls(conn: Any, call_ids: Sequence[str]) -> list[CallRecord]:
    """The records of ``call_ids`` with their attempts, oldest first (missing ids skipped)."""
    records = []
    for call_id in dict.fromkeys(call_ids):
        row = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM calls WHERE call_id = ?",
                           (call_id,)).fetchone()
        if row is None:
            continue
        values = dict(zip(_COLUMNS, row))
        attempts = [Attempt(**dict(zip(_ATTEMPT, a))) for a in conn.execute(
            f"SELECT {', '.join(_ATTEMPT)} FROM attempts WHERE call_id = ? ORDER BY seq",
            (call_id,))]
        records.append(_record(values, attempts))
    return sorted(records, key=lambda r: r.started_at)


def stored_call_ids(conn: Any, call_ids: Sequence[str]) -> set[str]:
    """Which of ``call_ids`` have a ``calls`` row."""
    step = dialect_of(conn).max_params
    found: set[str] = set()
    for i in range(0, len(call_ids), step):
        chunk = call_ids[i:i + step]
        found.update(row[0] for row in conn.execute(
            f"SELECT call_id FROM calls WHERE call_id IN ({', '.join('?' * len(chunk))})",
            chunk))
    return found


def _record(values: dict[str, Any], attempts: list[Attempt]) -> CallRecord:
    details = {p: values[f"cost_{p}"] for p in _COST_PARTS if values[f"cost_{p}"] is not None}
    if details and values["cost"] is not None:
        details["total"] = values["cost"]
    return CallRecord(**{name: values[name] for name in _SCALARS},
                      **{name: json.loads(values[name]) for name in _JSON},
                      usage=Usage(**{name: values[name] for name in _USAGE}),
                      cost_details=details or None, cache_hit=bool(values["cache_hit"]),
                      tags=tuple(json.loads(values["tags"])), stream=bool(values["stream"]),
                      hedged=bool(values["hedged"]), attempts=attempts)


def _insert(conn: Any, records: list[CallRecord], scores: list[_Score],
            outbox: Sequence[OutboxEntry] = ()) -> None:
    records = list({r.call_id: r for r in records}.values())    # the last write of a call wins
    ids = [r.call_id for r in records]
    dialect = dialect_of(conn)
    if outbox:
        # A call handed over again (by a recording process that died before its "took" was
        # read, a buffer moved twice) was stored with its outbox row the first time, and may
        # have been delivered since: another row would deliver it twice.
        known = stored_call_ids(conn, list({e.call_id for e in outbox}))
        outbox = [e for e in {(e.call_id, e.destination): e for e in outbox}.values()
                  if e.call_id not in known]
    _where_in(conn, "DELETE FROM attempts WHERE call_id", ids)
    _where_in(conn, "DELETE FROM call_tags WHERE call_id", ids)
    _values(conn, dialect.upsert("calls", _COLUMNS, "call_id"), len(_COLUMNS),
            [tuple(row[c] for c in _COLUMNS) for row in map(_call_row, records)])
    _values(conn, f"INSERT INTO attempts (call_id, seq, {', '.join(_ATTEMPT)})",
            2 + len(_ATTEMPT), [(r.call_id, seq, *(getattr(a, name) for name in _ATTEMPT))
                                for r in records for seq, a in enumerate(r.attempts)])
    _values(conn, dialect.insert_ignore("call_tags", ("call_id", "tag")), 2,
            [(r.call_id, tag) for r in records for tag in r.tags])
    _values(conn, "INSERT INTO scores (trace_id, call_id, name, value_num, value_text, comment, "
            "created_at)", 7,
            [(s.trace_id, s.call_id, s.name, s.value_num, s.value_text, s.comment, s.created_at)
             for s in scores])
    _values(conn, "INSERT INTO outbox (call_id, destination, payload, created_at)", 4,
            [(e.call_id, e.destination, e.payload, e.created_at) for e in outbox])


# One statement per table and batch, not one per row: sqlite3 lets go of the GIL around every
# step of a statement, and while the calling threads keep the interpreter busy, taking it back
# costs the writer up to a switch interval (5 ms) each time. Row by row, a batch of 50 calls
# waited about a second to commit; this way a handful of steps.
def _values(conn: Any, head: str | tuple[str, str], width: int,
            rows: Sequence[Sequence[Any]]) -> None:
    """``head VALUES (…), (…), … tail`` for ``rows``, as few statements as the database
    takes (``head`` alone, or the (head, tail) of an upsert)."""
    start, tail = (head, "") if isinstance(head, str) else head
    if not rows:
        return
    if dialect_of(conn).name == "postgresql":      # bound server-side, pipelined
        conn.insert_rows(start, tail, width, rows)
        return
    step = max(1, dialect_of(conn).max_params // width)
    one = f"({', '.join('?' * width)})"
    for i in range(0, len(rows), step):
        chunk = rows[i:i + step]
        conn.execute(f"{start} VALUES {', '.join([one] * len(chunk))}{tail}",
                     [value for row in chunk for value in row])


def _where_in(conn: Any, head: str, values: Sequence[Any]) -> None:
    """``head IN (…)`` over ``values``, as few statements as the database takes."""
    step = dialect_of(conn).max_params
    for i in range(0, len(values), step):
        chunk = values[i:i + step]
        conn.execute(f"{head} IN ({', '.join('?' * len(chunk))})", chunk)


_Stored = Union[CallRecord, _Score, _WithOutbox]


def _alone(item: _Stored) -> tuple[list[CallRecord], list[_Score], list[OutboxEntry]]:
    if isinstance(item, _WithOutbox):
        return ([item.record] if item.record is not None else [], [], [item.entry])
    return ([item], [], []) if isinstance(item, CallRecord) else ([], [item], [])


def _storable_item(item: _Stored) -> _Stored:
    if isinstance(item, _WithOutbox):
        return _WithOutbox(storable(item.record) if item.record is not None else None,
                           item.entry)
    return storable(item)


@overload
def storable(item: CallRecord) -> CallRecord: ...
@overload
def storable(item: _Score) -> _Score: ...
@overload
def storable(item: CallRecord | _Score) -> CallRecord | _Score: ...


def storable(item: CallRecord | _Score) -> CallRecord | _Score:
    """``item`` with every lone surrogate (a UTF-16 half, not a character: neither UTF-8,
    SQLite nor JSON over HTTP can carry it) replaced by U+FFFD, the replacement character any
    UTF-8 reader shows for text it cannot decode; a valid pair of halves becomes its character.
    A call record's metadata names the fields changed under ``REPLACED_KEY``, so a reader
    knows the stored text is not exactly what was sent or answered."""
    clean = _clean(item)
    if isinstance(item, CallRecord) and isinstance(clean, CallRecord):
        changed = [f.name for f in dataclasses.fields(item)
                   if getattr(clean, f.name) != getattr(item, f.name)]
        if changed:
            clean.metadata = {**clean.metadata, REPLACED_KEY: changed}
    return cast(Union[CallRecord, _Score], clean)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        if not _SURROGATE.search(value):
            return value
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_clean(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _clean(getattr(value, f.name))
                                             for f in dataclasses.fields(value) if f.init})
    return value


# default=str: a metadata value JSON cannot hold is stored as its text, not lost. One encoder
# for every value (``json.dumps`` with options makes one per call).
_dumps = json.JSONEncoder(ensure_ascii=False, default=str).encode
