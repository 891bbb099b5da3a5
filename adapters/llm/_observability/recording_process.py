"""Recording in a process of its own: the calling process keeps only masking and a pipe write.

Why: in one process the store's writer, the Langfuse delivery and their hand-overs run on the
calls' interpreter and take its GIL from them, ~1-2 ms of CPU per call against a 5 % budget
(bench/README.md). So the recorder thread here masks each batch (patient data never leaves the
process unmasked) and writes it, pickled, to the stdin of a child process of its own session
(``recording_child``): once ``os.write`` returned, the bytes outlive this process, SIGKILL
included. The child journals and commits them (``LocalStore``), delivers them to Langfuse
(``Delivery``) on the machine's other cores, and ends when the pipe closes, after committing
what it holds.

The child's replies come back on its stdout (``recording_wire``): "took" once a batch is in the
child's journal (this side drops its copy), flush, state and close results, and the child's log
lines, logged here through the application's logging. A child that dies is started again and
handed the batches it had not taken (the store is idempotent on call ids, so a batch taken
twice is stored once); one that cannot start, or dies three times within a minute, gives way to
recording in this process (``local``), said once in a warning.
"""

from __future__ import annotations

import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from .._process.fork import reset_in_child
from .recording import Sink, hand_over
from .recording_child import RecordingSpec
from .recording_wire import Frames, decode, encode, encode_batch

__all__ = ["RecordingProcess"]

log = logging.getLogger("adapters.llm")

_DEATHS, _DEATHS_S = 3, 60.0    # this many children lost within this long: record here instead
_STUCK_S = 30.0             # a child that takes no bytes this long is stuck: started again
_REPLY_MARGIN_S = 0.25      # of a flush's time, left for the child's answer to arrive
_UNACKED_READ, _READ_EVERY_S = 32, 0.1  # the replies are read at this many batches or this often
_CHILD = "from adapters.llm._observability.recording_child import main; main()"
_ROOT = str(Path(__file__).resolve().parents[3])    # where ``adapters`` is imported from


class _Gone(Exception):
    """The recording process cannot take bytes: it ended, or is stuck."""


class RecordingProcess:
    """A sink that hands each batch to the recording process (see the module doc).

    ``local`` builds the in-process sinks to record with if the child cannot; ``before_flush``
    runs first in every flush (the SDK's ``llm.trace`` spans of this process)."""

    name = "store"

    def __init__(self, spec: RecordingSpec, *, local: Callable[[], list[Sink]],
                 before_flush: Callable[[], object] | None = None) -> None:
        self.spec = spec
        self.wants_masked = spec.masked if spec.keep_calls else True
        self.failures: dict[str, int] = {}
        self.pid: int | None = None         # the child's, once it said it is ready
        self._local_factory = local
        self._local: list[Sink] | None = None
        self._before_flush = before_flush
        self._write_lock = threading.RLock()
        self._read_lock = threading.Lock()
        self._seq = 0
        self._unacked: dict[int, bytes] = {}    # batches not yet in the child's journal
        self._results: dict[int, Any] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._frames: Frames | None = None
        self._failed: str | None = None         # the child could not open the store
        self._deaths: list[float] = []          # when children were lost (monotonic)
        self._read_at = 0.0                     # when the replies are read next, at the latest
        self._closed = False
        reset_in_child(self, RecordingProcess._forget)
        with self._write_lock:
            self._send(None)

    # -- the sink --------------------------------------------------------------------------
    def emit_batch(self, pairs: list[tuple[Any, Any]]) -> None:
        """Write the batch to the child; never waits on the child's work, only on the pipe."""
        with self._write_lock:
            local = self._local
            if self._closed:        # the end of the process: the recorder counts what is late
                raise RuntimeError("the recording process was closed")
            if local is None:       # a fall-back on the way hands this batch over itself
                self._seq += 1
                frame = encode_batch(self._seq, pairs)
                self._unacked[self._seq] = frame
                self._send(frame, batch=True)
        if local is not None:
            hand_over(local, [(m, c) for c, m in pairs], self.failures)
            return
        self._replies()

    def emit_now(self, record: Any, masked: Any) -> bool:
        """Write one record's batch now if that cannot wait: a live child, the pipe free (no
        other writer) and room for the whole frame in one atomic write (``PIPE_BUF``). False:
        nothing was written, queue it for the thread."""
        if self._proc is None or self._local is not None or self._closed:
            return False
        if not self._write_lock.acquire(blocking=False):
            return False
        try:
            proc = self._proc
            if proc is None or proc.stdin is None or self._local is not None or self._closed:
                return False
            frame = encode_batch(self._seq + 1, [(record, masked)])
            if len(frame) > select.PIPE_BUF:
                return False
            try:
                os.write(proc.stdin.fileno(), frame)        # all of it, or nothing
            except OSError:                 # full (or gone: the thread's way finds out)
                return False
            self._seq += 1
            self._unacked[self._seq] = frame
        finally:
            self._write_lock.release()
        self._replies()
        return True

    def emit_pair(self, record: Any, masked: Any) -> None:
        self.emit_batch([(record, masked)])

    def emit(self, record: Any) -> None:
        self.emit_batch([(record, record)])

    def flush(self, timeout: float) -> bool:
        """Everything handed over so far committed, and delivered to Langfuse, by the child."""
        deadline = time.monotonic() + timeout
        if self._before_flush is not None:
            self._before_flush()
        left = max(deadline - time.monotonic(), 0.0)
        result = self._ask("flush", left, max(left - _REPLY_MARGIN_S, 0.0))
        if self._local is not None:
            left = max(deadline - time.monotonic(), 0.0)
            return all([bool(sink.flush(left)) for sink in self._local])
        return bool(result)

    def state(self) -> Any:
        """The child's Langfuse delivery state (None: it could not say)."""
        return None if self._local is not None else self._ask("state", 5.0)

    def close(self, timeout: float = 5.0) -> bool:
        """Commit what the child holds, stop it and wait for its end. Safe to call twice."""
        from .sinks import close_parts

        with self._write_lock:
            if self._closed:
                return True
        deadline = time.monotonic() + timeout
        ok = bool(self._ask("close", timeout + 2.0, timeout))
        with self._write_lock:
            self._closed = True
            local, proc = self._local, self._proc
        if local is not None:
            return close_parts(local, [], deadline)
        if proc is not None:
            try:
                proc.wait(max(deadline + 2.0 - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("llm-adapter: the recording process (pid %d) did not end in time; "
                            "it goes on committing on its own", proc.pid)
                ok = False
            self._drop_child(kill=False)
        return ok

    # -- the child -------------------------------------------------------------------------
    def _ask(self, kind: str, timeout: float, *args: Any) -> Any:
        """Send a request and wait for its answer (None: no answer in time, or recording
        fell back to this process)."""
        deadline = time.monotonic() + timeout
        with self._write_lock:
            if self._local is not None or self._closed:
                return None
            self._seq += 1
            seq = self._seq
            frame = encode((kind, seq, *args))
            self._send(frame)
        while True:
            if seq in self._results:
                return self._results.pop(seq)
            if self._local is not None:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            frames = self._frames
            if frames is None or frames.ended or self._failed:
                with self._write_lock:      # it died meanwhile: ask the next one again
                    if self._frames is frames:
                        self._lost("it ended" if not self._failed else self._failed)
                    if self._local is not None:
                        return None
                    self._send(frame)
                continue
            self._pump(min(left, 0.05))

    def _send(self, frame: bytes | None, *, batch: bool = False) -> None:
        """Write ``frame`` to a live child, starting one (and handing it every batch not yet
        taken) where needed; falls back to ``local`` when children keep failing. Holds the
        write lock."""
        while self._local is None:
            try:
                if self._proc is None:
                    self._start()
                    if batch or self._local is not None:
                        return      # it was among the batches the new child (or local) got
                if frame is not None:
                    self._write(frame)
                return
            except _Gone as exc:
                self._lost(str(exc))

    def _start(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)}
        env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        if not sys.executable:
            self._fall_back("cannot be started: this interpreter does not know its executable")
            return
        try:
            proc = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, env=env, start_new_session=True)
        except OSError as exc:
            self._fall_back(f"cannot be started: {exc}")
            return
        assert proc.stdin is not None and proc.stdout is not None
        os.set_blocking(proc.stdin.fileno(), False)
        os.set_blocking(proc.stdout.fileno(), False)
        self._proc, self._frames = proc, Frames(proc.stdout.fileno())
        self._write(encode(("spec", self.spec)))
        for pending in list(self._unacked.values()):
            self._write(pending)

    def _write(self, frame: bytes) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        fd = proc.stdin.fileno()
        view = memoryview(frame)
        stuck_at = time.monotonic() + _STUCK_S
        while view:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                if time.monotonic() > stuck_at:
                    raise _Gone(f"took nothing for {_STUCK_S:.0f} s") from None
                self._pump(0.0)
                select.select([], [fd], [], 0.05)
            except OSError as exc:
                raise _Gone(f"ended ({exc.strerror or exc})") from None

    def _replies(self) -> None:
        """After a batch: read the child's replies once enough may have come (its "took"s, to
        drop the batches' copies; its log lines), not after every batch: a read finding
        nothing costs a call as much as masking it."""
        if len(self._unacked) < _UNACKED_READ and time.monotonic() < self._read_at:
            return
        self._read_at = time.monotonic() + _READ_EVERY_S
        self._pump(0.0)

    def _pump(self, timeout: float) -> None:
        """Read the child's replies that have arrived (waiting up to ``timeout`` for one)."""
        got = self._read_lock.acquire(timeout=timeout) if timeout > 0 else \
            self._read_lock.acquire(blocking=False)
        if not got:
            return
        try:
            frames = self._frames
            if frames is None or frames.ended:
                return
            if timeout > 0:
                select.select([frames.fd], [], [], timeout)
            while True:
                messages = frames.read()
                if not messages:
                    break
                for message in messages:
                    self._dispatch(message)
        finally:
            self._read_lock.release()

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "took":
            for seq in message[1:]:
                self._unacked.pop(seq, None)
        elif kind == "log":
            logging.getLogger(message[1]).log(message[2], "%s", message[3])
        elif kind == "ready":
            self.pid = message[1]
        elif kind == "failed":
            self._failed = f"could not open the store: {message[1]}"
        else:
            self._results[message[1]] = message[2]

    def _lost(self, why: str) -> None:
        """The child is gone (or will not do): start another, or record here."""
        if self._local is not None:
            return
        self._drop_child(kill=True)
        now = time.monotonic()
        self._deaths = [t for t in self._deaths if t > now - _DEATHS_S] + [now]
        if self._failed or len(self._deaths) >= _DEATHS:
            self._fall_back(self._failed or f"{why}, {len(self._deaths)} times in a minute")
        else:
            log.warning("llm-adapter: the recording process %s; starting another", why)

    def _fall_back(self, why: str) -> None:
        if self._local is not None:
            return
        log.warning("llm-adapter: calls are recorded in this process from now on: the "
                    "recording process %s", why)
        self._drop_child(kill=True)
        self._local = self._local_factory()
        for frame in list(self._unacked.values()):
            pairs = decode(frame)[2]
            hand_over(self._local, [(m, c) for c, m in pairs], self.failures)
        self._unacked.clear()

    def _drop_child(self, *, kill: bool) -> None:
        proc, self._proc, self._frames = self._proc, None, None
        if proc is None:
            return
        if kill and proc.poll() is None:
            proc.kill()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with suppress(OSError):      # the child was gone before its pipe was flushed
                    pipe.close()
        if kill:
            proc.wait()

    def _forget(self) -> None:
        """In a forked child: the parent's recording process is not ours to write to (its
        telemetry starts its own); close our copies of its pipes so that it sees its parent
        end."""
        proc, self._proc, self._frames = self._proc, None, None
        self._write_lock, self._read_lock = threading.RLock(), threading.Lock()
        self._local, self._closed = [], True
        if proc is not None:
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    with suppress(OSError):
                        pipe.close()
            proc.returncode = 0         # not ours to wait for
