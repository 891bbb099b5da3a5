"""Store benchmark: fleet reports over many rows, and the records/s one writer sustains.

    python bench/bench_store.py [--rows 1000000] [--records 20000] [--pg URL]

For each backend (a SQLite file; a PostgreSQL database made for the run and dropped after it,
on ``--pg``'s server, default ``$LLM_ADAPTER_TEST_POSTGRES_URL`` or the local one):

- seeds ``--rows`` calls over 60 days (1,000 users, 8 model groups) straight into the store's
  schema (executemany / COPY), then times ``costs --by user --since 30d`` as the report runs
  it (``cost_report``, best of 3) and as the CLI does (a fresh process, best of 3). Baseline in
  the same run: a plain ``SELECT COUNT(*)`` over the same rows, so the ratio says what the
  grouping and the sums cost over reading the rows at all;
- writes ``--records`` full call records through ``LocalStore.write`` (the writer thread, group
  commit) and reports records/s until ``flush`` returns: what one replica can record.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.llm._observability.store_rows import _COLUMNS, _call_row  # noqa: E402
from adapters.llm._reports.queries import cost_report  # noqa: E402
from adapters.llm._observability.store import LocalStore  # noqa: E402
from tests.test_store import record  # noqa: E402

DAY = 86_400.0


def rows(n: int, now: float) -> Any:
    template = _call_row(record("0" * 32))
    rng = random.Random(7)
    models = [f"model-{i}" for i in range(8)]
    for i in range(n):
        started = now - rng.random() * 60 * DAY
        row = dict(template, call_id=f"{i:032x}", trace_id=f"{i:032x}",
                   started_at=started, ended_at=started + 1.0,
                   day=datetime.fromtimestamp(started, timezone.utc).strftime("%Y-%m-%d"),
                   user_id=f"user-{rng.randrange(1000)}", model_group=rng.choice(models),
                   cost=rng.random() / 100, cache_hit=0, environment="production")
        yield tuple(row[c] for c in _COLUMNS)


def seed(store: LocalStore, n: int, now: float) -> float:
    started = time.perf_counter()
    columns = ", ".join(_COLUMNS)
    if store.postgres:
        with closing(store.connect()) as conn:
            raw = conn.raw  # type: ignore[attr-defined]
            with raw.cursor().copy(f"COPY calls ({columns}) FROM STDIN") as copy:
                for row in rows(n, now):
                    copy.write_row(row)
            # What autovacuum does to a table after a bulk load: statistics, and the visibility
            # map an index-only scan of the covering index needs.
            raw.execute("VACUUM (ANALYZE) calls")
    else:
        with closing(store.connect()) as conn:
            marks = ", ".join("?" * len(_COLUMNS))
            conn.execute("BEGIN")
            conn.executemany(f"INSERT INTO calls ({columns}) VALUES ({marks})", rows(n, now))
            conn.execute("COMMIT")
            conn.execute("ANALYZE")
    return time.perf_counter() - started


def best(action: Any, times: int = 3) -> float:
    out = []
    for _ in range(times):
        started = time.perf_counter()
        action()
        out.append(time.perf_counter() - started)
    return min(out)


def report_times(store: LocalStore, db: str, home: str) -> dict[str, float]:
    since = datetime.now(timezone.utc) - timedelta(days=30)
    with closing(store.connect()) as conn:
        baseline = best(lambda: conn.execute("SELECT COUNT(*) FROM calls").fetchone())
        report = best(lambda: cost_report(conn, "user", since=since))
        groups = len(cost_report(conn, "user", since=since).rows)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LLM_ADAPTER_HOME": home}
    cli = best(lambda: subprocess.run(
        [sys.executable, "-m", "adapters.llm", "costs", "--by", "user", "--since", "30d",
         "--json", "--db", db], env=env, check=True, capture_output=True))
    return {"count(*)": baseline, "cost_report": report, "cli": cli, "groups": groups}


def write_rate(store: LocalStore, n: int) -> float:
    records = [record(uuid.uuid4().hex, started_at=time.time()) for _ in range(n)]
    started = time.perf_counter()
    for r in records:
        store.write(r)
    assert store.flush(600), "the writer did not catch up"
    elapsed = time.perf_counter() - started
    assert store.dropped == 0, f"{store.dropped} dropped (queue full): lower --records"
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--pg", default=os.environ.get("LLM_ADAPTER_TEST_POSTGRES_URL")
                        or "postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--only", choices=("sqlite", "postgres"), default=None,
                        help="measure one backend (default: both)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from tests.pg_support import create_database, drop_database

    now = time.time()
    home = tempfile.mkdtemp(prefix="bench-store-")
    results = {}
    for backend in (args.only,) if args.only else ("sqlite", "postgres"):
        url = create_database(args.pg) if backend == "postgres" else None
        try:
            path = Path(home) / backend / "calls.sqlite3"
            store = LocalStore(path) if url is None else \
                LocalStore(Path(home) / backend / "buffer.sqlite3", url=url)
            seeded = seed(store, args.rows, now)
            times = report_times(store, url or str(path), home)
            store.close()
            # The queue holds the whole run: this measures what the writer commits per second.
            big = args.records + 10
            writer = LocalStore(Path(home) / backend / "w.sqlite3", queue_size=big) \
                if url is None else LocalStore(Path(home) / backend / "wbuf.sqlite3", url=url,
                                               queue_size=big)
            rate = write_rate(writer, args.records)
            writer.close()
            results[backend] = (seeded, times, rate)
            print(backend, f"seeded in {seeded:.1f} s", times, f"{rate:,.0f} records/s",
                  flush=True)
        finally:
            if url is not None:
                drop_database(url)
    print(f"{args.rows:,} rows; costs --by user --since 30d; best of 3 (s)")
    print("| backend | seed s | COUNT(*) | cost_report | × COUNT(*) | CLI (fresh process) | "
          "groups | records/s written |")
    print("|---|---|---|---|---|---|---|---|")
    for backend, (seeded, t, rate) in results.items():
        print(f"| {backend} | {seeded:.1f} | {t['count(*)']:.3f} | {t['cost_report']:.3f} | "
              f"{t['cost_report'] / t['count(*)']:.1f} | {t['cli']:.3f} | {t['groups']:.0f} | "
              f"{rate:,.0f} |")


if __name__ == "__main__":
    main()
