"""Langfuse delivery from the store: the outbox's calls and the spool's span batches.

One ``Delivery`` per Langfuse project and process. It leases the oldest rows (so two processes
on one store never send the same rows at once), POSTs them to the OTLP endpoint and deletes
them only when Langfuse acknowledged them. Nothing waits behind a row Langfuse refuses:

* refused for its content (400, 413, 422): the batch is split in halves until the refused
  spans are alone; only those are quarantined (``traces sync`` lists, retries or drops them);
* anything else (network, 5xx, 429, 401/403): the rows stay and delivery retries with
  exponential backoff (429 honours ``Retry-After``); never quarantined.

It runs on its own thread, woken after each commit of outbox rows and by a retry timer, and
in the caller's thread for ``flush`` and ``llm-adapter traces sync``.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import outbox
from .._breaker import Breaker
from .outbox import OUTBOX, SPOOL, Queue, QueueCounts
from .sqlite import StoreError

if TYPE_CHECKING:
    import httpx

    from .langfuse_spans import SpanBuilder
    from .store import LocalStore
    from .credentials import Credentials

__all__ = ["Delivery", "DeliveryState", "SPOOL_KIND", "state_of"]

log = logging.getLogger("adapters.llm")

SPOOL_KIND = "otlp-traces"
_CONTENT = frozenset({400, 413, 422})     # refused for what the batch holds: split, quarantine
_BATCH_ROWS = 200
_BATCH_BYTES = 4_000_000                  # of payload per request, well under Langfuse's limits
_BACKOFF_FIRST, _RETRY_AFTER_MAX = 0.5, 300.0
_YIELD_EVERY = 4                          # spans built between two hand-overs of the GIL


class _Transient(Exception):
    """Langfuse could not take anything now; retry later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class DeliveryState:
    """What waits for Langfuse: ``ok`` when nothing is pending or quarantined."""

    pending: int
    quarantined: int
    spool_pending: int
    spool_quarantined: int
    last_error: str | None
    sent: int = 0                   # spans this process had acknowledged when it was taken

    @property
    def ok(self) -> bool:
        return not (self.pending or self.quarantined or self.spool_pending
                    or self.spool_quarantined)

    def why(self) -> str:
        parts = [f"{self.pending} call(s) pending", f"{self.quarantined} quarantined"]
        if self.spool_pending or self.spool_quarantined:
            parts.append(f"{self.spool_pending} span batch(es) spooled, "
                         f"{self.spool_quarantined} quarantined")
        if self.last_error:
            parts.append(f"last error: {self.last_error}")
        return "; ".join(parts)


class Delivery:
    """Sends the store's outbox (and spool) to one Langfuse project; see the module doc."""

    def __init__(self, store: LocalStore, credentials: Credentials, builder: SpanBuilder, *,
                 timeout: float = 5.0, retry_interval: float = 10.0,
                 lease_s: float = 60.0, linger: float = 0.25) -> None:
        self.store = store
        self.credentials = credentials
        self.builder = builder
        self.key = credentials.public_key
        self.timeout = timeout
        # Backoff after a failure: 0.5 s, doubled up to retry_interval, jittered.
        self.breaker = Breaker(_BACKOFF_FIRST, max_probe_s=retry_interval, jitter=0.2)
        self.lease_s = lease_s
        # After a wake-up the thread waits this long for more commits, so a busy process sends
        # one request per many calls. Nothing is at risk meanwhile: the rows are committed.
        self.linger = linger
        self.sent = 0                           # spans acknowledged
        self.quarantined = 0                    # spans set aside by this process
        self.last_error: str | None = None
        self._owner = outbox.lease_owner()
        self._pid = os.getpid()
        self._headers = {**credentials.headers(), "Content-Type": "application/x-protobuf",
                         "Content-Encoding": "gzip"}
        self._round_lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the thread ------------------------------------------------------------------------
    def start(self) -> None:
        """Deliver from a thread from now on, the backlog of earlier processes first."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="llm-adapter-langfuse",
                                            daemon=True)
            self._thread.start()
            self._wake.set()

    def wake(self) -> None:
        """Something was committed to the outbox (or spooled): deliver when allowed."""
        if self._pid != os.getpid():        # a forked child: its own lease and thread
            self._pid, self._owner = os.getpid(), outbox.lease_owner()
            self._round_lock = threading.Lock()
            self._client = None
            if self._thread is not None and not self._stop.is_set():
                self._thread = None
                self.start()
        self._wake.set()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (after its current request), join it, close the HTTP client."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("llm-adapter: Langfuse delivery did not stop within %.0f s; what "
                            "it had not sent stays in the store", timeout)
        with self._round_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _run(self) -> None:
        kept = contextlib.ExitStack()   # the thread's own store session, kept between rounds
        conn: Any = None
        try:
            while not self._stop.is_set():
                wait = self.breaker.retry_in()
                self._wake.wait(wait if wait > 0 else self.retry_interval)
                self._wake.clear()
                if self._stop.is_set() or self.breaker.retry_in() > 0:
                    continue                    # in backoff: a commit does not hammer Langfuse
                if self._stop.wait(self.linger):
                    break
                try:
                    if conn is None:
                        conn = kept.enter_context(self.store.session())
                    # What came in while a batch was sent waits for the next wake-up and
                    # linger: one request per many calls, not one per few.
                    self.deliver(conn=conn, drain=False)
                except (StoreError, *self.store.errors) as exc:  # type: ignore[misc]  # gone, locked, down
                    conn = None
                    kept.close()
                    self._back_off(None, f"cannot read the outbox in {self.store.where}: {exc}")
                except Exception:  # the thread must outlive a bug; logged with its traceback
                    log.exception("llm-adapter: Langfuse delivery failed")
                    self._back_off(None, "delivery failed (see the log)")
        finally:
            kept.close()

    # -- delivering ------------------------------------------------------------------------
    @property
    def down(self) -> bool:
        """The last attempt failed transiently (spans are then spooled, not waited on)."""
        return not self.breaker.closed

    def deliver(self, deadline: float | None = None, *, conn: Any = None,
                drain: bool = True) -> bool:
        """Send until nothing is left (``drain``; else until a batch that was not full), a
        transient failure or ``deadline`` (monotonic); True when the last attempt got through
        (or there was nothing to send). ``conn``: a connection to use (else one for this
        call)."""
        end = float("inf") if deadline is None else deadline
        if not self._round_lock.acquire(timeout=max(end - time.monotonic(), 0.0)
                                        if deadline is not None else -1):
            return False
        try:
            with self.store.session() if conn is None else contextlib.nullcontext(conn) as db:
                for queue in (OUTBOX, SPOOL):
                    outbox.expire_dead_leases(db, queue, time.time())
                while time.monotonic() < end and not self._stop.is_set():
                    taken = self._round(db, OUTBOX, self.key, end)
                    if taken and (drain or taken >= _BATCH_ROWS):
                        continue
                    if not self._round(db, SPOOL, SPOOL_KIND, end) or not drain:
                        break
            self._recovered()
            return True
        except _Transient as exc:
            self._back_off(exc)
            return False
        finally:
            self._round_lock.release()

    def state(self) -> DeliveryState:
        return state_of(self.store, self.key, self.last_error, self.sent)

    def _round(self, conn: Any, queue: Queue, key: str, end: float) -> int:
        """One leased batch; how many rows it took (0: nothing to take)."""
        rows = outbox.take(conn, queue, key, owner=self._owner, lease_s=self.lease_s,
                           limit=_BATCH_ROWS if queue is OUTBOX else 1, max_bytes=_BATCH_BYTES)
        if not rows:
            return 0
        open_ids = {row_id for row_id, _ in rows}
        try:
            if queue is OUTBOX:
                self._send_calls(conn, rows, open_ids, end)
            else:
                self._send_spooled(conn, rows[0], open_ids)
        except _Transient as exc:
            outbox.release(conn, queue, sorted(open_ids), str(exc), owner=self._owner)
            raise
        return len(rows)

    def _send_calls(self, conn: Any, rows: Sequence[tuple[int, Any]],
                    open_ids: set[int], end: float) -> None:
        built: list[tuple[int, Any]] = []
        for n, (row_id, payload) in enumerate(rows):
            # A span holds the GIL ~0.1 ms (~1 ms through the SDK): hand it over every few,
            # so the recorder and the store's writer (the durability window) never wait on a
            # batch.
            if n % _YIELD_EVERY == 0:
                time.sleep(0)
            try:
                built.append((row_id, self.builder.build(payload)))
            except (ValueError, TypeError, KeyError) as exc:  # no span can be made of it
                log.exception("llm-adapter: outbox row %d cannot be made a Langfuse span",
                              row_id)
                self._quarantine(conn, OUTBOX, [row_id], f"cannot be built: {exc}"[:300],
                                 open_ids)
            except RuntimeError as exc:     # the process is ending: the row waits, untouched
                raise _Transient(f"cannot build spans now ({exc})") from None

        def send(part: list[tuple[int, Any]]) -> None:
            if time.monotonic() - started > self.lease_s / 3:
                outbox.renew(conn, OUTBOX, sorted(open_ids), owner=self._owner,
                             lease_s=self.lease_s)
            refused = self._post(self.builder.request([s for _, s in part]))
            ids = [row_id for row_id, _ in part]
            if refused is None:
                outbox.ack(conn, OUTBOX, ids)
                open_ids.difference_update(ids)
                self.sent += len(ids)
            elif len(part) == 1:
                self._quarantine(conn, OUTBOX, ids, refused, open_ids)
            else:                               # bisect: the mates of a refused span go on
                middle = len(part) // 2
                send(part[:middle])
                send(part[middle:])

        started = time.monotonic()
        if built:
            send(built)

    def _send_spooled(self, conn: Any, row: tuple[int, Any],
                      open_ids: set[int]) -> None:
        row_id, payload = row
        refused = self._post(bytes(payload))
        if refused is None:
            outbox.ack(conn, SPOOL, [row_id])
            self.sent += 1
        else:
            halves = _halves(bytes(payload))
            if halves is None:
                self._quarantine(conn, SPOOL, [row_id], refused, set())
            else:                               # split in the store: the halves go next
                outbox.split(conn, SPOOL, row_id, halves)
        open_ids.clear()

    def _quarantine(self, conn: Any, queue: Queue, ids: list[int],
                    reason: str, open_ids: set[int]) -> None:
        outbox.quarantine(conn, queue, ids, reason)
        open_ids.difference_update(ids)
        self.quarantined += len(ids)
        log.warning("llm-adapter: Langfuse refused %d span(s) for their content (%s); they "
                    "are quarantined in %s and nothing else waits for them (`llm-adapter "
                    "traces sync` lists them; --retry-quarantined, --drop)", len(ids), reason,
                    self.store.where)

    def _post(self, body: bytes) -> str | None:
        """POST one OTLP request: None when acknowledged, the reason when refused for its
        content; raises ``_Transient`` otherwise."""
        import httpx

        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout)
        try:
            response = self._client.post(self.credentials.endpoint,
                                         content=gzip.compress(body, compresslevel=1),
                                         headers=self._headers)
        except httpx.HTTPError as exc:
            raise _Transient(f"cannot reach Langfuse at {self.credentials.base_url}: "
                             f"{type(exc).__name__}: {exc}") from None
        status = response.status_code
        if status < 300:
            return None
        detail = response.text[:200].strip()
        if status in _CONTENT:
            return f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
        if status in (401, 403):
            raise _Transient(f"Langfuse refused the keys (HTTP {status}): check "
                             f"LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY and LANGFUSE_BASE_URL")
        retry_after = _retry_after(response.headers.get("Retry-After")) if status == 429 \
            else None
        raise _Transient(f"Langfuse answered HTTP {status}" + (f": {detail}" if detail else ""),
                         retry_after)

    @property
    def retry_interval(self) -> float:
        """The longest backoff, and the idle check's period."""
        return self.breaker.max_probe_s or 0.0

    @retry_interval.setter
    def retry_interval(self, seconds: float) -> None:
        self.breaker.max_probe_s = seconds

    def _back_off(self, exc: _Transient | None, why: str = "") -> None:
        retry_after = None if exc is None or exc.retry_after is None \
            else min(exc.retry_after, _RETRY_AFTER_MAX)
        self.breaker.failed(retry_after)
        message = str(exc) if exc is not None else why
        if exc is None and self.breaker.failures == 1:
            log.warning("llm-adapter: Langfuse delivery paused: %s; retrying with backoff",
                        message)
        elif self.breaker.failures == 1:
            log.warning("llm-adapter: Langfuse did not take the traces (%s); they stay in the "
                        "store %s and are retried with backoff (`llm-adapter traces sync` "
                        "sends now)", message, self.store.where)
        self.last_error = message

    def _recovered(self) -> None:
        if not self.breaker.closed:
            log.warning("llm-adapter: Langfuse reachable again; delivering what the store kept")
        self.breaker.succeeded()
        self.last_error = None


def state_of(store: LocalStore, key: str, last_error: str | None = None,
             sent: int = 0) -> DeliveryState:
    """What the store holds for the Langfuse project ``key``: pending and quarantined."""
    with store.session() as conn:
        calls = outbox.counts(conn, OUTBOX, key)
        spool = outbox.counts(conn, SPOOL, SPOOL_KIND)
    return _state(calls, spool, last_error, sent)


def _state(calls: QueueCounts, spool: QueueCounts, error: str | None,
           sent: int) -> DeliveryState:
    return DeliveryState(calls.pending, calls.quarantined, spool.pending, spool.quarantined,
                         error or calls.last_error or spool.last_error, sent)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            return None


def _halves(payload: bytes) -> list[bytes] | None:
    """An OTLP request cut in two by its spans, or None when it holds one span (or is not
    an OTLP request at all)."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest)

    try:
        request = ExportTraceServiceRequest.FromString(payload)
    except DecodeError:
        return None
    flat = [(i, j, k) for i, rs in enumerate(request.resource_spans)
            for j, ss in enumerate(rs.scope_spans) for k in range(len(ss.spans))]
    if len(flat) < 2:
        return None

    def part(items: list[tuple[int, int, int]]) -> bytes:
        out = ExportTraceServiceRequest()
        where: dict[tuple[int, int], Any] = {}
        resources: dict[int, Any] = {}
        for i, j, k in items:
            source = request.resource_spans[i]
            if i not in resources:
                resources[i] = out.resource_spans.add()
                resources[i].resource.CopyFrom(source.resource)
                resources[i].schema_url = source.schema_url
            if (i, j) not in where:
                where[(i, j)] = resources[i].scope_spans.add()
                where[(i, j)].scope.CopyFrom(source.scope_spans[j].scope)
                where[(i, j)].schema_url = source.scope_spans[j].schema_url
            where[(i, j)].spans.add().CopyFrom(source.scope_spans[j].spans[k])
        return out.SerializeToString()

    middle = len(flat) // 2
    return [part(flat[:middle]), part(flat[middle:])]


def sync_all(delivery: Delivery, *, retry_quarantined: bool = False) -> DeliveryState:
    """Everything the store holds for this project, now (``llm-adapter traces sync``)."""
    if retry_quarantined:
        with delivery.store.session() as conn:
            outbox.retry_quarantined(conn, OUTBOX, delivery.key)
            outbox.retry_quarantined(conn, SPOOL, SPOOL_KIND)
    delivery.deliver()
    return delivery.state()
