"""The local store: schema, privacy, round trips, concurrency (threads and processes), spool."""

from __future__ import annotations

import logging
import multiprocessing
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import platformdirs
import pytest

from adapters.llm.errors import UsageError
from adapters.llm._observability.migrations import MIGRATIONS, m007_hedging, migrate
from adapters.llm._observability.records import Attempt, CallRecord, Usage
from adapters.llm._observability.store import LocalStore, StoreError, default_path

from .pg_support import pg_url  # noqa: F401  (a fixture)


def record(call_id: str, **overrides: object) -> CallRecord:
    """A record with every field set to something other than its default."""
    fields: dict[str, Any] = dict(
        call_id=call_id, trace_id="7" * 32, span_id="5" * 16, parent_span_id="4" * 16,
        started_at=1_795_000_000.25, ended_at=1_795_000_001.5, environment="production",
        model_group="claude-sonnet", status="ok", latency_ms=1250.5,
        deployment="gpt-4o-fallback", provider="openai", provider_model="gpt-4o",
        error_kind=None, error_message=None, ttft_ms=180.25,
        usage=Usage(input_tokens=100, output_tokens=50, cached_tokens=20, cache_write_tokens=10,
                    reasoning_tokens=5),
        cost=0.0125,
        cost_details={"input": 0.004, "cached": 0.0003, "cache_write": 0.0005,
                      "output": 0.0075, "hedge": 0.0002, "total": 0.0125},
        cache_hit=True, cost_saved=0.01, prompt_name="smart-scheduling-system",
        prompt_version=3, prompt_variant="b", session_id="S1", user_id="admin",
        agent="matching", stage="rank", trace_name="Trigger Handler", tags=("urgent", "beta"),
        metadata={"tenant": "acme", "nested": {"n": 1}},
        input=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "Hello"}],
        output="Hi there", tool_calls=[{"id": "t1", "name": "lookup", "arguments": "{}"}],
        model_parameters={"temperature": 0.2, "max_tokens": 100},
        attempts=[Attempt("claude-sonnet-primary", "claude-sonnet", "anthropic", "error",
                          "ServiceUnavailable", 503, 12.5, "overloaded"),
                  Attempt("claude-sonnet-backup", "claude-sonnet", "anthropic", "cancelled",
                          "hedge_lost", None, 800.0, "cancelled", cost=0.0002),
                  Attempt("gpt-4o-fallback", "gpt-4-fallback", "openai", "ok", None, None,
                          1230.0, None)],
        stream=True, hedged=True)
    fields.update(overrides)
    return CallRecord(**fields)


def count(store: LocalStore, table: str = "calls") -> int:
    with closing(store.connect()) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    """The store on each backend: a file, and a database of the test's own."""
    if request.param == "sqlite":
        s = LocalStore(tmp_path / "calls.sqlite3")
    else:
        s = LocalStore(tmp_path / "buffer.sqlite3", url=request.getfixturevalue("pg_url"))
    yield s
    s.close()


def test_migrations_apply_once_and_are_recorded(tmp_path: Path):
    path = tmp_path / "calls.sqlite3"
    LocalStore(path).close()
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        first = conn.execute("SELECT name, applied_at FROM _migrations ORDER BY rowid").fetchall()
        assert [name for name, _ in first] == [m.__name__ for m in MIGRATIONS]
        LocalStore(path).close()                            # re-open: nothing re-applied
        assert conn.execute("SELECT name, applied_at FROM _migrations ORDER BY rowid") \
            .fetchall() == first
        assert migrate(conn) == []

        def m999_extra(c: sqlite3.Connection) -> None:
            c.execute("CREATE TABLE extra (x)")

        assert migrate(conn, (*MIGRATIONS, m999_extra)) == ["m999_extra"]   # only the new one
        assert migrate(conn, (*MIGRATIONS, m999_extra)) == []


def test_file_and_directory_are_private_under_llm_adapter_home(tmp_path: Path, monkeypatch):
    home = tmp_path / "home" / "llm"
    monkeypatch.setenv("LLM_ADAPTER_HOME", str(home))
    store = LocalStore()
    try:
        assert store.path == home / "calls.sqlite3" == default_path()
        store.write(record("a" * 32))
        assert store.flush()
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        for path in home.rglob("*"):        # the database, its WAL and SHM, the journal
            assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path
    finally:
        store.close()


def test_an_existing_file_is_made_private(tmp_path: Path):
    path = tmp_path / "calls.sqlite3"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    LocalStore(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_opening_a_store_again_keeps_the_locks_sqlite_holds(tmp_path: Path):
    # Closing any descriptor of the file would drop this process's POSIX locks on it; another
    # process could then switch the journal mode, or delete the WAL while it is in use.
    store = LocalStore(tmp_path / "calls.sqlite3")
    store.write(record("a" * 32))
    assert store.flush()                                    # the writer's connection is open
    LocalStore(store.path).close()
    code = ("import sqlite3, sys\n"
            "conn = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)\n"
            "conn.execute('PRAGMA journal_mode = DELETE')")
    other = subprocess.run([sys.executable, "-c", code, str(store.path)], capture_output=True,
                           text=True, timeout=60)
    store.close()
    assert other.returncode == 1 and "database is locked" in other.stderr


def test_default_path_is_the_user_data_directory(monkeypatch):
    monkeypatch.delenv("LLM_ADAPTER_HOME", raising=False)
    assert default_path() == Path(platformdirs.user_data_dir("llm-adapter")) / "calls.sqlite3"


def test_reopening_is_fast(tmp_path: Path):
    path = tmp_path / "calls.sqlite3"
    LocalStore(path).close()
    started = time.perf_counter()
    LocalStore(path).close()
    assert time.perf_counter() - started < 0.05         # < 5 ms measured; generous for CI


def test_a_full_record_reads_back_equal(store: LocalStore):
    original = record("c" * 32)
    store.write(original)
    assert store.flush()
    assert store.get_call(original.call_id) == original
    assert store.written == 1 and store.dropped == 0
    with closing(store.connect()) as conn:
        row = conn.execute("SELECT day, fallback, cache_hit, stream, hedged, cost_hedge, tags "
                           "FROM calls").fetchone()
        assert tuple(row) == ("2026-11-18", 1, 1, 1, 1, 0.0002, '["urgent", "beta"]')
        assert sorted(r[0] for r in conn.execute("SELECT tag FROM call_tags")) == \
            ["beta", "urgent"]
        assert [tuple(r) for r in conn.execute(
            "SELECT seq, outcome, status, cost FROM attempts ORDER BY seq")] == \
            [(0, "error", 503, None), (1, "cancelled", None, 0.0002), (2, "ok", None, None)]


def test_a_store_written_before_hedging_reads_as_not_hedged(tmp_path: Path):
    path = tmp_path / "calls.sqlite3"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        migrate(conn, MIGRATIONS[:MIGRATIONS.index(m007_hedging)])
        conn.execute("INSERT INTO calls (call_id, trace_id, started_at, day, status, cost, "
                     "cost_input) VALUES ('old', 't', 1.0, '1970-01-01', 'ok', 0.5, 0.5)")
        conn.execute("INSERT INTO attempts (call_id, seq, outcome) VALUES ('old', 0, 'ok')")
    store = LocalStore(path)
    try:
        old = store.get_call("old")
    finally:
        store.close()
    assert old is not None and not old.hedged
    assert old.cost_details == {"input": 0.5, "total": 0.5}, "no hedge part where none was kept"
    assert [a.cost for a in old.attempts] == [None]


def test_a_record_with_defaults_reads_back_equal(store: LocalStore):
    plain = CallRecord(call_id="d" * 32, trace_id="e" * 32, span_id="f" * 16,
                       parent_span_id=None, started_at=1.0, ended_at=2.0, environment="dev",
                       model_group="m", status="error", latency_ms=3.0)
    store.write(plain)
    assert store.flush()
    assert store.get_call(plain.call_id) == plain


def test_writing_a_record_again_replaces_it(store: LocalStore):
    store.write(record("a" * 32))
    store.write(record("a" * 32, status="error", tags=("x",), attempts=[
        Attempt("d", "m", "p", "error", "Timeout")]))
    assert store.flush()
    again = store.get_call("a" * 32)
    assert again is not None and again.status == "error" and again.tags == ("x",)
    assert count(store) == 1 and count(store, "attempts") == 1 and count(store, "call_tags") == 1


def test_a_call_handed_over_again_gets_no_second_outbox_row(store: LocalStore):
    """A recording process that died before its "took" was read is handed the batch again
    by its caller: the call is stored once, and its Langfuse outbox row (still pending, or
    delivered and gone) is not written again, so Langfuse gets the call once."""
    from adapters.llm._observability.store_rows import OutboxEntry

    first, second = record("b" * 32), record("c" * 32)

    def entry(r: CallRecord) -> OutboxEntry:
        return OutboxEntry(r.call_id, "pk-lf-1", '{"v": 1}', 1.0)

    store.write_batch([(first, entry(first)), (first, entry(first))])  # twice in one batch
    assert store.flush()
    assert count(store, "outbox") == 1
    store.write_batch([(first, entry(first)), (second, entry(second))])  # pending: again
    assert store.flush()
    assert count(store, "outbox") == 2                                  # the second's own
    with closing(store.connect()) as conn:
        conn.execute("DELETE FROM outbox")          # delivered: acknowledged rows are deleted
    store.write_batch([(first, entry(first))])
    assert store.flush()
    assert count(store, "outbox") == 0 and count(store) == 2


def test_eight_threads_writing_at_once(store: LocalStore):
    def writer(n: int) -> None:
        for i in range(200):
            store.write(record(f"{n:02d}{i:030d}"))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.flush(10)
    assert count(store) == 1600 and store.written == 1600 and store.dropped == 0


def _process_writer(path: str, prefix: str, start: Any, results: Any) -> None:
    store = LocalStore(path)
    start.wait(30)
    for i in range(300):
        store.write(record(f"{prefix}{i:031d}"))
    ok = store.flush(30)
    store.close()
    results.put((prefix, ok, store.written, store.dropped))


def test_two_processes_write_the_same_file(tmp_path: Path):
    path = str(tmp_path / "calls.sqlite3")
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_process_writer, args=(path, p, start, results)) for p in "ab"]
    for p in procs:
        p.start()
    start.set()
    outcomes = sorted(results.get(timeout=90) for _ in procs)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert outcomes == [("a", True, 300, 0), ("b", True, 300, 0)]
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 600
        assert conn.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)


def test_a_full_queue_drops_and_never_blocks(tmp_path: Path, caplog):
    path = tmp_path / "calls.sqlite3"
    store = LocalStore(path, queue_size=5)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")                      # the writer stalls on this lock
    try:
        with caplog.at_level(logging.WARNING, logger="adapters.llm"):
            started = time.perf_counter()
            for i in range(1000):
                store.write(record(f"{i:032d}"))
            elapsed = time.perf_counter() - started
        assert elapsed < 0.5
        assert store.dropped > 900
        warnings = [r for r in caplog.records if "not stored" in r.getMessage()]
        assert len(warnings) == 1                           # once per 1000 drops
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.flush(20)
    assert store.written + store.dropped == 1000
    assert count(store) == store.written
    store.close()


def test_spool(store: LocalStore):
    first = store.spool.add("otlp", b"one", created_at=100.0)
    second = store.spool.add("otlp", b"two!", created_at=200.0)
    store.spool.add("other", b"x")
    assert [(i.id, i.payload, i.created_at) for i in store.spool.items("otlp")] == \
        [(first, b"one", 100.0), (second, b"two!", 200.0)]
    assert len(store.spool.items("otlp", limit=1)) == 1
    assert (store.spool.count(), store.spool.count("otlp"), store.spool.size()) == (3, 2, 8)
    store.spool.failed(first, "HTTP 503")
    store.spool.failed(first, "HTTP 502")
    item = store.spool.items("otlp")[0]
    assert (item.tries, item.last_error) == (2, "HTTP 502")
    store.spool.delete([first, second])
    store.spool.delete([])
    assert store.spool.items("otlp") == [] and store.spool.count() == 1


def test_scores(store: LocalStore):
    store.add_score(name="accuracy", value=0.9, trace_id="t" * 32, created_at=5.0)
    store.add_score(name="verdict", value="good", trace_id=None, call_id="c" * 32,
                    comment="checked")
    with pytest.raises(UsageError, match="value must be a number"):
        store.add_score(name="bad", value=None, trace_id=None)  # type: ignore[arg-type]
    assert store.flush()
    with closing(store.connect()) as conn:
        rows = [tuple(r) for r in conn.execute(
            "SELECT name, value_num, value_text, comment, trace_id, call_id FROM scores "
            "ORDER BY id")]
    assert rows == [("accuracy", 0.9, None, None, "t" * 32, None),
                    ("verdict", None, "good", "checked", None, "c" * 32)]


def test_close_is_idempotent_and_later_writes_are_dropped(tmp_path: Path):
    store = LocalStore(tmp_path / "calls.sqlite3")
    store.close()                                           # before any write
    store = LocalStore(tmp_path / "calls.sqlite3")
    store.write(record("a" * 32))
    store.close()
    store.close()
    assert count(store) == 1
    store.write(record("b" * 32))                           # does not raise
    assert store.dropped == 1 and store.flush() and count(store) == 1


def test_unusable_paths_say_what_to_do(tmp_path: Path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="cannot create the call store .*LLM_ADAPTER_HOME"):
        LocalStore(tmp_path / "file" / "calls.sqlite3")
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database, just text" * 100)
    with pytest.raises(StoreError, match="not an SQLite file"):
        LocalStore(junk)
