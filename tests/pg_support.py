"""Real-PostgreSQL helpers: a database of each test's own, and a private server to stop.

The shared server is ``$LLM_ADAPTER_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``). Each test that needs it gets a database
named with the run's id, dropped at its end. Without a server, such a test fails with the reason
under CI (``.ci/run`` starts one) and is skipped elsewhere.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

POSTGRES_URL = (os.environ.get("LLM_ADAPTER_TEST_POSTGRES_URL")
                or "postgresql://postgres@127.0.0.1:5432/postgres")
RUN = uuid.uuid4().hex[:6]


@cache
def _unreachable(url: str) -> str | None:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.Error as exc:
        return f"{type(exc).__name__}: {str(exc).strip()}"
    return None


def shared_postgres_url() -> str:
    """The shared test server; without one the test fails under CI and is skipped elsewhere."""
    problem = _unreachable(POSTGRES_URL)
    if problem is not None:
        message = (f"needs a PostgreSQL server at {POSTGRES_URL} ({problem}): start one, or "
                   "set LLM_ADAPTER_TEST_POSTGRES_URL")
        if os.environ.get("CI"):
            pytest.fail(f"{message} (.ci/run starts one)")
        pytest.skip(message)
    return POSTGRES_URL


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def create_database(admin_url: str) -> str:
    """A new empty database on the server of ``admin_url``; its URL."""
    import psycopg

    name = f"llm_test_{RUN}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(admin_url, name)


def drop_database(url: str) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    admin = with_database(url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A database of this test's own on the shared server, dropped afterwards."""
    url = create_database(shared_postgres_url())
    yield url
    drop_database(url)


class PrivatePostgres:
    """A PostgreSQL server of one test's own (initdb in a temporary directory, trust auth,
    a free port), to stop and start again."""

    def __init__(self, root: Path) -> None:
        initdb = shutil.which("initdb")
        if initdb is None:
            pytest.skip("initdb is needed for a private PostgreSQL (apt-get install postgresql)")
        self.bin = Path(initdb).parent
        self.data = root / "pgdata"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8")

    def _run(self, tool: str, *args: str) -> None:
        env = {**os.environ, "LC_ALL": "C"}
        cmd = [str(self.bin / tool), *args]
        if os.geteuid() == 0:          # the server refuses to run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
            subprocess.run(["chown", "-R", "postgres", str(self.data.parent)], check=True)
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=120)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-l", str(self.data.parent / "log"),
                  "-o", f"-p {self.port} -k {self.data.parent} -c listen_addresses=127.0.0.1 "
                        f"-c fsync=off", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "stop")

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    # Not under pytest's tmp_path: that is private to this user, and the server runs as
    # postgres when the tests run as root.
    root = Path(tempfile.mkdtemp(prefix="llm-adapter-pg-"))
    os.chmod(root, 0o755)
    try:
        server = PrivatePostgres(root)
        server.start()
        yield server
        server.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
