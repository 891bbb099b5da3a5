"""The store: every call, the Langfuse outbox and spool, and scores, in one SQLite file or in a
PostgreSQL database shared by many replicas (``url=`` / ``LLM_ADAPTER_STORE_URL`` / ``store.url``).

Calls are recorded off the calling path: ``write`` only enqueues, and one writer thread per
store commits what is queued, a batch per transaction. What is queued is first appended to the
store's journal (``store_journal``), so a process killed before its writer committed loses
nothing it had handed over: the next writer on the store commits it. A call's Langfuse outbox
row is written in the same transaction as its ``calls`` row, so what reached the store can
always reach Langfuse. WAL mode and a busy timeout let readers and other processes share the
file. It holds prompts and answers, so it is created private (file 0600, directory 0700). A
record one of whose values the file cannot take never takes its batch down: the batch is retried
record by record, that record is made storable (``storable``) and, failing that, dropped alone
with its call id logged.

On PostgreSQL the writer is the same; while the server cannot be reached, batches go to a local
SQLite file instead (``StoreBuffer``, bounded) and are forwarded, oldest first, once it answers
again: calls go on, and what they recorded arrives once (upserts by call id).
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from functools import partial
from typing import Any, Union

from .._process.lifecycle import STORES, default_lifecycle
from .sqlite import SqliteBackend, StoreError
from .store_buffer import StoreBuffer
from .store_dialect import URL_ENV, StoreTarget, parse_store_url
from .store_journal import Journal, journal_directory, recover
from .store_rows import (REPLACED_KEY, OutboxEntry, SpoolItem, _alone, _insert, _Score,
                          _storable_item, _Stored, _WithOutbox, read_calls, storable,
                          stored_call_ids)
from .store_spool import Spool
from ..errors import UsageError
from .records import CallRecord

__all__ = ["FILENAME", "REPLACED_KEY", "LocalStore", "OutboxEntry", "SpoolItem", "StoreError",
           "default_path", "read_calls", "storable", "store_target"]

log = logging.getLogger("adapters.llm")

FILENAME = "calls.sqlite3"
BUFFER_FILENAME = "buffer.sqlite3"      # beside FILENAME: records waiting for PostgreSQL
_BATCH = 500                # records per transaction at most
_RECONNECT_S = 1.0          # while PostgreSQL is down, the writer tries it this often


@dataclass(frozen=True, slots=True)
class _Batch:
    """Records queued as one item (``write_batch``)."""

    items: tuple[CallRecord | _WithOutbox, ...]
    seq: int = 0                    # its frame in the journal (0: not journaled)


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


def store_target(path: str | os.PathLike[str] | None = None,
                 url: str | None = None) -> StoreTarget:
    """Where a store is: ``url`` (``postgresql://…`` or ``sqlite:///…``), else ``path``, else
    ``$LLM_ADAPTER_STORE_URL``, else ``default_path()``."""
    if url:
        return parse_store_url(url, key="store.url")
    if path is not None:
        return StoreTarget(path=Path(path).expanduser())
    env = os.environ.get(URL_ENV)
    if env:
        return parse_store_url(env, key=URL_ENV)
    return StoreTarget(path=default_path())


class LocalStore:
    """Calls, spool and scores of this machine, safe from many threads and processes at once.

    ``write`` never blocks or raises: a call must not wait for a disk or fail because of one.
    What could not be queued (or written) is counted in ``dropped`` and logged.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 queue_size: int = 10_000, url: str | None = None,
                 buffer_limit: int = 100_000, linger: float = 0.0) -> None:
        """``url``: a PostgreSQL database (``path`` is then the local buffer's file). Without
        either, ``$LLM_ADAPTER_STORE_URL``, else the file ``default_path()``. ``linger``: how
        long the writer lets journaled calls gather before it commits them (fewer, larger
        transactions; a flush waits for it at most once)."""
        self.linger = linger
        self.target = store_target(path, url)
        self._buffer: StoreBuffer | None = None
        self._backend: Any
        if self.target.url is not None:
            from .store_postgres import PostgresBackend

            self._backend = PostgresBackend(self.target.url)
            self.path = Path(path).expanduser() if path is not None and url is not None \
                else default_path().with_name(BUFFER_FILENAME)
            self._buffer = StoreBuffer(SqliteBackend(self.path), limit=buffer_limit)
        else:
            assert self.target.path is not None
            self.path = self.target.path
            self._backend = SqliteBackend(self.path)
        self.where = self._backend.where    # for messages: the file, or the URL masked
        self.spool = Spool(self._backend, self._session)
        self._journal = Journal(journal_directory(self.path))
        self.recovered = 0          # calls replayed from the journals of ended processes
        self._write_failures = 0    # batches the database refused as a whole (locked, full)
        self._recover_asked = False
        self.dropped = 0            # records and scores not stored: queue full or write error
        self.written = 0            # call records committed
        self.escaped = 0            # records stored with unencodable text replaced
        self.rejected = 0           # records that could not be stored even so (in dropped)
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._closed = False
        self._outbox_listeners: list[Callable[[], None]] = []
        self._conn: Any = None              # the writer thread's connection
        self._next_connect = 0.0            # monotonic: PostgreSQL down, try again then
        self._migrated = False
        if self._buffer is None:
            self._backend.prepare()
            self._migrated = True
        else:
            self._buffer.prepare()
            with suppress(StoreError):      # down: said so; migrated when it answers
                self._migrate()

    @property
    def postgres(self) -> bool:
        """The store is a PostgreSQL database (else a SQLite file)."""
        return self._buffer is not None

    @property
    def buffered(self) -> int:
        """Records waiting in the local buffer for PostgreSQL (0 on SQLite)."""
        return self._buffer.waiting if self._buffer is not None else 0

    def migrate(self) -> list[str]:
        """Apply the migrations the database lacks (``llm-adapter store migrate``); the names
        applied."""
        return self._migrate()

    def _migrate(self) -> list[str]:
        try:
            applied = self._backend.migrate()
        except self._backend.errors as exc:
            if self._buffer is not None and isinstance(exc, self._backend.down_errors):
                log.warning("llm-adapter: %s; calls are recorded in %s until it answers",
                            self._backend.explain("connecting to", exc), self.path)
            raise StoreError(self._backend.explain("migrating", exc)) from exc
        self._migrated = True
        return list(applied)

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
            self._backend.close()
            self._journal.close()
            return True
        deadline = time.monotonic() + timeout
        with suppress(queue.Full):          # a writer stuck that long is reported below
            self._queue.put(None, timeout=max(timeout, 0.0))
        writer.join(max(deadline - time.monotonic(), 0.0))
        if writer.is_alive():
            log.warning("llm-adapter: the store writer did not finish within %.1f s; about %d "
                        "queued record(s) may not be in %s", timeout, self._queue.qsize(),
                        self.where)
            return False        # the journal keeps the rest for the next process
        self._backend.close()
        self._journal.close()
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
        if isinstance(item, (CallRecord, _WithOutbox, _Batch)):   # journaled until committed
            calls = item.items if isinstance(item, _Batch) else (item,)
            item = _Batch(calls, self._journal.append(calls))
        try:
            self._start_writer()
            self._queue.put_nowait(item)
        except queue.Full:
            self._drop("the write queue is full (calls come faster than the disk takes them)",
                       count)
            self._settled([item])
        except RuntimeError:        # threads cannot be started while the interpreter exits
            self._drop("the interpreter is shutting down", count)
            self._settled([item])

    def _settled(self, items: Sequence[_Item]) -> None:
        """The journal's frames of ``items`` are dealt with (committed, buffered or dropped)."""
        self._journal.committed(max((i.seq for i in items if isinstance(i, _Batch)),
                                    default=0))

    def recover_pending(self, timeout: float = 30.0) -> bool:
        """Commit what processes that ended without closing this store left in its journal
        (the writer does it when it starts, and again now); True when done within
        ``timeout``."""
        if self._writer is not None:
            self._recover_asked = True      # the writer replays them before its next commit
        self._start_writer()
        return self.flush(timeout)

    def _recover(self) -> None:
        """In the writer thread, before anything else: replay the journals of dead processes."""
        try:
            if self._connection() is None:
                return      # PostgreSQL down: the next process (or traces sync) replays them
            self.recovered += recover(self._journal.directory, self._commit_recovered,
                                      lambda ids: stored_call_ids(self._connection(), ids))
        except (OSError, StoreError, *self._backend.errors) as exc:
            log.warning("llm-adapter: the journals in %s could not be replayed: %s",
                        self._journal.directory, exc)

    def _commit_recovered(self, items: Sequence[_Item]) -> None:
        """Commit what a journal held; raises (and the journal file stays) when the store
        could not take it, so it is not deleted with the calls still missing."""
        failed = self._write_failures
        self._commit(items)
        if self._write_failures > failed:
            raise StoreError(f"{self.where} could not be written; the journal is kept")

    def _drop(self, reason: str, count: int = 1) -> None:
        with self._lock:
            before = self.dropped
            self.dropped = after = before + count
        if before == 0 or before // 1000 != after // 1000:    # once per 1000, not per record
            log.warning("llm-adapter: %d record(s) not stored in %s so far: %s",
                        after, self.where, reason)

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
        try:
            self._recover()
            while not (stopping and self._queue.empty()):
                waiting = self._buffer is not None and self._buffer.waiting > 0
                try:
                    taken = [self._queue.get(timeout=_RECONNECT_S if waiting else None)]
                except queue.Empty:
                    taken = []
                items = _flat(taken)
                if self.linger and isinstance(taken[0], _Batch):
                    time.sleep(self.linger)     # journaled: safe to gather more into one commit
                while len(items) < _BATCH:
                    try:
                        taken.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                    items.extend(_flat(taken[-1:]))
                if waiting:
                    self._forward()
                if self._recover_asked:
                    self._recover_asked = False
                    self._recover()
                self._commit(items)
                self._settled(taken)
                for item in items:
                    if isinstance(item, threading.Event):
                        item.set()
                stopping = stopping or any(item is None for item in items)
        finally:
            if self._conn is not None:
                with suppress(*self._backend.errors):
                    self._conn.close()
                self._conn = None

    def _connection(self) -> Any:
        """The writer's connection, (re)made when needed; None while PostgreSQL is down."""
        if self._conn is not None:
            return self._conn
        if time.monotonic() < self._next_connect:
            return None
        try:
            if not self._migrated:
                self._migrate()
            self._conn = self._backend.connect()
        except (StoreError, *self._backend.errors):
            if self._buffer is None:
                raise
            self._next_connect = time.monotonic() + _RECONNECT_S
            return None
        return self._conn

    def _lost(self, exc: BaseException) -> None:
        """The server went away mid-write: forget the connection, try again later."""
        log.warning("llm-adapter: %s; records wait in %s until it answers",
                    self._backend.explain("writing calls to", exc), self.path)
        with suppress(*self._backend.errors):
            self._conn.close()
        self._conn = None
        self._next_connect = time.monotonic() + _RECONNECT_S

    def _forward(self) -> None:
        """Move the local buffer's records into PostgreSQL while it answers."""
        assert self._buffer is not None
        if self._connection() is None:
            return
        sent = self._buffer.forward(lambda items: self._commit(items, keep_if_down=False))
        if sent:
            log.warning("llm-adapter: PostgreSQL answers again; %d buffered record(s) "
                        "forwarded to %s (%d still waiting)", sent, self.where,
                        self._buffer.waiting)

    def _commit(self, items: Sequence[_Item], *, keep_if_down: bool = True) -> bool:
        """Commit ``items``; False when PostgreSQL was down (then they went to the local
        buffer, unless ``keep_if_down`` is False: they are the buffer's own)."""
        records = [i for i in items if isinstance(i, CallRecord)]
        scores = [i for i in items if isinstance(i, _Score)]
        paired = [i for i in items if isinstance(i, _WithOutbox)]
        records += [i.record for i in paired if i.record is not None]
        outbox = [i.entry for i in paired]
        if not records and not scores and not outbox:
            return True
        backend = self._backend
        try:
            conn = self._connection()
            if conn is None:
                raise _Down()
            backend.retrying(lambda: backend.transaction(
                conn, lambda: _insert(conn, records, scores, outbox)))
        except _Down:
            return self._keep(records, scores, outbox) if keep_if_down else False
        except backend.down_errors as exc:
            self._lost(exc)
            return self._keep(records, scores, outbox) if keep_if_down else False
        except backend.content_errors:  # a value the database cannot take: find it, keep its mates
            self._commit_each(conn, [i for i in items if isinstance(i, (CallRecord, _Score,
                                                                        _WithOutbox))])
            if outbox:
                self._outbox_committed()
            return True
        except backend.errors as exc:   # the file failed (locked, full, read-only); live on
            kept = "" if self._journal.failed else \
                "; kept in its journal for the next process on the store to commit"
            self._drop(backend.explain("writing calls", exc) + kept,
                       max(len(records), len(outbox)) + len(scores))
            self._write_failures += 1
            self._journal.hold()
            return True
        self.written += len(records)
        if outbox:
            self._outbox_committed()
        return True

    def _keep(self, records: list[CallRecord], scores: list[_Score],
              outbox: list[OutboxEntry]) -> bool:
        assert self._buffer is not None
        lost = self._buffer.keep(records, scores, outbox)
        if lost:
            self._drop(f"PostgreSQL is down and the local buffer {self.path} is full or "
                       f"failed", lost)
        return False

    def _outbox_committed(self) -> None:
        for listener in self._outbox_listeners:
            try:
                listener()
            except Exception:  # a listener only wakes a thread; the writer must live on
                log.exception("llm-adapter: outbox commit listener failed")

    def _commit_each(self, conn: Any, items: list[_Stored]) -> None:
        """Commit one by one; a record that fails is made storable (``storable``), and one
        that still fails is dropped alone, logged with its call id and counted (its Langfuse
        outbox row, always storable, is kept)."""
        backend = self._backend
        for item in items:
            batch = _alone(item)
            try:
                backend.retrying(partial(backend.transaction, conn, partial(_insert, conn, *batch)))
                self.written += len(batch[0])
                continue
            except backend.content_errors:
                pass                # made storable below
            except backend.errors as exc:
                self._drop(backend.explain("writing calls", exc))
                continue
            try:
                batch = _alone(_storable_item(item))
                backend.retrying(partial(backend.transaction, conn, partial(_insert, conn, *batch)))
            except (*backend.content_errors, *backend.errors, RecursionError) as exc:  # a cycle
                self._reject(conn, item, exc)
                continue
            self.escaped += 1
            self.written += len(batch[0])
            record = item.record if isinstance(item, _WithOutbox) else item
            if isinstance(record, CallRecord):
                log.warning("llm-adapter: call %s held text that cannot be stored (lone "
                            "surrogates); stored with U+FFFD in their place", record.call_id)

    def _reject(self, conn: Any, item: _Stored, exc: BaseException) -> None:
        self.rejected += 1
        record = item.record if isinstance(item, _WithOutbox) else item
        what = f"call {record.call_id}" if isinstance(record, CallRecord) else \
            f"score {record.name!r} of trace {record.trace_id}" if isinstance(record, _Score) \
            else "a Langfuse outbox row"
        log.warning("llm-adapter: %s not stored in %s: %s: %s (%d record(s) rejected so far; "
                    "please report it as a bug)", what, self.where, type(exc).__name__, exc,
                    self.rejected)
        backend = self._backend
        self._drop(backend.explain("writing calls", exc))
        if isinstance(item, _WithOutbox) and item.record is not None:
            try:        # Langfuse can still have the call: its payload is always storable
                backend.retrying(lambda: backend.transaction(
                    conn, lambda: _insert(conn, [], [], [item.entry])))
            except (*backend.content_errors, *backend.errors) as again:
                log.warning("llm-adapter: the Langfuse outbox row of %s not stored either: %s",
                            what, again)

    # -- reading -------------------------------------------------------------------------------
    def connect(self) -> sqlite3.Connection:
        """A new connection for reading (rows by index and by name, as ``sqlite3.Row``);
        the caller closes it. On PostgreSQL, one that behaves like it (``PgConnection``)."""
        try:
            if not self._migrated:
                self._migrate()
            conn = self._backend.connect()
        except self._backend.errors as exc:
            raise StoreError(self._backend.explain("opening", exc)) from exc
        conn.row_factory = sqlite3.Row
        return conn  # type: ignore[no-any-return]

    def session(self) -> Any:
        """A connection for one short piece of work (pooled on PostgreSQL): a context
        manager; errors of the database come out as they are (see ``errors``)."""
        if not self._migrated:
            self._migrate()
        return self._backend.session()

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """What the database's driver raises when it fails."""
        return tuple(self._backend.errors)

    def get_call(self, call_id: str) -> CallRecord | None:
        """The stored record of one call (with its attempts), or None."""
        with closing(self.connect()) as conn:
            records = read_calls(conn, [call_id])
        return records[0] if records else None

    @contextmanager
    def _session(self, doing: str) -> Iterator[Any]:
        try:
            with self.session() as conn:
                yield conn
        except self._backend.errors as exc:
            raise StoreError(self._backend.explain(doing, exc)) from exc


class _Down(Exception):
    """PostgreSQL cannot be reached now (the writer tries again in a moment)."""




def _flat(items: list[_Item]) -> list[_Item]:
    """Queue items with every ``_Batch`` opened up."""
    out: list[_Item] = []
    for item in items:
        if isinstance(item, _Batch):
            out.extend(item.items)
        else:
            out.append(item)
    return out
