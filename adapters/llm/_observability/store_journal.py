"""The store's journal: the calls its writer was handed and has not committed yet, in a file of
this process, so a process killed outright (SIGKILL, the OOM killer) loses only the records the
recorder had not handed over, not the writer's open batch.

Why a second copy: the writer commits a batch in several database steps, and each step gives up
the GIL; while the calling threads keep the interpreter busy, taking it back costs up to a
switch interval (5 ms) per step, so at concurrency 32 a commit trailed the calls by 50-150 ms.
Appending the batch to a file is one ``os.write``: once it returns, the bytes are the kernel's
and outlive the process (not a power cut: the store's own commits are not synced either).

Each process appends frames (length, CRC-32, the calls' plain values and outbox rows, pickled)
to its own file in ``<store file>.pending/``, under an exclusive ``flock`` held while it lives.
Pickled, not JSON: the journal is written on the way every call is recorded, and the C pickler
writes a record's plain values (``record_values``) in a fifth of the time JSON takes its rows.
What is written is plain data only (a value of another type is written as JSON would hold it:
a mapping as a dict, a number as its value, anything else as its text), and the reader
resolves no class beyond those builtins, so a frame can never run code. Frames of the JSON
form earlier versions wrote are still read.
The writer says what it committed; a file whose frames are all committed is emptied (or, once
sealed at ``_SEAL_BYTES``, deleted). What the store could not take (locked past its retries, a
full disk) is held in its file until the process ends. A file no live process holds was left
by one that ended without closing the store: the next writer on the same store replays it
(``recover``) — each call not in the store yet is committed with its outbox row, so a call
that reached the store before the kill is neither written nor delivered twice — and deletes
it. A torn last frame (killed mid-write) is skipped. Calls of a store that keeps no call rows
(outbox rows alone) and scores are not journaled.
"""

from __future__ import annotations

import builtins
import fcntl
import io
import json
import logging
import os
import pickle
import struct
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._process.fork import reset_in_child
from .record_values import SHAPE, plain_values, record_of
from .records import Attempt, CallRecord
from .store_rows import _ATTEMPT, OutboxEntry, _record, _WithOutbox

__all__ = ["Journal", "journal_directory"]

log = logging.getLogger("adapters.llm")

_HEAD = struct.Struct("<II")        # body length, CRC-32 of the body
_SEAL_BYTES = 4 << 20               # a file this long takes no more frames: the next one does
_SUFFIX = ".log"

Journaled = CallRecord | _WithOutbox


def journal_directory(store_file: Path) -> Path:
    """Where the journals of the store kept in (or buffered by) ``store_file`` live."""
    return store_file.with_name(store_file.name + ".pending")


class _File:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_APPEND, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)     # ours: new and unique
        self.size = 0
        self.last = 0                   # the last frame's sequence number
        self.held = False               # holds frames the store could not take: kept for
                                        # the next process (see ``hold``)


class Journal:
    """This process's journal of one store (see the module's docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._open: _File | None = None
        self._sealed: list[_File] = []
        self._seq = 0                   # the last frame appended
        self._done = 0                  # every frame up to this one committed
        self.failed = False             # the directory could not be written: journaling is off
        reset_in_child(self, Journal._forget)

    def append(self, items: Sequence[Journaled]) -> int:
        """Write ``items`` as one frame: its sequence number (0: nothing was journaled)."""
        if self.failed:
            return 0
        entries = [e for e in map(_entry, items) if e is not None]
        if not entries:
            return 0
        body = _pickled((SHAPE, entries))
        frame = _HEAD.pack(len(body), zlib.crc32(body)) + body
        with self._lock:
            try:
                target = self._target()
                os.write(target.fd, frame)
            except OSError as exc:
                self._give_up(exc)
                return 0
            self._seq += 1
            target.size += len(frame)
            target.last = self._seq
            return self._seq

    def committed(self, seq: int) -> None:
        """Every frame up to ``seq`` is in the store (or dealt with: dropped and counted)."""
        if seq <= 0:
            return
        with self._lock:
            self._done = max(self._done, seq)
            for file in [f for f in self._sealed if f.last <= self._done and not f.held]:
                self._sealed.remove(file)
                _remove(file)
            current = self._open
            if current is not None and current.size and current.last <= self._done:
                try:
                    os.ftruncate(current.fd, 0)
                    current.size = 0
                except OSError as exc:
                    self._give_up(exc)

    def hold(self) -> None:
        """The store failed to take what was just handed to it (locked past its retries, disk
        full): the files holding it are kept until the process ends, and the next process
        on the store commits what is still missing."""
        with self._lock:
            if self._open is not None:
                self._sealed.append(self._open)
                self._open = None
            for file in self._sealed:
                file.held = True

    def close(self) -> None:
        """The store is closed: remove the files whose frames were all committed; the others
        stay for the next process to replay."""
        with self._lock:
            for file in self._files():
                if not file.held and (file.last <= self._done or file.size == 0):
                    _remove(file)
                else:
                    os.close(file.fd)       # left for recovery: the lock goes with the fd
            self._sealed, self._open = [], None

    def _files(self) -> list[_File]:
        return [*self._sealed, *([self._open] if self._open is not None else [])]

    def _target(self) -> _File:
        current = self._open
        if current is not None and current.size < _SEAL_BYTES:
            return current
        if current is not None:
            self._sealed.append(current)
        if not self.directory.is_dir():
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._open = _File(self.directory / f"{os.getpid()}-{uuid.uuid4().hex[:12]}{_SUFFIX}")
        return self._open

    def _give_up(self, exc: OSError) -> None:
        self.failed = True
        log.warning("llm-adapter: cannot write the store's journal in %s: %s; calls are still "
                    "stored, but a process killed outright may lose its last batch (make the "
                    "directory writable)", self.directory, exc.strerror or exc)

    def _forget(self) -> None:
        """In a forked child: the parent's files and locks are the parent's."""
        for file in self._files():
            try:
                os.close(file.fd)       # the parent's descriptor keeps its lock
            except OSError:
                pass
        self._lock = threading.Lock()
        self._sealed, self._open, self._seq, self._done = [], None, 0, 0


def recover(directory: Path, commit: Callable[[list[Journaled]], object],
            stored: Callable[[list[str]], set[str]]) -> int:
    """Replay the journals of dead processes in ``directory``: ``commit`` the calls that
    ``stored`` does not know yet, then delete the file. Returns how many calls were committed.
    A file still locked belongs to a live process and is left alone."""
    if not directory.is_dir():
        return 0
    replayed = 0
    for path in sorted(directory.glob(f"*{_SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue                        # another process replayed it just now
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue                    # its process lives
            if os.fstat(fd).st_nlink == 0:
                continue                    # replayed and deleted while we waited for it
            items = [item for frame in _frames(fd) for item in frame]
            if items:
                known = stored([_call_id(item) for item in items])
                fresh = [item for item in items if _call_id(item) not in known]
                if fresh:
                    commit(fresh)
                    replayed += len(fresh)
            path.unlink()
        finally:
            os.close(fd)
    if replayed:
        log.warning("llm-adapter: %d call record(s) of a process that ended without closing "
                    "its store were recovered from %s", replayed, directory)
    return replayed


# -- frames --------------------------------------------------------------------------------
_Entry = tuple[list[Any], "tuple[str, str, float] | None"]     # plain values, outbox row
_PLAIN = frozenset({"str", "int", "float", "dict", "list"})     # what a frame may name


class _PlainPickler(pickle.Pickler):
    """Writes what is not plain data as JSON would hold it (``default=str``, as the store's
    JSON columns do)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type):
            return NotImplemented           # the builtins named below
        if isinstance(obj, str):
            return str, (str.__str__(obj),)
        if isinstance(obj, int) and not isinstance(obj, bool):
            return int, (int.__index__(obj),)
        if isinstance(obj, float):
            return float, (float.__float__(obj),)
        if isinstance(obj, Mapping):
            return dict, (dict(obj),)
        if isinstance(obj, (list, tuple)):
            return list, (list(obj),)
        return str, (str(obj),)


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _PLAIN:
            return getattr(builtins, name)
        raise pickle.UnpicklingError(f"a journal frame names {module}.{name}")


def _pickled(value: Any) -> bytes:
    out = io.BytesIO()
    _PlainPickler(out, pickle.HIGHEST_PROTOCOL).dump(value)
    return out.getvalue()


def _entry(item: Journaled) -> _Entry | None:
    record, outbox = (item.record, item.entry) if isinstance(item, _WithOutbox) else (item, None)
    if record is None:
        return None
    return (plain_values(record),
            None if outbox is None else (outbox.destination, outbox.payload, outbox.created_at))


def _items(body: bytes) -> list[Journaled]:
    """The calls of one frame's body: pickled (this version's form) or JSON (earlier ones')."""
    if body[:1] != b"[":
        shape, entries = _PlainUnpickler(io.BytesIO(body)).load()
        return [_with_outbox(record_of(values, shape), outbox) for values, outbox in entries]
    return [_json_item(entry) for entry in json.loads(body)]


def _with_outbox(record: CallRecord, outbox: Any) -> Journaled:
    if outbox is None:
        return record
    destination, payload, created_at = outbox
    return _WithOutbox(record, OutboxEntry(record.call_id, destination, payload, created_at))


def _json_item(entry: dict[str, Any]) -> Journaled:
    attempts = [Attempt(**dict(zip(_ATTEMPT, values))) for values in entry["attempts"]]
    return _with_outbox(_record(entry["row"], attempts), entry["outbox"])


def _frames(fd: int) -> Iterator[list[Journaled]]:
    """The whole frames of the file, in order; a torn or damaged frame ends the file."""
    with os.fdopen(os.dup(fd), "rb") as file:
        data = file.read()
    offset = 0
    while offset + _HEAD.size <= len(data):
        length, crc = _HEAD.unpack_from(data, offset)
        body = data[offset + _HEAD.size:offset + _HEAD.size + length]
        if len(body) < length or zlib.crc32(body) != crc:
            return
        offset += _HEAD.size + length
        try:
            yield _items(body)
        except (ValueError, KeyError, TypeError, pickle.UnpicklingError) as exc:  # another version
            log.warning("llm-adapter: a journal frame could not be read (%s); skipped", exc)


def _call_id(item: Journaled) -> str:
    record = item.record if isinstance(item, _WithOutbox) else item
    assert record is not None
    return record.call_id


def _remove(file: _File) -> None:
    try:
        os.unlink(file.path)
    except FileNotFoundError:
        pass
    finally:
        os.close(file.fd)
