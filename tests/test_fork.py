"""fork after use: a worker forked from a parent that already made calls (gunicorn --preload,
Celery prefork, multiprocessing's fork start method) answers or gets a typed error within its
deadline, never hangs. Each case is a fresh script in a subprocess with a wall-clock bound."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import sim_deployment, unique, write_config

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")

SCRIPT = textwrap.dedent('''
    import asyncio, json, multiprocessing, os, sys, time
    from adapters.llm import LiteLLMAdapter, UsageError, load_config

    mode, config_path, before = sys.argv[1], sys.argv[2], sys.argv[3]
    llm = LiteLLMAdapter(config=load_config(config_path, load_dotenv=False))
    if before == "called":
        assert llm.generate("parent call", timeout=10).content
    elif before == "stored":     # the store's writer thread runs in the parent, no call made
        llm.score("parent-score", 1.0, trace_id="0" * 32)
        assert llm.flush_langfuse(10)

    def calls():
        """What the child sees: each call's answer or typed error, and how long it took."""
        out = []
        for how in ("sync", "async"):
            started = time.monotonic()
            try:
                if how == "sync":
                    response = llm.generate(f"child {how} call", timeout=10)
                else:
                    response = asyncio.run(llm.agenerate(f"child {how} call", timeout=10))
                result = {"ok": response.deployment, "call_id": response.call_id}
            except UsageError as exc:
                result = {"error": type(exc).__name__, "message": str(exc)}
            except Exception as exc:   # reported to the test, which fails on it
                result = {"error": type(exc).__name__, "message": str(exc), "untyped": True}
            result.update(how=how, seconds=time.monotonic() - started, pid=os.getpid())
            out.append(result)
        assert llm.flush_langfuse(10)
        try:
            llm.warmup()
            out.append({"how": "warmup", "ok": "warm"})
        except UsageError as exc:
            out.append({"how": "warmup", "error": type(exc).__name__, "message": str(exc),
                        "seconds": 0.0})
        return out

    def child_to(queue):
        queue.put(calls())

    if mode == "os.fork":
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            os.write(write, json.dumps(calls()).encode())
            os._exit(0)
        os.close(write)
        data = b""
        while chunk := os.read(read, 65536):
            data += chunk
        os.waitpid(pid, 0)
        results = json.loads(data)
    else:
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        process = ctx.Process(target=child_to, args=(queue,))
        process.start()
        results = queue.get(timeout=60)
        process.join(30)
    # The parent goes on working after its child.
    results.append({"parent_after": llm.generate("parent again", timeout=10).deployment})
    print("RESULT " + json.dumps(results))
''')


def run_script(tmp_path: Path, sim, mode: str, before: str) -> tuple[list[dict], Path]:
    dep = unique("fork")
    home = tmp_path / "home"
    config = write_config(tmp_path, {"model_list": [
        sim_deployment("only", dep, key="sk-test-fork-0001")]}, sim_url=sim.url,
        name="config.yaml")
    script = tmp_path / "fork_script.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "LLM_ADAPTER_HOME": str(home),
           "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.run([sys.executable, str(script), mode, str(config), before], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):]), home


def stored_calls(home: Path) -> dict[str, str]:
    with sqlite3.connect(home / "calls.sqlite3") as conn:
        return dict(conn.execute("SELECT call_id, status FROM calls").fetchall())


@pytest.mark.parametrize("mode", ["os.fork", "multiprocessing"])
def test_child_forked_after_use_gets_a_typed_error_in_time(tmp_path, sim, mode):
    results, home = run_script(tmp_path, sim, mode, "called")
    *child, parent = results
    assert [r["how"] for r in child] == ["sync", "async", "warmup"]
    for result in child:
        assert not result.get("untyped"), result
        assert result["error"] == "UsageError", result
        assert "after the fork" in result["message"] and "spawn" in result["message"]
        assert result["seconds"] < 10, "within the call's 10 s deadline"
    assert parent["parent_after"], "the parent still answers"


@pytest.mark.parametrize("mode,before", [("os.fork", "nothing"), ("multiprocessing", "nothing"),
                                         ("os.fork", "stored")])
def test_child_forked_before_first_call_answers_and_is_stored(tmp_path, sim, mode, before):
    results, home = run_script(tmp_path, sim, mode, before)
    *child, parent = results
    assert [r["how"] for r in child] == ["sync", "async", "warmup"]
    assert all("ok" in r for r in child), child
    assert all(r["pid"] != os.getpid() for r in child[:2])
    stored = stored_calls(home)
    for result in child[:2]:
        assert stored.get(result["call_id"]) == "ok", "the child's call is in the store"
    assert parent["parent_after"]
