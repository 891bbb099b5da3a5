"""Messages between the calling process and its recording process, over a pair of pipes.

A message is a tuple, pickled (both ends are this package, and the pipes are private to the
two processes: nothing else can write to them), behind its length as 4 bytes. A frame torn by
the writer's death is never decoded: ``Frames.next`` waits for whole frames only. Records
travel as their plain values (``record_values``): pickle's default for a slotted dataclass
names every field and builds its state in Python, and a reducer of our own is a call back
into Python for every record, attempt and usage (on the calling path, with the caches cold,
88 µs a record against 35 for the plain values).

Parent → child: ``("spec", RecordingSpec)`` first, then ``("batch", seq, [(record, masked)])``,
``("flush", seq, timeout)``, ``("state", seq)``, ``("close", seq, timeout)``.
Child → parent: ``("ready", pid)`` or ``("failed", why)``, ``("took", seq, ...)`` once those
batches are in the child's journal, ``("flushed" | "state" | "closed", seq, result)``, and
``("log", logger, level, text)`` for the child's log lines.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
from typing import Any

from .record_values import plain_values, record_of
from .records import CallRecord

__all__ = ["Frames", "decode", "encode", "encode_batch"]

_HEAD = struct.Struct(">I")
# Bytes asked of one read: a pipe's default capacity. ``os.read`` allocates what it is asked
# for before reading: a mebibyte is mapped and unmapped on every read (about 100 µs a look at
# the pipe in the recording process, most of its frame reading), though a batch is ~400 bytes.
# A longer frame takes several reads.
_READ = 1 << 16


def _framed(message: tuple[Any, ...]) -> bytes:
    body = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
    return _HEAD.pack(len(body)) + body


def encode(message: tuple[Any, ...]) -> bytes:
    """A message that holds no records (for a batch: ``encode_batch``)."""
    return _framed(message)


def encode_batch(seq: int, pairs: list[tuple[CallRecord, CallRecord]]) -> bytes:
    """``("batch", seq, [(chosen, masked), ...])``; a pair whose two versions are one object
    sends it once (and arrives as one object)."""
    return _framed(("batch", seq, [(plain_values(chosen),
                                    None if masked is chosen else plain_values(masked))
                                   for chosen, masked in pairs]))


def decode(frame: bytes | bytearray) -> tuple[Any, ...]:
    """The message of one whole frame (``encode``'s or ``encode_batch``'s), records rebuilt."""
    return _decoded(pickle.loads(frame[_HEAD.size:]))


def _decoded(message: tuple[Any, ...]) -> tuple[Any, ...]:
    if message[0] != "batch":
        return message
    pairs = []
    for chosen, masked in message[2]:
        record = record_of(chosen)
        pairs.append((record, record if masked is None else record_of(masked)))
    return ("batch", message[1], pairs)


class Frames:
    """Whole messages out of a byte stream, however the reads cut it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = bytearray()
        self.ended = False              # the other end closed its side

    def read(self) -> list[tuple[Any, ...]]:
        """What one ``os.read`` brought, decoded (a non-blocking fd with nothing: ``[]``)."""
        try:
            chunk = os.read(self.fd, _READ)
        except BlockingIOError:
            return []
        except OSError:
            chunk = b""
        if not chunk:
            self.ended = True
            return []
        self._buffer += chunk
        return self._whole()

    def ready(self) -> bool:
        """Whether a whole message, or bytes for one, can be had without waiting."""
        return _frame_end(self._buffer, 0) is not None or self.ended \
            or bool(select.select([self.fd], [], [], 0)[0])

    def next(self) -> tuple[Any, ...] | None:
        """The next message from a blocking fd; None once the other end closed."""
        got = self.available(limit=1)
        return got[0] if got else None

    def available(self, limit: int | None = None) -> list[tuple[Any, ...]]:
        """Every whole message that has arrived (waiting for one on a blocking fd); ``[]``
        once the other end closed."""
        while True:
            whole = self._whole(limit=limit)
            if whole:
                return whole
            if self.ended:
                return []
            try:
                chunk = os.read(self.fd, _READ)
            except OSError:
                chunk = b""
            if not chunk:
                self.ended = True
                return []           # a torn last frame is dropped with the writer
            self._buffer += chunk

    def _whole(self, limit: int | None = None) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        buffer = self._buffer
        offset = 0
        while limit is None or len(out) < limit:
            end = _frame_end(buffer, offset)
            if end is None:
                break
            out.append(decode(buffer[offset:end]))
            offset = end
        del buffer[:offset]
        return out


def _frame_end(buffer: bytearray, offset: int) -> int | None:
    """Where the frame at ``offset`` ends, once all of it is in ``buffer`` (else None)."""
    if len(buffer) - offset < _HEAD.size:
        return None
    (size,) = _HEAD.unpack_from(buffer, offset)
    end = offset + _HEAD.size + size
    return end if len(buffer) >= end else None
