"""Nothing lost: every call that returned is in the store when the process ends, however it ends.

Each guarantee is a script in a fresh process (its own LLM_ADAPTER_HOME, real litellm against
the session's simulator, the real Langfuse SDK against the loopback Langfuse), ended the way a
user's program ends: it just ends, ``sys.exit``, an unhandled exception, SIGINT, SIGTERM with
and without the application's own handler, SIGKILL. Then rows are counted in the store and
generations at the loopback Langfuse. The scripts of one test run concurrently (each spends
most of its life importing litellm), bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.llm import LLMResponse, UsageError
from adapters.llm.simulator import Scenario, Simulator

from .conftest import one_group, profiles, sim_deployment, unique, write_config
from .langfuse_server import LangfuseServer
from .processes import children_of, wait_ended
from .waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 240.0          # per script: a hang is forever, a slow import on a busy machine is not
WINDOW_S = 0.5           # SIGKILL: what may be lost, generously over the measured window


# argv: calls, kind (sync | async | stream), end (end | exit | raise | sigint | sigterm |
# own-handler | loop | aloop)
SCRIPT = r'''
import asyncio, signal, sys, time

calls, kind, end = int(sys.argv[1]), sys.argv[2], sys.argv[3]
if end == "own-handler":                 # the application's handler, set before the adapter
    def on_term(signum, frame):
        print("handled", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)

from adapters.llm import LiteLLMAdapter

llm = LiteLLMAdapter()
if end == "loop":                        # until killed: say each call once it is answered
    while True:
        response = llm.generate(prompt="go")
        print(f"answered {response.call_id} {time.monotonic():.6f}", flush=True)
if end == "aloop":                       # the same with `calls` calls in flight
    async def worker():
        while True:
            response = await llm.agenerate(prompt="go")
            print(f"answered {response.call_id} {time.monotonic():.6f}", flush=True)
    async def workers():
        await asyncio.gather(*(worker() for _ in range(calls)))
    asyncio.run(workers())
if kind == "sync":
    for i in range(calls):
        llm.generate(prompt=f"question {i}")
elif kind == "stream":
    for i in range(calls):
        "".join(llm.stream(prompt=f"question {i}"))
else:
    async def main():
        await asyncio.gather(*(llm.agenerate(prompt=f"question {i}") for i in range(calls)))
    asyncio.run(main())
print("ready", flush=True)
if end == "exit":
    sys.exit(3)
if end == "raise":
    raise RuntimeError("the application failed")
if end in ("sigint", "sigterm", "own-handler"):
    time.sleep(TIMEOUT_S)                 # the test sends the signal
'''.replace("TIMEOUT_S", str(int(TIMEOUT)))


@dataclass
class Run:
    home: Path
    public_key: str
    returncode: int
    stdout: str
    stderr: str

    def rows(self) -> int:
        return len(stored_ids(self.home))


@dataclass
class Env:
    sim: Simulator
    langfuse: LangfuseServer
    base: Path

    def prepare(self, tag: str) -> tuple[dict[str, str], Path, str]:
        """A fresh home, config and Langfuse project for one script."""
        home = self.base / f"{tag}-{uuid.uuid4().hex[:6]}"
        home.mkdir()
        config = write_config(home, one_group(
            unique("durable"), key="sk-test-durable-0001",
            environments=profiles(production={"langfuse": {"enabled": True}})),
            sim_url=self.sim.url, name="config.yaml")
        public, secret = f"pk-lf-{uuid.uuid4().hex[:12]}", f"sk-lf-{uuid.uuid4().hex[:12]}"
        self.langfuse.add_key(public, secret)
        env = {**os.environ, "PYTHONPATH": _pythonpath(), "LLM_ADAPTER_HOME": str(home),
               "PYTHONFAULTHANDLER": "1",
               "LLM_ADAPTER_CONFIG": str(config), "ENVIRONMENT": "production",
               "LANGFUSE_PUBLIC_KEY": public, "LANGFUSE_SECRET_KEY": secret,
               "LANGFUSE_BASE_URL": self.langfuse.url, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
               "LLM_ADAPTER_PSEUDONYM_KEY": "7" * 64}     # else a warning at every start
        return env, home, public

    def run(self, calls: int, kind: str, end: str) -> Run:
        env, home, public = self.prepare(f"{kind}-{end}-{calls}")
        proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(calls), kind, end],
                                env=env, cwd=home, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            if end in ("sigint", "sigterm", "own-handler"):
                assert proc.stdout is not None
                line = proc.stdout.readline()          # blocks until the calls are answered
                assert line.strip() == "ready", (line, proc.stderr.read() if proc.stderr else "")
                proc.send_signal(signal.SIGINT if end == "sigint" else signal.SIGTERM)
            out, err = finished(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        return Run(home, public, proc.returncode, out, err)

    def generations(self, public_key: str) -> set[str]:
        return {s.span_id for s in self.langfuse.spans()
                if s.scope_attributes.get("public_key") == public_key
                and s.attr("langfuse.observation.type") == "generation"}


def finished(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """stdout and stderr of ``proc`` once it exited; one that does not within TIMEOUT is a
    hang: its threads' stacks (faulthandler, on SIGABRT) are in the failure."""
    try:
        return proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        out, err = proc.communicate(timeout=30)
        raise AssertionError(f"the process did not exit within {TIMEOUT} s; stdout: "
                             f"{out[-500:]!r}; stderr:\n{err[-6000:]}") from None


def _pythonpath() -> str:
    existing = os.environ.get("PYTHONPATH")
    return f"{ROOT}{os.pathsep}{existing}" if existing else str(ROOT)


def stored_ids(home: Path) -> list[str]:
    """The calls stored under ``home`` (simulated calls may have a store of their own there)."""
    ids: list[str] = []
    for path in (home / "calls.sqlite3", home / "simulation" / "calls.sqlite3"):
        if path.exists():
            with closing(sqlite3.connect(path)) as conn:
                ids += [row[0] for row in conn.execute("SELECT call_id FROM calls")]
    return ids


@pytest.fixture(scope="module")
def langfuse() -> Iterator[LangfuseServer]:
    with LangfuseServer() as server:
        yield server


@pytest.fixture(scope="module")
def env(sim: Simulator, langfuse: LangfuseServer,
        tmp_path_factory: pytest.TempPathFactory) -> Env:
    return Env(sim, langfuse, tmp_path_factory.mktemp("durable"))


def run_all(env: Env, cases: list[tuple[int, str, str]]) -> dict[tuple[int, str, str], Run]:
    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = pool.map(lambda case: env.run(*case), cases)
        return dict(zip(cases, runs))


def assert_all_recorded(env: Env, run: Run, calls: int, *, traceback: str | None = None) -> None:
    """``calls`` rows and generations, and nothing on stderr at exit but the expected
    traceback (``traceback``: its last line)."""
    if traceback is None:
        assert "Traceback" not in run.stderr, run.stderr
    else:
        assert run.stderr.strip().splitlines()[-1].startswith(traceback), run.stderr
    for noise in ("Exception ignored", "Task was destroyed but it is pending", "llm-adapter:"):
        assert noise not in run.stderr, run.stderr
    assert run.rows() == calls, run.stderr
    # Delivered to Langfuse at exit (its share of the exit is bounded; the loopback answers).
    assert len(env.generations(run.public_key)) == calls, run.stderr


# -- a script that just ends, without flush_langfuse() -----------------------------------------
ENDS = [(n, kind, "end") for n in (1, 5, 50) for kind in ("sync", "async", "stream")]


@pytest.fixture(scope="module")
def ended(env: Env) -> dict[tuple[int, str, str], Run]:
    return run_all(env, ENDS)


@pytest.mark.parametrize("case", ENDS, ids=lambda c: f"{c[1]}-{c[0]}")
def test_a_script_that_just_ends_has_every_call_stored_and_traced(env, ended, case):
    run = ended[case]
    assert run.returncode == 0, run.stderr
    assert_all_recorded(env, run, case[0])


# -- sys.exit, an unhandled exception, signals -------------------------------------------------
EXITS = [(5, "sync", "exit"), (5, "stream", "raise"), (5, "sync", "sigint"),
         (5, "async", "sigterm"), (5, "sync", "own-handler")]
STATUS = {"exit": 3, "raise": 1, "sigint": -signal.SIGINT, "sigterm": -signal.SIGTERM,
          "own-handler": 0}
TRACEBACK = {"raise": "RuntimeError: the application failed", "sigint": "KeyboardInterrupt"}


@pytest.fixture(scope="module")
def exited(env: Env) -> dict[tuple[int, str, str], Run]:
    return run_all(env, EXITS)


@pytest.mark.parametrize("case", EXITS, ids=lambda c: c[2])
def test_every_call_is_stored_however_the_process_ends(env, exited, case):
    run = exited[case]
    # The process ends as it would without the library: its own status, killed by SIGTERM
    # where SIGTERM had its default action, the application's handler where it had one.
    assert run.returncode == STATUS[case[2]], run.stderr
    assert_all_recorded(env, run, case[0], traceback=TRACEBACK.get(case[2]))
    if case[2] == "own-handler":
        assert "handled" in run.stdout


# -- SIGKILL: a bounded window ------------------------------------------------------------------
@pytest.mark.parametrize("answers,in_flight,both", [
    (3, 1, False), (40, 1, False), (200, 32, False), (3, 1, True), (40, 1, True), (200, 32, True)])
def test_sigkill_loses_at_most_the_last_moments(env, answers, in_flight, both):
    """Killed after its 3rd answer (early in a run: threads starting, lazy imports), its 40th,
    or its 200th with 32 calls in flight, alone or with its recording process (``both``: the
    end of a container kills every process in it): once its recording process ended and the
    next process opened the store, what is lost was answered within the last WINDOW_S before
    the kill."""
    environ, home, _ = env.prepare(f"kill-{answers}-{in_flight}{'-both' if both else ''}")
    loop = ["0", "sync", "loop"] if in_flight == 1 else [str(in_flight), "async", "aloop"]
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, *loop], env=environ,
                            cwd=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    answered: dict[str, float] = {}
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + TIMEOUT
        while len(answered) < answers and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            _, call_id, at = line.split()
            answered[call_id] = float(at)
        recording = children_of(proc.pid)
        assert len(recording) == 1, "no recording process to kill"
        killed_at = time.monotonic()
        if both:                # what it read and journaled survives; what it did not is lost
            os.kill(recording[0], signal.SIGKILL)
        proc.kill()
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    for line in out.splitlines():           # answered before the kill, read after it
        _, call_id, at = line.split()
        answered[call_id] = float(at)
    assert len(answered) >= answers, err
    wait_ended(recording)       # it commits what it was handed, then sees its caller gone
    reopened = subprocess.run([sys.executable, "-c", REOPEN], env=environ, cwd=home,
                              capture_output=True, text=True, timeout=TIMEOUT)
    assert reopened.stdout.strip() == "ok", reopened.stderr
    lost = set(answered) - set(stored_ids(home))
    late = {call_id for call_id in lost if answered[call_id] < killed_at - WINDOW_S}
    assert not late, f"lost {len(lost)} of {len(answered)}, {len(late)} older than {WINDOW_S} s"


# The next process on the store: its writer commits what the killed one left in the journal.
REOPEN = """
from adapters.llm._observability.store import LocalStore, default_path
store = LocalStore(default_path())
print("ok" if store.recover_pending() and store.close() else "not ok")
"""


def journaled(home: Path) -> int:
    """Calls held in the journals of the store under ``home`` (not yet committed by a writer)."""
    from adapters.llm._observability.store_journal import _frames

    count = 0
    for path in (home / "calls.sqlite3.pending").glob("*.log"):
        fd = os.open(path, os.O_RDONLY)
        try:
            count += sum(len(frame) for frame in _frames(fd))
        finally:
            os.close(fd)
    return count


def test_sigkill_loses_nothing_the_writer_was_handed_but_had_not_committed(env):
    """Another process holds the store's write lock, so the script's recording process
    commits nothing: the 20 calls are in its journal only when both are killed (as the end of
    a container kills every process in it). The next process on the store (``traces sync``)
    commits each of them once and delivers each generation once; a second sync finds nothing
    left to do."""
    from adapters.llm._observability.store import LocalStore

    environ, home, public = env.prepare("journal")
    LocalStore(home / "calls.sqlite3").close()              # the file, migrated
    lock = sqlite3.connect(home / "calls.sqlite3", isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, "20", "async", "sigterm"],
                            env=environ, cwd=home, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()                   # the 20 calls are answered
        assert line.strip() == "ready", (line, proc.stderr.read() if proc.stderr else "")
        wait_until(lambda: journaled(home) == 20, timeout=10,
                   what="the 20 answered calls in the store's journal")
        assert stored_ids(home) == []                   # the writer is still waiting
        recording = children_of(proc.pid)
        assert len(recording) == 1
        for pid in (proc.pid, *recording):
            os.kill(pid, signal.SIGKILL)
        proc.communicate(timeout=TIMEOUT)
        wait_ended(recording)
    finally:
        if proc.poll() is None:
            proc.kill()
        lock.rollback()
        lock.close()
    sync = [sys.executable, "-m", "adapters.llm", "traces", "sync"]
    first = subprocess.run(sync, env=environ, cwd=home, capture_output=True, text=True,
                           timeout=TIMEOUT)
    assert first.returncode == 0, first.stderr
    assert "recovered 20 call(s)" in first.stdout, first.stdout
    assert len(stored_ids(home)) == len(set(stored_ids(home))) == 20
    assert journaled(home) == 0 and not list((home / "calls.sqlite3.pending").glob("*.log"))
    again = subprocess.run(sync, env=environ, cwd=home, capture_output=True, text=True,
                           timeout=TIMEOUT)
    assert again.returncode == 0 and "recovered" not in again.stdout, again.stdout
    assert len(stored_ids(home)) == 20
    sent = [s.span_id for s in env.langfuse.spans()
            if s.scope_attributes.get("public_key") == public
            and s.attr("langfuse.observation.type") == "generation"]
    assert len(sent) == len(set(sent)) == 20                # each once


# -- a value SQLite cannot encode -----------------------------------------------------------------
def test_an_answer_with_a_lone_surrogate_is_stored_with_its_batch_mates(make_adapter, sim,
                                                                      tmp_path, caplog):
    poison = unique("surrogate")
    sim.set_scenario(poison, Scenario(content="bad \ud800 half"))
    llm = make_adapter({
        "model_list": [sim_deployment("main", unique("mates"), key="sk-x", with_id=False),
                       sim_deployment("poison", poison, key="sk-x", with_id=False)],
        "environments": profiles(development={"langfuse": {"enabled": False}}),
        "store": {"path": str(tmp_path / "poison" / "calls.sqlite3")}})

    async def calls() -> list[LLMResponse]:
        # One batch: they all end within the recorder's gathering window.
        return await asyncio.gather(
            *(llm.agenerate(prompt=f"q{i}") for i in range(10)),
            llm.agenerate(prompt="tell me", model="poison"),
            *(llm.agenerate(prompt=f"r{i}") for i in range(10)))

    answered = asyncio.run(calls())
    assert answered[10].content == "bad \ud800 half"        # the caller gets it as it came
    assert llm.flush_langfuse(timeout=30)
    store = llm.telemetry.store
    stored = set(stored_ids(store.path.parent))
    assert {r.call_id for r in answered} == stored, "a batch mate was lost"
    bad = store.get_call(answered[10].call_id)
    assert bad.output == "bad \ufffd half"
    assert bad.metadata["_unstorable_text_replaced"] == ["output"]
    said = [r.getMessage() for r in caplog.records if "cannot be stored" in r.getMessage()]
    assert len(said) == 1 and answered[10].call_id in said[0], said   # from the recording process


def test_records_the_store_cannot_take_even_escaped_are_dropped_alone(tmp_path):
    """The last resort: a record that fails after escaping is dropped alone, counted."""
    from adapters.llm._observability.records import CallRecord, Usage
    from adapters.llm._observability.store import LocalStore

    store = LocalStore(tmp_path / "calls.sqlite3")

    def record(call_id: str, **fields: object) -> CallRecord:
        return CallRecord(call_id=call_id, trace_id="t" * 32, span_id=call_id[:16],
                          parent_span_id=None, started_at=time.time(), ended_at=time.time(),
                          environment="test", model_group="main", latency_ms=1.0,
                          **{"status": "ok", **fields})  # type: ignore[arg-type]

    good = [record(f"good-{i:02d}-{uuid.uuid4().hex}") for i in range(8)]
    escaped = record(f"err-{uuid.uuid4().hex}", status="error", error_kind="ProviderError",
                     error_message="upstream said \ud800", session_id="s\udc00",
                     input=[{"role": "user", "content": "odd \udfff input"}],
                     metadata={"note": "\ud83d", "pair": "\ud83d\ude00"}, tags=("\udc00",))
    hopeless = record(f"big-{uuid.uuid4().hex}", usage=Usage(input_tokens=2**70))
    for item in (*good[:4], escaped, hopeless, *good[4:]):
        store.write(item)
    assert store.flush(10)
    stored = set(stored_ids(tmp_path))
    assert {r.call_id for r in good} | {escaped.call_id} == stored
    kept = store.get_call(escaped.call_id)
    assert kept.error_message == "upstream said \ufffd" and kept.session_id == "s\ufffd"
    assert kept.input[0]["content"] == "odd \ufffd input" and kept.tags == ("\ufffd",)
    assert kept.metadata["note"] == "\ufffd" and kept.metadata["pair"] == "\U0001f600"
    assert set(kept.metadata["_unstorable_text_replaced"]) == \
        {"error_message", "session_id", "input", "metadata", "tags"}
    assert store.rejected == 1 and store.escaped == 1
    store.close()


# -- a process ends when its work ends -------------------------------------------------------
EXIT_RUNS = int(os.environ.get("LLM_ADAPTER_EXIT_RUNS", "10"))
TWO_LINES = ("from adapters.llm import LiteLLMAdapter\n"
             "print(LiteLLMAdapter(model='claude-sonnet').generate(prompt='hi').content)\n")


@pytest.mark.parametrize("program", ["cli", "script"])
def test_the_cli_and_a_two_line_script_always_exit(tmp_path, program):
    """``llm-adapter chat`` and a two-line script, in the simulation environment (the
    in-process simulator), EXIT_RUNS times each, two at a time: every run exits by itself,
    with its answer printed and stored, and no pending-task noise."""
    command = [sys.executable, "-m", "adapters.llm", "chat", "hi"] if program == "cli" \
        else [sys.executable, "-c", TWO_LINES]

    def once(i: int) -> tuple[int | None, str, str, int]:
        home = tmp_path / f"run-{i}"
        home.mkdir()
        environ = {**os.environ, "PYTHONPATH": _pythonpath(), "LLM_ADAPTER_HOME": str(home),
                   "ENVIRONMENT": "simulation", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        for key in ("LLM_ADAPTER_CONFIG", "LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY"):
            environ.pop(key, None)
        proc = subprocess.Popen(command, env={**environ, "PYTHONFAULTHANDLER": "1"}, cwd=home,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = finished(proc)
        except AssertionError as exc:       # a hang: the stacks are in the message
            return None, "", str(exc), 0
        return proc.returncode, out, err, len(stored_ids(home))

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(once, range(EXIT_RUNS)))
    hung = [r for r in results if r[0] is None]
    assert not hung, f"{len(hung)} of {EXIT_RUNS} runs did not exit: {hung[0][2][-2000:]}"
    for code, out, err, rows in results:
        assert code == 0, err
        assert "Simulated answer" in out
        assert "Task was destroyed" not in err, err
        assert rows == 1, err


# -- close(), with, async with ----------------------------------------------------------------
def close_config(name: str, path: Path) -> dict:
    """One group, untraced, its calls stored at ``path``."""
    return {"model_list": [sim_deployment("main", name, key="sk-x", with_id=False)],
            "environments": profiles(development={"langfuse": {"enabled": False}}),
            "store": {"path": str(path)}}


def test_with_block_writes_every_call_down_and_closes_the_adapter(make_adapter, tmp_path):
    path = tmp_path / "with" / "calls.sqlite3"
    with make_adapter(close_config(unique("with"), path)) as llm:
        ids = [llm.generate(prompt=f"q{i}").call_id for i in range(5)]
        stream = llm.stream(prompt="streamed")
        assert "".join(stream)
        ids.append(stream.response.call_id)
    assert set(ids) <= set(stored_ids(path.parent))           # no flush: the block's end
    with pytest.raises(UsageError, match="closed"):
        llm.generate(prompt="after")
    assert llm.close() is True                                  # twice: harmless


def test_async_with_block_writes_every_call_down(make_adapter, tmp_path):
    path = tmp_path / "async-with" / "calls.sqlite3"
    llm = make_adapter(close_config(unique("awith"), path))

    async def main() -> list[str]:
        async with llm:
            answers = await asyncio.gather(*(llm.agenerate(prompt=f"q{i}") for i in range(5)))
            chunks = await llm.agenerate(prompt="streamed", stream=True)
            text = "".join([c async for c in chunks])
            assert text
        return [a.call_id for a in answers] + [chunks.response.call_id]

    ids = asyncio.run(main())
    assert len(ids) == 6 and set(ids) <= set(stored_ids(path.parent))
    with pytest.raises(UsageError, match="closed"):
        asyncio.run(llm.agenerate(prompt="after"))


def test_the_batch_worker_never_strands_an_item():
    """Items put in bursts and pauses, from several threads, are all handled without a
    drain, each within a generous bound of the batch window; stop() handles the rest."""
    import random
    import threading

    from adapters.llm._observability.batching import BatchWorker

    handled: dict[int, float] = {}
    put_at: dict[int, float] = {}
    worker: BatchWorker[int] = BatchWorker("test-batches", lambda batch: handled.update(
        (i, time.monotonic()) for i in batch), interval=0.005)

    def producer(offset: int) -> None:
        rng = random.Random(offset)
        for i in range(offset, offset + 300):
            put_at[i] = time.monotonic()
            worker.put(i)
            time.sleep(rng.choice((0, 0, 0.0005, 0.003, 0.02)))

    threads = [threading.Thread(target=producer, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_until(lambda: len(handled) >= len(put_at), timeout=5,
               what="every batch handed to the worker handled")
    assert set(handled) == set(put_at)
    assert max(handled[i] - put_at[i] for i in put_at) < 1.0
    worker.put(-1)
    assert worker.stop(5) and -1 in handled
    worker.put(-2)                              # after stop: dropped and counted
    assert worker.dropped == 1 and -2 not in handled


ENDS_MID_IMPORT = """
from adapters.llm import LiteLLMAdapter
LiteLLMAdapter(environment="simulation", enable_langfuse=False).telemetry
"""


def test_a_script_that_ends_while_litellm_is_still_importing_exits_cleanly(tmp_path):
    """The first adapter starts importing litellm in the background; a script that ends before
    it finished would finalize under a thread in native code, which aborts the process."""
    def run(i: int) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "LLM_ADAPTER_HOME": str(tmp_path / f"h{i}")}
        return subprocess.run([sys.executable, "-c", ENDS_MID_IMPORT], capture_output=True,
                              text=True, timeout=120, env=env, cwd=tmp_path)

    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(run, range(8)))
    assert [d.returncode for d in done] == [0] * 8, [d.stderr[-300:] for d in done]
    assert not any("FATAL" in d.stderr or "Traceback" in d.stderr for d in done)


# -- the recording process ----------------------------------------------------------------------
def recording_children() -> list[int]:
    """This process's recording processes."""
    return [pid for pid in children_of(os.getpid())
            if b"recording_child" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def test_a_recording_process_killed_mid_run_is_replaced_and_nothing_is_lost(env):
    """SIGKILL the recording process (the OOM killer's choice, say) while calls go on: the
    caller starts another, hands it what the dead one had not taken, the dead one's journal is
    replayed, and every answered call is stored and delivered once."""
    environ, home, public = env.prepare("child-killed")
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, "4", "async", "aloop"], env=environ,
                            cwd=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    answered: set[str] = set()
    try:
        assert proc.stdout is not None
        while len(answered) < 60:
            answered.add(proc.stdout.readline().split()[1])
        first = children_of(proc.pid)
        assert len(first) == 1
        os.kill(first[0], signal.SIGKILL)
        while len(answered) < 120:
            answered.add(proc.stdout.readline().split()[1])
        proc.send_signal(signal.SIGTERM)                 # drained, then killed by it
        out, err = finished(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    for line in out.splitlines():
        answered.add(line.split()[1])
    assert proc.returncode == -signal.SIGTERM, err
    assert "the recording process ended" in err and "starting another" in err, err
    stored = stored_ids(home)
    assert set(stored) == answered and len(stored) == len(answered), err
    sent = [s.span_id for s in env.langfuse.spans()
            if s.scope_attributes.get("public_key") == public
            and s.attr("langfuse.observation.type") == "generation"]
    assert sorted(sent) == sorted({c[:16] for c in answered}), "each delivered once"


# argv: calls, config paths: one adapter on each (each its own store and recording process)
MANY = r'''
import sys
from adapters.llm import LiteLLMAdapter, load_config

for path in sys.argv[2:]:
    llm = LiteLLMAdapter(config=load_config(path, load_dotenv=False), enable_langfuse=True)
    for i in range(int(sys.argv[1])):
        llm.generate(prompt=f"question {i}")
'''


def test_a_script_with_several_stores_ends_with_each_of_them_complete(env):
    """Each store has its recording process; at exit they all commit and deliver (closed at
    the same time, so the exit's budget is not used up by the first ones)."""
    environ, home, public = env.prepare("many-stores")
    configs = [write_config(home / f"s{i}", one_group(
        unique("many"), key="sk-test-many-0001", store={"path": str(home / f"s{i}" / "c.db")},
        environments=profiles(production={"langfuse": {"enabled": True}})),
        sim_url=env.sim.url, name="config.yaml") for i in range(4)]
    proc = subprocess.Popen([sys.executable, "-c", MANY, "3", *map(str, configs)], env=environ,
                            cwd=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = finished(proc)
    assert proc.returncode == 0 and "llm-adapter:" not in err, err
    for i in range(4):
        with closing(sqlite3.connect(home / f"s{i}" / "c.db")) as conn:
            assert conn.execute("SELECT count(*) FROM calls").fetchone()[0] == 3, (i, err)
    assert len(env.generations(public)) == 12, err


def test_exit_steps_run_at_the_same_time_and_a_stuck_one_is_left_behind():
    from adapters.llm._observability.sinks import together

    meet = threading.Barrier(4, timeout=10)      # passed only if all four run at once
    assert together([lambda: meet.wait() >= 0 for _ in range(4)], time.monotonic() + 20)
    stuck = threading.Event()
    assert not together([lambda: True, lambda: stuck.wait()], time.monotonic() + 0.2)
    stuck.set()
    assert not together([lambda: True, lambda: False], time.monotonic() + 20)


def test_records_cross_the_pipe_whole_however_the_reads_cut_it():
    """Records travel as their field values: every field of every kind arrives, in frames a
    reader may get in any pieces."""
    import dataclasses

    from adapters.llm._observability.recording_wire import Frames, encode, encode_batch
    from adapters.llm._observability.records import Attempt, CallRecord, Usage

    values: dict[str, object] = {}
    for i, f in enumerate(dataclasses.fields(CallRecord)):
        values[f.name] = {"usage": Usage(1, 2, 3, 4, 5), "attempts": [
            Attempt("d1", "g", "openai", "error", "timeout", 504, 1.5, "slow", 0.01),
            Attempt("d2", "g", "anthropic", "ok")], "tags": ("a", "b"),
            "input": [{"role": "user", "content": "hi \u00e9"}], "cost_details": {"total": 1.0},
            "metadata": {"k": [1, 2]}, "tool_calls": [{"id": "t"}], "model_parameters": {"t": 0.1},
        }.get(f.name, f"v{i}" if f.type in ("str", "str | None") else i)
    record = CallRecord(**values)   # type: ignore[arg-type]
    assert all(getattr(record, f.name) != f.default for f in dataclasses.fields(CallRecord))
    other = dataclasses.replace(record, output="masked", input=[{"role": "user", "content": "***"}])
    frames_bytes = (encode_batch(1, [(record, record), (record, other)]) + encode(("took", 2)))
    read, write = os.pipe()
    try:
        frames = Frames(read)
        got = []
        for i in range(0, len(frames_bytes), 7):          # 7 bytes at a time
            os.write(write, frames_bytes[i:i + 7])
            got += frames.read()
    finally:
        os.close(read)
        os.close(write)
    assert [m[0] for m in got] == ["batch", "took"]
    (first, second), (third, fourth) = got[0][2]
    assert first == record and first is second      # one object, sent once
    assert third == record and fourth == other and fourth is not third
    one = encode_batch(1, [(record, record)])
    assert len(one) < 500       # field values only (pickle's default for the record: 1,015 bytes)


def test_a_message_longer_than_one_read_arrives_whole():
    """A batch of large records is longer than one read takes (and than the pipe holds):
    the reader gathers it over as many reads as it needs, and what follows it is not lost."""
    import threading

    from adapters.llm._observability import recording_wire
    from adapters.llm._observability.recording_wire import Frames, encode, encode_batch
    from adapters.llm._observability.records import CallRecord

    records = [CallRecord(call_id=f"{i:032x}", trace_id="1" * 32, span_id="2" * 16,
                          parent_span_id=None, started_at=1.0, ended_at=2.0,
                          environment="test", model_group="g", status="ok", latency_ms=1.0,
                          output=f"answer {i} " + "x" * 100_000) for i in range(3)]
    data = encode_batch(7, [(r, r) for r in records]) + encode(("flush", 8, 1.0))
    assert len(data) > 4 * recording_wire._READ
    read, write = os.pipe()
    writer = threading.Thread(target=lambda: os.write(write, data))
    try:
        writer.start()              # blocks on the full pipe until the reader takes it
        frames = Frames(read)
        got = frames.available()
        if len(got) < 2:
            got += frames.available()
    finally:
        writer.join(10)
        os.close(read)
        os.close(write)
    assert [m[0] for m in got] == ["batch", "flush"]
    assert [record for record, _ in got[0][2]] == records


def test_frames_say_when_a_message_can_be_had_without_waiting():
    """The recording process looks at its pipe while batches keep coming, and reads only
    when that read cannot wait: a partial frame is not a message yet, its end is."""
    from adapters.llm._observability.recording_wire import Frames, encode

    frame = encode(("took", 1, 2, 3))
    read, write = os.pipe()
    try:
        frames = Frames(read)
        assert frames.ready() is False                  # nothing written
        os.write(write, frame[:5])
        assert frames.ready() is True                   # bytes to read
        assert frames.read() == []                      # half a frame: no message
        assert frames.ready() is False
        os.write(write, frame[5:])
        assert frames.ready() is True
        assert frames.available() == [("took", 1, 2, 3)]
        assert frames.ready() is False
        os.write(write, frame + frame[:3])
        assert frames.read() == [("took", 1, 2, 3)]
        os.close(write)
        write = -1
        assert frames.ready() is True                   # the end of the pipe: read it
        assert frames.available() == [] and frames.ended
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)


def test_the_recording_process_acknowledges_every_batch(make_adapter, tmp_path):
    """The child's replies ("took", for all the batches it took together) reach the caller,
    which then keeps no copy of them: none would be handed to a next child again."""
    path = tmp_path / "acks" / "calls.sqlite3"
    with make_adapter(close_config(unique("acks"), path)) as llm:
        async def calls() -> None:
            await asyncio.gather(*(llm.agenerate(prompt=f"q{i}") for i in range(40)))

        asyncio.run(calls())
        assert llm.flush_langfuse(timeout=30) is True
        (process,) = llm.telemetry.recorder.sinks
        assert process._seq > 1 and process._unacked == {}     # replies come before "flushed"
    assert len(stored_ids(path.parent)) == 40


def test_ctrl_c_to_the_whole_process_group_still_records_every_call(env):
    """Ctrl-C in a terminal signals the whole foreground group; the recording process is in
    a session of its own, so it commits what the ending caller hands it."""
    environ, home, public = env.prepare("group-sigint")
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, "50", "async", "sigint"],
                            env=environ, cwd=home, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        os.killpg(proc.pid, signal.SIGINT)
        out, err = finished(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGINT, err
    assert len(stored_ids(home)) == 50, err
    assert len(env.generations(public)) == 50, err


def test_recording_falls_back_to_the_calling_process_when_no_process_can_start(
        make_adapter, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    before = recording_children()
    llm = make_adapter(one_group(unique("fallback"), key="sk-x",
                                 store={"path": str(tmp_path / "fallback" / "calls.sqlite3")}))
    ids = [llm.generate(prompt=f"q{i}").call_id for i in range(3)]
    assert llm.flush_langfuse(timeout=30)
    assert sorted(stored_ids(llm.telemetry.store.path.parent)) == sorted(ids)
    said = [r.getMessage() for r in caplog.records if "recorded in this process" in
            r.getMessage()]
    assert len(said) == 1 and "cannot be started" in said[0], said
    assert recording_children() == before


def test_batches_a_failing_recording_process_never_took_are_recorded_in_the_calling_process(
        make_adapter, tmp_path):
    """The recording process is stopped (it reads nothing, acknowledges nothing), then given
    up for recording here: the batches it held are handed to this process's store, whole."""
    path = tmp_path / "given-up" / "calls.sqlite3"
    llm = make_adapter(close_config(unique("given-up"), path))
    llm.generate(prompt="first")
    (process,) = llm.telemetry.recorder.sinks
    assert llm.flush_langfuse(timeout=30) and process.pid is not None
    os.kill(process.pid, signal.SIGSTOP)
    try:
        ids = [llm.generate(prompt=f"q{i}").call_id for i in range(3)]
        assert len(process._unacked) == 3
        with process._write_lock:
            process._fall_back("was stopped (a test)")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)
    assert llm.flush_langfuse(timeout=30)
    assert set(ids) <= set(stored_ids(path.parent))
    assert process.failures == {}


def test_recorder_thread_records_in_the_calling_process(make_adapter, tmp_path):
    before = recording_children()
    llm = make_adapter(one_group(unique("threaded"), key="sk-x", store={
        "recorder": "thread", "path": str(tmp_path / "threaded" / "calls.sqlite3")}))
    ids = [llm.generate(prompt=f"q{i}").call_id for i in range(3)]
    assert llm.flush_langfuse(timeout=30)
    assert sorted(stored_ids(llm.telemetry.store.path.parent)) == sorted(ids)
    assert recording_children() == before
    default = make_adapter(one_group(unique("in-child"), key="sk-x",
                                     store={"path": str(tmp_path / "child" / "calls.sqlite3")}))
    default.generate(prompt="q")
    assert len(recording_children()) == len(before) + 1
