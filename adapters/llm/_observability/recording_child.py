"""The recording process: commits the calling process's masked records and delivers them.

Started by ``RecordingProcess`` (see there for why) in a session of its own, so the signals
sent to the application's terminal or process group are not its own: it ends when its parent
closes the pipe, whether by ``close`` or by dying, after committing everything it was handed
and giving Langfuse its share of the time (what Langfuse did not take stays in the store's
outbox for the next process or ``llm-adapter traces sync``). Its stdout carries replies only:
anything else printing there is sent to stderr.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from .credentials import Credentials
from .recording_wire import Frames, encode

__all__ = ["RecordingSpec", "main"]

_CLOSE_TIMEOUT = 10.0       # an ended parent's records: the store's commit and Langfuse's share
_LOG_BACKLOG = 1_000        # log lines waiting for the parent beyond this go to stderr
_LINGER = 0.05              # the store's writer gathers journaled records this long per commit
_GATHER = 0.01              # after handing batches over, the pipe gathers the next this long
_POLL_S = 1.0               # after a batch, the pipe is looked at (not waited on) this long


@dataclass(frozen=True)
class RecordingSpec:
    """What the recording process records to: the same store and Langfuse project as the
    calling process's config."""

    path: str                           # the SQLite file (with ``url``: the local buffer)
    url: str | None
    keep_calls: bool
    masked: bool                        # the store keeps masked records (else secrets-only)
    langfuse: Credentials | None
    environment: str
    default_tags: tuple[str, ...]
    sample_rate: float | None
    log_level: int

    def build(self) -> tuple[Any, list[Any]]:
        """The store and the sinks, as the calling process would have them."""
        from .sinks import record_sinks
        from .store import LocalStore
        from .tracing import LangfuseSink

        store = LocalStore(self.path, url=self.url, linger=_LINGER)
        store.start()
        langfuse = None
        if self.langfuse is not None:
            langfuse = LangfuseSink(self.langfuse, environment=self.environment, store=store,
                                    default_tags=self.default_tags, sample_rate=self.sample_rate)
        return store, record_sinks(store, langfuse, keep_calls=self.keep_calls,
                                   masked=self.masked)


class _Replies:
    """Replies to the parent from one thread, so no other thread waits on a full pipe."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._queue: queue.Queue[bytes | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="llm-adapter-replies",
                                        daemon=True)
        self._thread.start()

    def send(self, message: tuple[Any, ...]) -> None:
        self._queue.put(encode(message))

    def log(self, record: logging.LogRecord) -> None:
        if self._queue.qsize() > _LOG_BACKLOG:      # the parent is not reading: keep it here
            print(f"{record.name}: {record.getMessage()}", file=sys.stderr)
            return
        self.send(("log", record.name, record.levelno, record.getMessage()))

    def close(self, timeout: float) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (frame := self._queue.get()) is not None:
            view = memoryview(frame)
            try:
                while view:
                    view = view[os.write(self._fd, view):]
            except OSError:
                return                  # the parent is gone: nobody to tell


class _Forward(logging.Handler):
    def __init__(self, replies: _Replies) -> None:
        super().__init__()
        self.replies = replies

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.replies.log(record)
        except Exception:  # a log line must not take the recording down
            self.handleError(record)


def main() -> None:
    """Serve one parent until its pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the parent says when to end
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    frames = Frames(os.dup(0))
    reply_fd = os.dup(1)
    os.dup2(2, 1)                   # a stray print must not corrupt the replies
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    replies = _Replies(reply_fd)
    try:
        _serve(frames, replies)
    finally:
        replies.close(5.0)


def _serve(frames: Frames, replies: _Replies) -> None:
    from .._process.collector import freeze_long_lived
    from .sinks import close_parts

    first = frames.next()
    if first is None or first[0] != "spec":
        return
    spec: RecordingSpec = first[1]
    root = logging.getLogger()
    root.handlers[:] = [_Forward(replies)]
    root.setLevel(logging.WARNING)
    logging.getLogger("adapters.llm").setLevel(spec.log_level)
    try:
        store, sinks = spec.build()
    except Exception as exc:  # the parent records in its own process instead, and says why
        replies.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    freeze_long_lived()             # the SDK, the store: they live as long as this process
    replies.send(("ready", os.getpid()))
    failures: dict[str, int] = {}
    polling_until = 0.0
    while True:
        if time.monotonic() < polling_until and not frames.ready():
            # While batches keep coming, look at the pipe every _GATHER instead of waiting in
            # a read: the caller's write that wakes a waiting read pays for the wake-up with
            # its own CPU, 10-30 us more a call than a write to nobody waiting.
            time.sleep(_GATHER)
            continue
        messages = frames.available()
        if not messages:
            break
        # The batches that arrived together are handed over as one: one journal write and
        # one commit for what the caller wrote record by record.
        pairs: list[tuple[Any, Any]] = []
        took: list[int] = []
        for message in messages:
            if message[0] == "batch":
                pairs += [(masked, chosen) for chosen, masked in message[2]]
                took.append(message[1])
                continue
            _hand(sinks, pairs, took, failures, replies)
            if not _answer(message, sinks, store, replies):
                return
        gathered = bool(took)
        _hand(sinks, pairs, took, failures, replies)
        if gathered:
            # The next batches gather in the pipe, where they are safe from the caller's
            # death already, and are taken together.
            polling_until = time.monotonic() + _POLL_S
            time.sleep(_GATHER)
    close_parts(sinks, [store], time.monotonic() + _CLOSE_TIMEOUT)    # the parent ended


def _hand(sinks: list[Any], pairs: list[tuple[Any, Any]], took: list[int],
          failures: dict[str, int], replies: _Replies) -> None:
    from .recording import hand_over

    if took:
        hand_over(sinks, pairs, failures)
        replies.send(("took", *took))       # one reply for the batches taken together
        pairs.clear()
        took.clear()


def _answer(message: tuple[Any, ...], sinks: list[Any], store: Any, replies: _Replies) -> bool:
    """Answer a request; False once told to close."""
    from .sinks import close_parts

    kind, seq = message[0], message[1]
    if kind == "flush":             # may take seconds (Langfuse): the batches keep coming in
        threading.Thread(target=_flush, args=(sinks, seq, message[2], replies),
                         daemon=True).start()
    elif kind == "state":
        replies.send(("state", seq, _state(sinks)))
    elif kind == "close":
        ok = close_parts(sinks, [store], time.monotonic() + message[2])
        replies.send(("closed", seq, ok))
        return False
    return True


def _flush(sinks: list[Any], seq: int, timeout: float, replies: _Replies) -> None:
    deadline = time.monotonic() + timeout
    ok = True
    for sink in sinks:
        try:
            ok = bool(sink.flush(max(deadline - time.monotonic(), 0.0))) and ok
        except Exception:  # said to the parent as a failed flush, with the reason logged
            logging.getLogger("adapters.llm").exception("llm-adapter: the %s sink failed to "
                                                        "flush", sink.name)
            ok = False
    replies.send(("flushed", seq, ok))


def _state(sinks: list[Any]) -> Any:
    for sink in sinks:
        langfuse = getattr(sink, "langfuse", None) or (sink if sink.name == "langfuse" else None)
        if langfuse is not None:
            return langfuse.state()
    return None


if __name__ == "__main__":
    main()
