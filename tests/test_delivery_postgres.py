"""Langfuse delivery from a PostgreSQL store shared by replicas: never the same rows twice.

Real PostgreSQL (a database of the test's own), the loopback Langfuse, the simulator; replicas
are processes with homes of their own and one LLM_ADAPTER_STORE_URL.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from .conftest import run_together, unique, write_config
from .langfuse_server import use_project
from .pg_support import pg_url  # noqa: F401  (a fixture)
from .test_tracing_delivery import TWO, call_id, generations, traced_in_production

ROOT = Path(__file__).resolve().parent.parent
RECORD = """
import sys
from adapters.llm import LiteLLMAdapter, load_config
llm = LiteLLMAdapter(config=load_config(sys.argv[1], environment="production",
                                        load_dotenv=False))
for i in range(40):
    llm.generate(prompt=f"{sys.argv[2]} {i}")
print("recorded", flush=True)
"""


@pytest.fixture
def keys(server, monkeypatch, tmp_path):
    return use_project(server, monkeypatch, tmp_path / "home")


def _config(tmp_path: Path, sim_url: str) -> Path:
    return write_config(tmp_path, traced_in_production(unique("pg")), sim_url=sim_url,
                        name="config.yaml")


def _stored(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT call_id FROM calls").fetchall()]


def _env(url: str, home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "LLM_ADAPTER_STORE_URL": url,
            "LLM_ADAPTER_HOME": str(home), **extra}


def test_two_traces_sync_at_once_send_each_generation_once(sim, server, keys, pg_url,
                                                           tmp_path):
    config = _config(tmp_path, sim.url)
    down = "http://127.0.0.1:9"                 # Langfuse unreachable while recording
    for name in ("first", "second"):
        out = subprocess.run([sys.executable, "-c", RECORD, str(config), name],
                             env=_env(pg_url, tmp_path / name, LANGFUSE_BASE_URL=down),
                             capture_output=True, text=True, timeout=180)
        assert out.stdout.strip() == "recorded", out.stderr[-2000:]
    stored = _stored(pg_url)
    assert len(stored) == 80 and not generations(server.spans(), keys[0])
    syncs = run_together([([sys.executable, "-m", "adapters.llm", "traces", "sync"],
                           _env(pg_url, tmp_path / f"sync-{n}")) for n in range(2)])
    # One may find every row leased by the other and exit 1 ("still waiting"); none fails.
    assert 0 in [r.returncode for r in syncs], [r.stdout + r.stderr[-1500:] for r in syncs]
    assert all(r.stdout.startswith("sent ") for r in syncs), [r.stderr[-1500:] for r in syncs]
    gens = generations(server.spans(), keys[0])
    assert Counter(Counter(call_id(g) for g in gens).values()) == {1: 80}, "each once"
    assert {call_id(g) for g in gens} == set(stored)
    assert sum(int(r.stdout.split()[1]) for r in syncs) == 80    # "sent N span(s); ..."
    again = subprocess.run([sys.executable, "-m", "adapters.llm", "traces", "sync"],
                           env=_env(pg_url, tmp_path / "sync-2"), capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.startswith("sent 0 span(s); pending: 0"), \
        again.stdout + again.stderr[-1500:]


def test_two_replicas_recording_and_delivering_never_send_the_same_rows(sim, server, keys,
                                                                        pg_url, tmp_path):
    config = _config(tmp_path, sim.url)
    runs = run_together([([sys.executable, "-c", TWO, str(config), name],
                          _env(pg_url, tmp_path / name)) for name in ("first", "second")])
    assert all(r.stdout.strip() == "ok" for r in runs), [r.stderr[-1500:] for r in runs]
    stored = _stored(pg_url)
    spans = [g.span_id for g in generations(server.spans(), keys[0])]
    assert len(stored) == 120
    assert sorted(spans) == sorted(c[:16] for c in stored), "each row sent once, by one"
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
