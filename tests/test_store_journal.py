"""The store's journal: what a writer was handed and had not committed outlives its process.

Unit tests of the file format and its life (the SIGKILL guarantee itself is tested where a
user meets it, in ``test_durability.py``); real files, real locks, a real SQLite store.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import pickle
import time
import uuid
import zlib
from collections.abc import Collection
from datetime import datetime, timezone
from pathlib import Path

import pytest

from adapters.llm._observability import store_journal
from adapters.llm._observability.records import Attempt, CallRecord, Usage
from adapters.llm._observability.store import LocalStore
from adapters.llm._observability.store_journal import Journal, journal_directory, recover
from adapters.llm._observability.store_rows import OutboxEntry, _call_row, _WithOutbox

from .pg_support import pg_url  # noqa: F401  (a fixture)


def record(**fields: object) -> CallRecord:
    call_id = uuid.uuid4().hex
    return CallRecord(call_id=call_id, trace_id="t" * 32, span_id=call_id[:16],
                      parent_span_id=None, started_at=time.time(), ended_at=time.time(),
                      environment="test", model_group="main", status="ok", latency_ms=1.5,
                      **fields)  # type: ignore[arg-type]


def files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.log")) if directory.is_dir() else []


def replay(directory: Path, known: Collection[str] = ()) -> list[object]:
    got: list[object] = []
    recover(directory, got.extend, lambda ids: {i for i in ids if i in known})
    return got


def test_a_record_comes_back_as_the_store_would_keep_it(tmp_path):
    """What a replay commits is what the writer would have: rows, attempts, outbox row."""
    journal = Journal(tmp_path / "j")
    full = record(usage=Usage(input_tokens=7, output_tokens=3), cost=0.25,
                  cost_details={"input": 0.1, "output": 0.15, "total": 0.25},
                  tags=("urgent", "medicare"), metadata={"ward": "4B", "n": [1, 2]},
                  input=[{"role": "user", "content": "odd \ud800 half"}], output="fine",
                  attempts=[Attempt("d1", "main", "openai", "error", "unavailable", 503, 2.0,
                                    "down", None),
                            Attempt("d2", "backup", "openai", "ok", latency_ms=3.0)],
                  session_id="S1", user_id="admin", stream=True, hedged=True)
    entry = OutboxEntry(full.call_id, "pk-lf-1", '{"x": 1}', 12.5)
    assert journal.append([_WithOutbox(full, entry), record()]) == 1
    journal.close()                     # the process ends without committing: kept
    got = replay(tmp_path / "j")
    assert len(got) == 2
    first = got[0]
    assert isinstance(first, _WithOutbox) and first.entry == entry
    assert first.record == full         # lone surrogate included: the writer escapes it
    assert files(tmp_path / "j") == []  # replayed, then deleted


class _Kind(str, enum.Enum):
    URGENT = "urgent"


class _Ward(dict):  # type: ignore[type-arg]
    pass


class _Bed:
    def __str__(self) -> str:
        return "bed 12"


def test_values_of_other_types_come_back_as_the_store_keeps_them(tmp_path):
    """A metadata value that is not plain data is journaled as the store's JSON columns hold
    it (a mapping as an object, a number as its value, anything else as its text): the rows
    a replay commits are the rows the writer would have."""
    when = datetime(2026, 12, 3, 9, 30, tzinfo=timezone.utc)
    full = record(metadata={"when": when, "bed": _Bed(), "kind": _Kind.URGENT,
                            "ward": _Ward(floor=4), "level": enum.IntEnum("L", "A B").B,
                            "ratio": 0.5, "ids": ("a", "b")})
    journal = Journal(tmp_path / "j")
    journal.append([full])
    journal.close()
    (back,) = replay(tmp_path / "j")
    assert isinstance(back, CallRecord)
    assert back.metadata == {"when": str(when), "bed": "bed 12", "kind": "urgent",
                             "ward": {"floor": 4}, "level": 2, "ratio": 0.5, "ids": ("a", "b")}
    assert _call_row(back) == _call_row(full)


class _Runs:
    """Unpickled by a reader that resolves any class, runs ``command``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, ...]:
        return os.system, (self.command,)


def _frame(body: bytes) -> bytes:
    return store_journal._HEAD.pack(len(body), zlib.crc32(body)) + body


def test_a_frame_that_names_a_class_is_skipped_and_runs_nothing(tmp_path, caplog):
    """The journal's reader resolves no class beyond plain builtins: a frame that names one
    (written by hand, or by a bug) is skipped with a warning, and its neighbours replay."""
    directory = tmp_path / "j"
    directory.mkdir()
    marker = tmp_path / "ran"
    good = record()
    evil = pickle.dumps((store_journal.SHAPE, [_Runs(f"touch {marker}")]))
    plain = store_journal._pickled((store_journal.SHAPE,
                                    [(store_journal.plain_values(good), None)]))
    (directory / "1-x.log").write_bytes(_frame(evil) + _frame(plain))
    assert replay(directory) == [good]
    assert not marker.exists()
    assert "a journal frame could not be read" in caplog.text and "posix.system" in caplog.text


def test_frames_of_earlier_forms_are_replayed(tmp_path):
    """A journal left by an earlier version: the JSON frames it wrote, and pickled frames
    whose records had other fields (read by name; a field unknown here is left out, one the
    writer lacked takes its default)."""
    directory = tmp_path / "j"
    directory.mkdir()
    old, other = record(cost=0.5, tags=("a",)), record(output="fine", hedged=True)
    entry = OutboxEntry(old.call_id, "pk-lf-1", '{"x": 1}', 12.5)
    json_body = json.dumps([{"row": _call_row(old), "attempts": [],
                             "outbox": [entry.destination, entry.payload, entry.created_at]}])
    names, usage, attempt = store_journal.SHAPE
    values = dict(zip(names, store_journal.plain_values(other)))
    values.pop("hedged")
    values["arrives_later"] = "a field of a newer version"
    shape = (tuple(values), usage, attempt)
    pickled = store_journal._pickled((shape, [(list(values.values()), None)]))
    (directory / "1-x.log").write_bytes(_frame(json_body.encode()) + _frame(pickled))
    first, second = replay(directory)
    assert isinstance(first, _WithOutbox) and first.record == old and first.entry == entry
    assert second == dataclasses.replace(other, hedged=False)


def test_a_committed_journal_is_emptied_and_removed_at_close(tmp_path):
    journal = Journal(tmp_path / "j")
    seq = journal.append([record(), record()])
    (path,) = files(tmp_path / "j")
    assert path.stat().st_size > 0
    journal.committed(seq)
    assert path.stat().st_size == 0     # emptied: nothing to replay
    journal.append([record()])
    journal.close()
    assert files(tmp_path / "j") == [path]      # the last frame was not committed: kept
    assert len(replay(tmp_path / "j")) == 1


def test_a_live_process_journal_is_left_alone(tmp_path):
    """Its owner holds the file's lock: replaying it would commit calls twice."""
    journal = Journal(tmp_path / "j")
    journal.append([record()])
    assert replay(tmp_path / "j") == [] and len(files(tmp_path / "j")) == 1
    journal.close()
    assert len(replay(tmp_path / "j")) == 1


def test_a_torn_last_frame_is_skipped(tmp_path):
    journal = Journal(tmp_path / "j")
    for _ in range(3):
        journal.append([record()])
    journal.close()
    (path,) = files(tmp_path / "j")
    os.truncate(path, path.stat().st_size - 5)  # killed in the middle of the last write
    assert len(replay(tmp_path / "j")) == 2


def test_calls_already_stored_are_not_committed_again(tmp_path):
    journal = Journal(tmp_path / "j")
    first, second = record(), record()
    journal.append([first, second])
    journal.close()
    assert replay(tmp_path / "j", known={first.call_id}) == [second]


def test_full_files_are_sealed_and_removed_once_committed(tmp_path, monkeypatch):
    monkeypatch.setattr(store_journal, "_SEAL_BYTES", 1)   # every frame fills a file
    journal = Journal(tmp_path / "j")
    seqs = [journal.append([record()]) for _ in range(3)]
    assert len(files(tmp_path / "j")) == 3
    journal.committed(seqs[1])
    assert len(files(tmp_path / "j")) == 1
    journal.committed(seqs[2])
    journal.close()
    assert files(tmp_path / "j") == []


def test_what_the_store_could_not_take_is_held_for_the_next_process(tmp_path):
    journal = Journal(tmp_path / "j")
    seq = journal.append([record()])
    journal.hold()                      # the writer failed to commit it
    journal.committed(seq)              # and went on: later frames commit
    later = journal.append([record()])
    journal.committed(later)
    journal.close()
    assert len(replay(tmp_path / "j")) == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_store_replays_an_ended_process_journal_when_its_writer_starts(tmp_path, backend,
                                                                         request):
    """Either backend; a call the dead process had committed is not written again."""
    path = tmp_path / ("calls.sqlite3" if backend == "sqlite" else "buffer.sqlite3")
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    calls = [record() for _ in range(5)]
    before = LocalStore(path, url=url)
    before.write(calls[0])
    assert before.flush()
    before.close()
    left = Journal(journal_directory(path))
    left.append(calls)
    left.close()                        # as a killed process leaves it (its lock is gone)
    store = LocalStore(path, url=url)
    try:
        assert store.recover_pending()
        assert store.recovered == 4     # the first was committed before the kill
        assert all(store.get_call(c.call_id) == c for c in calls)
        assert files(journal_directory(path)) == []
    finally:
        store.close()


def test_an_unwritable_journal_directory_turns_journaling_off_with_a_warning(tmp_path, caplog):
    blocker = tmp_path / "j"
    blocker.write_text("a file where the directory should be")
    journal = Journal(blocker)
    assert journal.append([record()]) == 0
    assert journal.failed
    assert "cannot write the store's journal" in caplog.text


@pytest.mark.parametrize("content", [b"", b"\x00" * 3])
def test_an_empty_or_short_file_replays_nothing(tmp_path, content):
    directory = tmp_path / "j"
    directory.mkdir()
    (directory / "1-x.log").write_bytes(content)
    assert replay(directory) == [] and files(directory) == []


def test_a_running_store_replays_on_request(tmp_path):
    """``recover_pending`` (``traces sync``) replays a journal left after the writer started."""
    path = tmp_path / "calls.sqlite3"
    store = LocalStore(path)
    try:
        store.start()
        assert store.recover_pending() and store.recovered == 0
        left = Journal(journal_directory(path))
        call = record()
        left.append([call])
        left.close()
        assert store.recover_pending()
        assert store.recovered == 1 and store.get_call(call.call_id) == call
    finally:
        store.close()


def test_traces_sync_commits_a_left_journal_even_without_langfuse_keys(tmp_path, monkeypatch):
    """The journal is the store's: committing it does not wait for Langfuse to be set up."""
    from click.testing import CliRunner

    from adapters.llm._cli import main

    path = tmp_path / "calls.sqlite3"
    LocalStore(path).close()
    left = Journal(journal_directory(path))
    calls = [record() for _ in range(3)]
    left.append(calls)
    left.close()
    for name in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(main, ["traces", "sync", "--db", str(path)])
    assert "recovered 3 call(s)" in result.output
    assert result.exit_code == 1 and "LANGFUSE_PUBLIC_KEY" in result.output   # still said
    store = LocalStore(path)
    try:
        assert all(store.get_call(c.call_id) == c for c in calls)
    finally:
        store.close()
