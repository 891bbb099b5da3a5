"""The local store: every call, the Langfuse outbox and spool, and scores, in one SQLite file.

Calls are recorded off the calling path: ``write`` only enqueues, and one writer thread per store
commits what is queued, a batch per transaction. A call's Langfuse outbox row is written in the
same transaction as its ``calls`` row, so what reached the store can always reach Langfuse.
WAL mode and a busy timeout let readers and other processes share the file. It holds prompts
and answers, so it is created private (file 0600, directory 0700). A record one of whose values
the file cannot take never takes its batch down: the batch is retried record by record, that
record is made storable (``storable``) and, failing that, dropped alone with its call id logged.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Union, cast, overload

from ._lifecycle import STORES, default_lifecycle
from ._sqlite import StoreError, _connect, _explain, _prepare, _retrying, _transaction
from .errors import UsageError
from .records import Attempt, CallRecord, Usage

__all__ = ["FILENAME", "LocalStore", "OutboxEntry", "SpoolItem", "StoreError",
           "default_path", "read_calls", "storable"]

log = logging.getLogger("adapters.llm")

FILENAME = "calls.sqlite3"
_BATCH = 500                # records per transaction at most
# What a value of a record (not the file) can make a write fail with: a lone surrogate
# (UnicodeEncodeError), an integer over 64 bits, a type SQLite cannot bind.
_CONTENT_ERRORS = (ValueError, TypeError, OverflowError, sqlite3.InterfaceError,
                   sqlite3.ProgrammingError, sqlite3.DataError, sqlite3.IntegrityError)
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
_INSERT_CALL = f"INSERT OR REPLACE INTO calls ({', '.join(_COLUMNS)})"
_MAX_PARAMS = 32_766        # SQLite's limit of host parameters per statement (3.32 and later)
_ATTEMPT = ("deployment", "model_group", "provider", "outcome", "error_kind", "status",
            "latency_ms", "message", "cost")


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
class _Batch:
    """Records queued as one item (``write_batch``)."""

    items: tuple[CallRecord | _WithOutbox, ...]


@dataclass(frozen=True, slots=True)
class _Score:
    trace_id: str | None
    call_id: str | None
    name: str
    value_num: float | None
    value_text: str | None
    comment: str | None
    created_at: float


# What the writer thread takes from the queue: a record or score to store, an Event to set once
# everything before it is committed (flush), None to stop.
_Item = Union[CallRecord, _WithOutbox, _Batch, _Score, threading.Event, None]


def default_path() -> Path:
    """``$LLM_ADAPTER_HOME/calls.sqlite3``, else ``calls.sqlite3`` in the user data directory.

    Simulated calls (the demo's, environment ``simulation``) are kept here too; the reports
    leave them out unless asked for (``--simulated``)."""
    home = os.environ.get("LLM_ADAPTER_HOME")
    if home:
        return Path(home).expanduser() / FILENAME
    import platformdirs

    return Path(platformdirs.user_data_dir("llm-adapter")) / FILENAME


class LocalStore:
    """Calls, spool and scores of this machine, safe from many threads and processes at once.

    ``write`` never blocks or raises: a call must not wait for a disk or fail because of one.
    What could not be queued (or written) is counted in ``dropped`` and logged.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 queue_size: int = 10_000) -> None:
        self.path = Path(path).expanduser() if path is not None else default_path()
        self.dropped = 0            # records and scores not stored: queue full or write error
        self.written = 0            # call records committed
        self.escaped = 0            # records stored with unencodable text replaced
        self.rejected = 0           # records that could not be stored even so (in dropped)
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._closed = False
        self._outbox_listeners: list[Callable[[], None]] = []
        _prepare(self.path)

    # -- calls and scores, through the writer thread -----------------------------------------
    def write(self, record: CallRecord) -> None:
        """Queue ``record`` to be committed by the writer thread (idempotent on ``call_id``)."""
        self._enqueue(record)

    def write_with_outbox(self, record: CallRecord | None, entry: OutboxEntry) -> None:
        """Queue ``record`` (if any) and its Langfuse outbox row, committed together."""
        self._enqueue(_WithOutbox(record, entry))

    def write_batch(self, items: Sequence[tuple[CallRecord, OutboxEntry | None]]) -> None:
        """Queue several records (each with its Langfuse outbox row, if any) as one item, so
        the writer commits them together."""
        if items:
            self._enqueue(_Batch(tuple(_WithOutbox(r, e) if e is not None else r
                                       for r, e in items)))

    def on_outbox_commit(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (quick; from the writer thread) after outbox rows are committed."""
        self._outbox_listeners.append(listener)

    def add_score(self, *, name: str, value: float | str, trace_id: str | None,
                  call_id: str | None = None, comment: str | None = None,
                  created_at: float | None = None) -> None:
        """Queue a score (numeric, boolean or categorical) for a trace or a call."""
        if not isinstance(value, (int, float, str)):
            raise UsageError(f"score {name!r}: value must be a number, a bool or a string, "
                             f"not {type(value).__name__}")
        number, text = (None, value) if isinstance(value, str) else (float(value), None)
        self._enqueue(_Score(trace_id, call_id, name, number, text, comment,
                             time.time() if created_at is None else created_at))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued before this call is committed; False on timeout."""
        writer = self._writer
        if writer is None or not writer.is_alive():
            return self._queue.empty()
        deadline = time.monotonic() + timeout
        done = threading.Event()
        try:
            self._queue.put(done, timeout=max(timeout, 0.0))
        except queue.Full:
            return False
        return done.wait(max(deadline - time.monotonic(), 0.0))

    def close(self, timeout: float = 5.0) -> bool:
        """Commit what is queued and stop the writer thread; later writes are dropped.
        True when the writer finished within ``timeout``. Safe to call twice."""
        with self._lock:
            if self._closed:
                return True
            self._closed = True
            writer = self._writer
        if writer is None:
            return True
        deadline = time.monotonic() + timeout
        with suppress(queue.Full):          # a writer stuck that long is reported below
            self._queue.put(None, timeout=max(timeout, 0.0))
        writer.join(max(deadline - time.monotonic(), 0.0))
        if writer.is_alive():
            log.warning("llm-adapter: the store writer did not finish within %.1f s; about %d "
                        "queued record(s) may not be in %s", timeout, self._queue.qsize(),
                        self.path)
            return False
        return True

    def start(self) -> None:
        """Start the writer thread now rather than on the first write (the first record then
        does not wait for it)."""
        self._start_writer()

    def _enqueue(self, item: _Item) -> None:
        count = len(item.items) if isinstance(item, _Batch) else 1
        if self._closed:
            self._drop("the store is closed", count)
            return
        try:
            self._start_writer()
            self._queue.put_nowait(item)
        except queue.Full:
            self._drop("the write queue is full (calls come faster than the disk takes them)",
                       count)
        except RuntimeError:        # threads cannot be started while the interpreter exits
            self._drop("the interpreter is shutting down", count)

    def _drop(self, reason: str, count: int = 1) -> None:
        with self._lock:
            before = self.dropped
            self.dropped = after = before + count
        if before == 0 or before // 1000 != after // 1000:    # once per 1000, not per record
            log.warning("llm-adapter: %d record(s) not stored in %s so far: %s",
                        after, self.path, reason)

    def _start_writer(self) -> None:
        if self._writer is not None:
            return
        with self._lock:
            if self._writer is None:
                writer = threading.Thread(target=self._run, name="llm-adapter-store",
                                          daemon=True)
                writer.start()
                self._writer = writer
                default_lifecycle().add(self.close, stage=STORES)

    def _run(self) -> None:
        """The writer thread: commit whatever is queued, one transaction per batch."""
        stopping = False
        with closing(_connect(self.path)) as conn:
            while not (stopping and self._queue.empty()):
                items = _flat([self._queue.get()])
                while len(items) < _BATCH:
                    try:
                        items.extend(_flat([self._queue.get_nowait()]))
                    except queue.Empty:
                        break
                self._commit(conn, items)
                for item in items:
                    if isinstance(item, threading.Event):
                        item.set()
                stopping = stopping or any(item is None for item in items)

    def _commit(self, conn: sqlite3.Connection, items: list[_Item]) -> None:
        records = [i for i in items if isinstance(i, CallRecord)]
        scores = [i for i in items if isinstance(i, _Score)]
        paired = [i for i in items if isinstance(i, _WithOutbox)]
        records += [i.record for i in paired if i.record is not None]
        outbox = [i.entry for i in paired]
        if not records and not scores and not outbox:
            return
        try:
            _retrying(lambda: _transaction(conn, lambda: _insert(conn, records, scores, outbox)))
        except _CONTENT_ERRORS:     # a value this file cannot take: find it, keep its mates
            self._commit_each(conn, [i for i in items if isinstance(i, (CallRecord, _Score,
                                                                        _WithOutbox))])
            if outbox:
                self._outbox_committed()
            return
        except sqlite3.Error as exc:   # the file failed (locked, full, read-only); live on
            self._drop(_explain(self.path, "writing calls", exc),
                       max(len(records), len(outbox)) + len(scores))
            return
        self.written += len(records)
        if outbox:
            self._outbox_committed()

    def _outbox_committed(self) -> None:
        for listener in self._outbox_listeners:
            try:
                listener()
            except Exception:  # a listener only wakes a thread; the writer must live on
                log.exception("llm-adapter: outbox commit listener failed")

    def _commit_each(self, conn: sqlite3.Connection, items: list[_Stored]) -> None:
        """Commit one by one; a record that fails is made storable (``storable``), and one
        that still fails is dropped alone, logged with its call id and counted (its Langfuse
        outbox row, always storable, is kept)."""
        for item in items:
            batch = _alone(item)
            try:
                _retrying(lambda: _transaction(conn, lambda: _insert(conn, *batch)))
                self.written += len(batch[0])
                continue
            except _CONTENT_ERRORS:
                pass                # made storable below
            except sqlite3.Error as exc:
                self._drop(_explain(self.path, "writing calls", exc))
                continue
            try:
                batch = _alone(_storable_item(item))
                _retrying(lambda: _transaction(conn, lambda: _insert(conn, *batch)))
            except (*_CONTENT_ERRORS, sqlite3.Error, RecursionError) as exc:  # e.g. a cycle
                self._reject(conn, item, exc)
                continue
            self.escaped += 1
            self.written += len(batch[0])
            record = item.record if isinstance(item, _WithOutbox) else item
            if isinstance(record, CallRecord):
                log.warning("llm-adapter: call %s held text that cannot be stored (lone "
                            "surrogates); stored with U+FFFD in their place", record.call_id)

    def _reject(self, conn: sqlite3.Connection, item: _Stored, exc: BaseException) -> None:
        self.rejected += 1
        record = item.record if isinstance(item, _WithOutbox) else item
        what = f"call {record.call_id}" if isinstance(record, CallRecord) else \
            f"score {record.name!r} of trace {record.trace_id}" if isinstance(record, _Score) \
            else "a Langfuse outbox row"
        log.warning("llm-adapter: %s not stored in %s: %s: %s (%d record(s) rejected so far; "
                    "please report it as a bug)", what, self.path, type(exc).__name__, exc,
                    self.rejected)
        self._drop(_explain(self.path, "writing calls", exc))
        if isinstance(item, _WithOutbox) and item.record is not None:
            try:        # Langfuse can still have the call: its payload is always storable
                _retrying(lambda: _transaction(conn, lambda: _insert(conn, [], [], [item.entry])))
            except (*_CONTENT_ERRORS, sqlite3.Error) as again:
                log.warning("llm-adapter: the Langfuse outbox row of %s not stored either: %s",
                            what, again)

    # -- the spool: synchronous, each on its own short-lived connection -----------------------
    def spool_add(self, kind: str, payload: bytes, *, created_at: float | None = None) -> int:
        """Keep ``payload`` until it is delivered; returns its id."""
        with self._session("adding to the spool") as conn:
            cursor = _retrying(lambda: conn.execute(
                "INSERT INTO spool (kind, payload, created_at) VALUES (?, ?, ?)",
                (kind, payload, time.time() if created_at is None else created_at)))
            return cast(int, cursor.lastrowid)

    def spool_items(self, kind: str, limit: int = 100) -> list[SpoolItem]:
        """The oldest ``limit`` payloads of ``kind``, oldest first."""
        with self._session("reading the spool") as conn:
            rows = conn.execute("SELECT id, kind, payload, created_at, tries, last_error "
                                "FROM spool WHERE kind = ? AND quarantined_at IS NULL "
                                "ORDER BY id LIMIT ?",
                                (kind, limit)).fetchall()
        return [SpoolItem(r[0], r[1], bytes(r[2]), r[3], r[4], r[5]) for r in rows]

    def spool_delete(self, ids: Sequence[int]) -> None:
        """Forget delivered payloads."""
        if not ids:
            return
        with self._session("deleting from the spool") as conn:
            _retrying(lambda: _transaction(conn, lambda: conn.executemany(
                "DELETE FROM spool WHERE id = ?", [(i,) for i in ids])))

    def spool_failed(self, item_id: int, error: str) -> None:
        """Note a failed delivery of one payload (``tries`` + 1, ``last_error``)."""
        with self._session("updating the spool") as conn:
            _retrying(lambda: conn.execute(
                "UPDATE spool SET tries = tries + 1, last_error = ? WHERE id = ?",
                (error, item_id)))

    def spool_count(self, kind: str | None = None) -> int:
        """How many payloads wait (of ``kind``, or of every kind); quarantined ones do not."""
        with self._session("counting the spool") as conn:
            return int(conn.execute("SELECT COUNT(*) FROM spool WHERE (? IS NULL OR kind = ?) "
                                    "AND quarantined_at IS NULL", (kind, kind)).fetchone()[0])

    def spool_bytes(self) -> int:
        """Total size of the waiting payloads, to watch the spool's growth."""
        with self._session("measuring the spool") as conn:
            return int(conn.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM spool")
                       .fetchone()[0])

    # -- reading -------------------------------------------------------------------------------
    def connect(self) -> sqlite3.Connection:
        """A new connection for reading (rows as ``sqlite3.Row``); the caller closes it."""
        try:
            conn = _connect(self.path)
        except sqlite3.Error as exc:
            raise StoreError(_explain(self.path, "opening", exc)) from exc
        conn.row_factory = sqlite3.Row
        return conn

    def get_call(self, call_id: str) -> CallRecord | None:
        """The stored record of one call (with its attempts), or None."""
        with closing(self.connect()) as conn:
            records = read_calls(conn, [call_id])
        return records[0] if records else None

    @contextmanager
    def _session(self, doing: str) -> Iterator[sqlite3.Connection]:
        try:
            with closing(_connect(self.path)) as conn:
                yield conn
        except sqlite3.Error as exc:
            raise StoreError(_explain(self.path, doing, exc)) from exc


# -- rows ------------------------------------------------------------------------------------
def _call_row(record: CallRecord) -> dict[str, Any]:
    """The ``calls`` row of ``record``: its scalars plus the derived and JSON columns."""
    details = record.cost_details or {}
    row = {name: getattr(record, name) for name in _SCALARS}
    row.update({name: getattr(record.usage, name) for name in _USAGE})
    row.update({f"cost_{p}": details.get(p) for p in _COST_PARTS})
    row.update({name: _dumps(getattr(record, name)) for name in _JSON})
    row.update(day=datetime.fromtimestamp(record.started_at, timezone.utc).strftime("%Y-%m-%d"),
               cache_hit=int(record.cache_hit), tags=_dumps(list(record.tags)),
               stream=int(record.stream), hedged=int(record.hedged),
               fallback=int(any(a.outcome not in ("ok", "cancelled") for a in record.attempts)))
    return row


def read_calls(conn: sqlite3.Connection, call_ids: Sequence[str]) -> list[CallRecord]:
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


def _insert(conn: sqlite3.Connection, records: list[CallRecord], scores: list[_Score],
            outbox: Sequence[OutboxEntry] = ()) -> None:
    records = list({r.call_id: r for r in records}.values())    # the last write of a call wins
    ids = [r.call_id for r in records]
    _where_in(conn, "DELETE FROM attempts WHERE call_id", ids)
    _where_in(conn, "DELETE FROM call_tags WHERE call_id", ids)
    _values(conn, _INSERT_CALL, len(_COLUMNS),
            [tuple(row[c] for c in _COLUMNS) for row in map(_call_row, records)])
    _values(conn, f"INSERT INTO attempts (call_id, seq, {', '.join(_ATTEMPT)})",
            2 + len(_ATTEMPT), [(r.call_id, seq, *(getattr(a, name) for name in _ATTEMPT))
                                for r in records for seq, a in enumerate(r.attempts)])
    _values(conn, "INSERT OR IGNORE INTO call_tags (call_id, tag)", 2,
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
def _values(conn: sqlite3.Connection, head: str, width: int,
            rows: Sequence[Sequence[Any]]) -> None:
    """``head VALUES (…), (…), …`` for ``rows``, as few statements as SQLite takes."""
    step = max(1, _MAX_PARAMS // width)
    one = f"({', '.join('?' * width)})"
    for i in range(0, len(rows), step):
        chunk = rows[i:i + step]
        conn.execute(f"{head} VALUES {', '.join([one] * len(chunk))}",
                     [value for row in chunk for value in row])


def _where_in(conn: sqlite3.Connection, head: str, values: Sequence[Any]) -> None:
    """``head IN (…)`` over ``values``, as few statements as SQLite takes."""
    for i in range(0, len(values), _MAX_PARAMS):
        chunk = values[i:i + _MAX_PARAMS]
        conn.execute(f"{head} IN ({', '.join('?' * len(chunk))})", chunk)


_Stored = Union[CallRecord, _Score, _WithOutbox]


def _flat(items: list[_Item]) -> list[_Item]:
    """Queue items with every ``_Batch`` opened up."""
    out: list[_Item] = []
    for item in items:
        if isinstance(item, _Batch):
            out.extend(item.items)
        else:
            out.append(item)
    return out


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


def _dumps(value: Any) -> str:
    # default=str: a metadata value JSON cannot hold is stored as its text, not lost.
    return json.dumps(value, ensure_ascii=False, default=str)
