"""The store on PostgreSQL: choosing it, migrating it, many processes on one database, and the
server going away mid-run (a private server, stopped and started again)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import psycopg
import pytest

from adapters.llm._config.loader import load_config
from adapters.llm.errors import ConfigError
from adapters.llm._observability.migrations import MIGRATIONS
from adapters.llm._observability.store import LocalStore, store_target
from adapters.llm._observability.telemetry import store_target_of

from .conftest import run_together
from .pg_support import PrivatePostgres, pg_url, private_postgres  # noqa: F401  (fixtures)
from .test_store import record

ROOT = Path(__file__).resolve().parent.parent
MODELS = "model_list: [{model_name: m, litellm_params: {model: openai/gpt-4o, api_key: sk-x}}]\n"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "adapters.llm", *args], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def rows(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(sql).fetchall()]


# -- choosing the store -------------------------------------------------------------------------
def test_the_url_comes_from_the_config_else_the_environment(tmp_path: Path, monkeypatch):
    config = tmp_path / "config.yaml"
    config.write_text(MODELS + "store: {url: 'postgresql://app@db.internal/calls'}\n")
    assert store_target_of(load_config(config, load_dotenv=False)).url == \
        "postgresql://app@db.internal/calls"
    monkeypatch.setenv("LLM_ADAPTER_STORE_URL", f"sqlite:///{tmp_path}/x.sqlite3")
    assert store_target().path == tmp_path / "x.sqlite3"
    monkeypatch.setenv("LLM_ADAPTER_STORE_URL", "postgres://u@h:5433/d")
    assert store_target().url == "postgres://u@h:5433/d"


@pytest.mark.parametrize("url", ["mysql://u:hunter2@h/d", "sqlite://relative", "postgresql://",
                                 "calls.sqlite3"])
def test_a_bad_url_names_the_key_and_the_accepted_forms(url: str, tmp_path: Path, monkeypatch):
    config = tmp_path / "config.yaml"
    config.write_text(MODELS + f"store: {{url: '{url}'}}\n")
    with pytest.raises(ConfigError) as caught:
        store_target_of(load_config(config, load_dotenv=False))
    text = str(caught.value)
    assert "store.url" in text and "postgresql://" in text and "sqlite:///" in text
    assert str(config) in text
    assert "hunter2" not in text, "a password never reaches a message"
    monkeypatch.setenv("LLM_ADAPTER_STORE_URL", url)
    with pytest.raises(ConfigError, match="LLM_ADAPTER_STORE_URL"):
        store_target()


def test_a_postgres_store_without_its_driver_says_what_to_install(tmp_path: Path):
    # psycopg is an optional extra: a process that lacks it is told how to get it, at load.
    config = tmp_path / "config.yaml"
    config.write_text(MODELS + "store: {url: 'postgresql://app:hunter2@db.internal/calls'}\n")
    code = textwrap.dedent(f"""
        import sys
        sys.modules["psycopg"] = None          # as if the extra were not installed
        from adapters.llm import ConfigError, LiteLLMAdapter, load_config
        try:
            LiteLLMAdapter(config=load_config({str(config)!r}, load_dotenv=False))
        except ConfigError as exc:
            print(exc)
        else:
            print("no error")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "LLM_ADAPTER_HOME": str(tmp_path)})
    assert "psycopg" in out.stdout and "pip install 'llm-adapter[postgres]'" in out.stdout, out
    assert "store.url" in out.stdout and "hunter2" not in out.stdout + out.stderr


def test_an_unreachable_server_is_named_without_its_password(tmp_path: Path, caplog):
    with caplog.at_level(logging.WARNING, logger="adapters.llm"):
        store = LocalStore(tmp_path / "buffer.sqlite3",
                           url="postgresql://app:hunter2@127.0.0.1:1/calls")
        store.write(record("a" * 32))
        assert store.flush(10)
        store.close()
    assert store.buffered == 1 and store.dropped == 0, "kept locally, not lost"
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "127.0.0.1:1" in text and "app:***@" in text and "hunter2" not in text
    out = cli("costs", "--db", "postgresql://app:hunter2@127.0.0.1:1/calls")
    assert out.returncode != 0 and "hunter2" not in out.stdout + out.stderr
    assert "app:***@127.0.0.1:1" in out.stderr


# -- migrations ---------------------------------------------------------------------------------
def test_migrations_apply_once_explicitly_or_on_first_use(pg_url: str):
    out = cli("store", "migrate", "--db", pg_url)
    assert out.returncode == 0, out.stderr
    assert "applied m001_calls" in out.stdout and MIGRATIONS[-1].__name__ in out.stdout
    assert len(rows(pg_url, "SELECT name FROM _migrations")) == len(MIGRATIONS)
    again = cli("store", "migrate", "--db", pg_url)
    assert again.returncode == 0 and "up to date" in again.stdout
    LocalStore(url=pg_url).close()
    assert sorted(r[0] for r in rows(pg_url, "SELECT name FROM _migrations")) == \
        sorted(m.__name__ for m in MIGRATIONS)
    types = dict(rows(pg_url, "SELECT column_name, data_type FROM information_schema.columns "
                              "WHERE table_name = 'calls'"))
    assert types["started_at"] == "double precision", "times keep their microseconds"


# -- many processes, one database -------------------------------------------------------------
WRITER = """
import sys
from adapters.llm._observability.records import Usage
from adapters.llm._observability.store import LocalStore
from tests.test_store import record
store = LocalStore()            # LLM_ADAPTER_STORE_URL names the database
for i in range(200):
    store.write(record(f"{sys.argv[1]}{i:031d}", user_id=f"user-{i % 4}", cost=0.25,
                       cache_hit=False, started_at=float(sys.argv[2]) + i,
                       usage=Usage(input_tokens=10, output_tokens=5)))
store.close()
print(store.written, store.dropped, store.buffered, flush=True)
"""


def test_two_processes_record_into_one_database_and_a_third_reports_them(pg_url: str,
                                                                          tmp_path: Path):
    now = time.time() - 3600
    runs = run_together([([sys.executable, "-c", WRITER, prefix, str(now)],
                          {**os.environ, "PYTHONPATH": str(ROOT), "LLM_ADAPTER_STORE_URL": pg_url,
                           "LLM_ADAPTER_HOME": str(tmp_path / prefix)}) for prefix in "ab"],
                        timeout=120)
    assert [r.stdout.split() for r in runs] == [["200", "0", "0"]] * 2, \
        [r.stderr[-2000:] for r in runs]
    reader = {"LLM_ADAPTER_STORE_URL": pg_url, "LLM_ADAPTER_HOME": str(tmp_path / "reader")}
    out = cli("costs", "--by", "user", "--since", "30d", "--json", env=reader)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [(r["key"], r["calls"], r["cost"]) for r in data["rows"]] == \
        [(f"user-{n}", 100, pytest.approx(25.0)) for n in range(4)]
    assert (data["total"]["calls"], data["total"]["input_tokens"]) == (400, 4000)
    out = cli("stats", "--json", env=reader)
    assert out.returncode == 0 and json.loads(out.stdout)["calls"] == 400, out.stderr


# -- PostgreSQL down ---------------------------------------------------------------------------
def eventually(condition: Callable[[], bool], within: float = 60.0) -> bool:
    """Poll ``condition`` until it holds (True) or ``within`` seconds pass (False)."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_server_stopped_mid_run_records_are_buffered_and_forwarded_once(
        private_postgres: PrivatePostgres, tmp_path: Path):
    store = LocalStore(tmp_path / "buffer.sqlite3", url=private_postgres.url)
    for i in range(50):
        store.write(record(f"a{i:031d}"))
    assert store.flush(20) and store.written == 50
    private_postgres.stop()
    for i in range(70):
        store.write(record(f"b{i:031d}"))           # never raises, never waits for the server
    assert store.flush(30)
    assert store.buffered == 70 and store.dropped == 0
    with closing(store._buffer.backend.connect()) as local:  # type: ignore[union-attr]
        assert local.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 70
    private_postgres.start()
    store.write(record(f"c{0:031d}"))
    assert eventually(lambda: store.flush(5) and store.buffered == 0)
    store.close()
    assert store.buffered == 0 and store.dropped == 0
    ids = [r[0] for r in rows(private_postgres.url, "SELECT call_id FROM calls")]
    assert len(ids) == len(set(ids)) == 121
    assert len(rows(private_postgres.url, "SELECT 1 FROM attempts")) == 121 * 3


def test_records_left_in_the_buffer_by_an_ended_process_are_forwarded_by_the_next(
        private_postgres: PrivatePostgres, tmp_path: Path):
    buffer = tmp_path / "buffer.sqlite3"
    private_postgres.stop()
    first = LocalStore(buffer, url=private_postgres.url)
    for i in range(30):
        first.write(record(f"{i:032d}"))
    first.close()
    assert first.buffered == 30
    private_postgres.start()
    second = LocalStore(buffer, url=private_postgres.url)
    assert second.buffered == 30
    second.start()
    assert eventually(lambda: second.buffered == 0), "forwarded without a new call"
    second.close()
    assert len(rows(private_postgres.url, "SELECT call_id FROM calls")) == 30
    assert second.buffered == 0


def test_store_copy_moves_history_and_running_it_again_changes_nothing(pg_url: str,
                                                                       tmp_path: Path):
    source = LocalStore(tmp_path / "calls.sqlite3")
    for i in range(25):
        source.write(record(f"{i:032d}"))
    source.add_score(name="helpful", value=1, trace_id="7" * 32, created_at=5.0)
    source.close()
    for _ in range(2):
        out = cli("store", "copy", "--from", f"sqlite:///{source.path}", "--to", pg_url,
                  env={"LLM_ADAPTER_HOME": str(tmp_path / "home")})
        assert out.returncode == 0, out.stderr
        assert "copied 25 call(s)" in out.stdout
    assert len(rows(pg_url, "SELECT 1 FROM calls")) == 25
    assert len(rows(pg_url, "SELECT 1 FROM attempts")) == 75
    assert rows(pg_url, "SELECT name, value_num FROM scores") == [("helpful", 1.0)]
    copied = LocalStore(url=pg_url)
    try:
        assert copied.get_call(f"{3:032d}") == record(f"{3:032d}")
    finally:
        copied.close()


def test_nothing_of_the_store_is_imported_for_sqlite_users():
    code = textwrap.dedent("""
        import sys, tempfile
        from adapters.llm._observability.store import LocalStore
        LocalStore(tempfile.mkdtemp() + "/calls.sqlite3").close()
        print("psycopg" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
