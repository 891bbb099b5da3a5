"""Messages between the calling process and its recording process, over a pair of pipes.

A message is a tuple, pickled (both ends are this package, and the pipes are private to the
two processes: nothing else can write to them), behind its length as 4 bytes. A frame torn by
the writer's death is never decoded: ``Frames.next`` waits for whole frames only. Records
travel as their class and field values (half the bytes and half the time of pickle's
default for a slotted dataclass, which names every field and builds its state in Python).

Parent → child: ``("spec", RecordingSpec)`` first, then ``("batch", seq, [(record, masked)])``,
``("flush", seq, timeout)``, ``("state", seq)``, ``("close", seq, timeout)``.
Child → parent: ``("ready", pid)`` or ``("failed", why)``, ``("took", seq)`` once a batch is in
the child's journal, ``("flushed" | "state" | "closed", seq, result)``, and
``("log", logger, level, text)`` for the child's log lines.
"""

from __future__ import annotations

import dataclasses
import io
import operator
import os
import pickle
import struct
from collections.abc import Callable
from typing import Any

from .records import Attempt, CallRecord, Usage

__all__ = ["Frames", "encode"]

_HEAD = struct.Struct(">I")


def _values_of(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    return operator.attrgetter(*(f.name for f in dataclasses.fields(cls)))


_VALUES = {cls: _values_of(cls) for cls in (CallRecord, Attempt, Usage)}


def _flat(obj: Any) -> tuple[type, tuple[Any, ...]]:
    """``obj`` rebuilt as ``cls(*values)``: every field is an ``__init__`` argument."""
    return type(obj), _VALUES[type(obj)](obj)


class _Pickler(pickle.Pickler):
    dispatch_table = {cls: _flat for cls in _VALUES}


def encode(message: tuple[Any, ...]) -> bytes:
    out = io.BytesIO()
    out.write(b"\0" * _HEAD.size)
    _Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(message)
    frame = out.getbuffer()
    _HEAD.pack_into(frame, 0, len(frame) - _HEAD.size)
    del frame
    return out.getvalue()


class Frames:
    """Whole messages out of a byte stream, however the reads cut it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = bytearray()
        self.ended = False              # the other end closed its side

    def read(self) -> list[tuple[Any, ...]]:
        """What one ``os.read`` brought, decoded (a non-blocking fd with nothing: ``[]``)."""
        try:
            chunk = os.read(self.fd, 1 << 20)
        except BlockingIOError:
            return []
        except OSError:
            chunk = b""
        if not chunk:
            self.ended = True
            return []
        self._buffer += chunk
        return self._whole()

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
                chunk = os.read(self.fd, 1 << 20)
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
        while len(buffer) - offset >= _HEAD.size and (limit is None or len(out) < limit):
            (size,) = _HEAD.unpack_from(buffer, offset)
            end = offset + _HEAD.size + size
            if len(buffer) < end:
                break
            out.append(pickle.loads(buffer[offset + _HEAD.size:end]))
            offset = end
        del buffer[:offset]
        return out
