"""The store's journal: what a writer was handed and had not committed outlives its process.

Unit tests of the file format and its life (the SIGKILL guarantee itself is tested where a
user meets it, in ``test_durability.py``); real files, real locks, a real SQLite store.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Collection
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
    seq, rows = journal.append([_WithOutbox(full, entry), record()])
    assert seq == 1 and rows[full.call_id] == _call_row(full)   # the writer takes these
    journal.close()                     # the process ends without committing: kept
    got = replay(tmp_path / "j")
    assert len(got) == 2
    first = got[0]
    assert isinstance(first, _WithOutbox) and first.entry == entry
    assert first.record == full         # lone surrogate included: the writer escapes it
    assert files(tmp_path / "j") == []  # replayed, then deleted


def test_a_committed_journal_is_emptied_and_removed_at_close(tmp_path):
    journal = Journal(tmp_path / "j")
    seq, _ = journal.append([record(), record()])
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
    seqs = [journal.append([record()])[0] for _ in range(3)]
    assert len(files(tmp_path / "j")) == 3
    journal.committed(seqs[1])
    assert len(files(tmp_path / "j")) == 1
    journal.committed(seqs[2])
    journal.close()
    assert files(tmp_path / "j") == []


def test_what_the_store_could_not_take_is_held_for_the_next_process(tmp_path):
    journal = Journal(tmp_path / "j")
    seq, _ = journal.append([record()])
    journal.hold()                      # the writer failed to commit it
    journal.committed(seq)              # and went on: later frames commit
    later, _ = journal.append([record()])
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
    assert journal.append([record()])[0] == 0
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
