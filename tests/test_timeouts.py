"""Timeouts as LiteLLM means them, one deadline per call, counted from the call itself.

Through real litellm over real HTTP to the simulator. ``router_settings.timeout`` and a
deployment's ``timeout`` bound each attempt; the caller's ``timeout=`` (else
``router_settings.deadline``) bounds the whole call, start-up included. Timing is asserted only
as the guarantees themselves ("within its deadline") with generous bounds otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from adapters.llm import ConfigError, DeadlineExceeded, UsageError, load_config
from adapters.llm._routing.gateway import DEADLINE_HEADROOM_S, call_deadline
from adapters.llm.simulator import Fault, Scenario

from .conftest import two_groups as chain
from .conftest import unique, write_config

ROOT = Path(__file__).resolve().parent.parent
STALL = Scenario(faults=[Fault(kind="stall", stall_s=10)])

def chain_config(p: str, b: str, settings: dict | None = None,
                 primary: dict | None = None) -> dict:
    """The chain with ``settings`` added to its router_settings, ``primary`` to the primary's
    litellm_params."""
    return chain(p, b, primary_params=primary,
                 router_settings={"num_retries": 1, "cooldown_time": 30, **(settings or {})})


def two_groups(make_adapter, *, settings: dict | None = None, p_extra: dict | None = None):
    p, b = unique("tmo-p"), unique("tmo-b")
    llm = make_adapter(chain_config(p, b, settings, p_extra))
    llm.warmup()        # litellm's one-time lazy imports are not what these tests time
    return llm, p, b


def requests(sim, name: str) -> int:
    return int(sim.stats(name).get("requests", 0)) if sim.stats(name) else 0


# ------------------------------------------------------------------ per-attempt timeouts


def test_router_timeout_bounds_each_attempt_and_the_fallback_answers(make_adapter, sim):
    llm, p, b = two_groups(make_adapter, settings={"timeout": 1})
    sim.set_scenario(p, STALL)
    deadline = call_deadline(llm.config, "primary")
    started = time.monotonic()
    response = llm.generate(prompt="Hello")
    elapsed = time.monotonic() - started
    assert response.deployment == b
    timed_out = response.attempts[0]
    assert (timed_out.deployment, timed_out.outcome, timed_out.error_kind) == \
        (p, "error", "timeout")
    assert 0.9 < elapsed < deadline, f"{elapsed:.2f}s: the 1 s attempt timeout, then the fallback"
    assert requests(sim, p) == 1, "timed out once, then cooled down: not retried"


def test_a_deployment_timeout_outranks_the_router_timeout(make_adapter, sim):
    # LiteLLM's precedence: the deployment's own timeout, else the router's.
    llm, p, b = two_groups(make_adapter, settings={"timeout": 1}, p_extra={"timeout": 5})
    sim.set_scenario(p, Scenario(faults=[Fault(kind="stall", stall_s=1.5)]))
    response = llm.generate(prompt="Hello")
    assert response.deployment == p, "the primary's own 5 s timeout let its 1.5 s answer in"
    assert [a.outcome for a in response.attempts] == ["ok"]


def test_a_short_caller_deadline_leaves_the_fallback_its_turn(make_adapter, sim):
    llm, p, b = two_groups(make_adapter, settings={"timeout": 30})
    sim.set_scenario(p, STALL)
    started = time.monotonic()
    response = llm.generate(prompt="Hello", timeout=4)
    elapsed = time.monotonic() - started
    assert response.deployment == b
    assert elapsed < 4, f"{elapsed:.2f}s: answered by the fallback within the 4 s deadline"
    cut = response.attempts[0]
    assert (cut.deployment, cut.error_kind) == (p, "timeout")
    assert "share of the call's deadline" in (cut.message or "")
    assert 1.5 < (cut.latency_ms or 0) / 1000 < 3, "the primary had about half of the 4 s"


def test_the_last_group_gets_all_that_remains(make_adapter, sim):
    llm, p, b = two_groups(make_adapter, settings={"timeout": 30})
    sim.set_scenario(p, "down")
    sim.set_scenario(b, Scenario(faults=[Fault(kind="stall", stall_s=2.5)]))
    response = llm.generate(prompt="Hello", timeout=4)
    assert response.deployment == b, "the last group had all that remained for its 2.5 s"
    assert [(a.deployment, a.outcome) for a in response.attempts] == [(p, "error"), (b, "ok")]


@pytest.mark.parametrize("where", ["router", "deployment"])
def test_stream_timeout_bounds_each_read(make_adapter, sim, where):
    # timeout 30 would let the stall run on; stream_timeout (the router's, or the deployment's)
    # bounds the wait for the stream's first read, and the fallback streams the answer.
    settings, p_extra = ({"timeout": 30, "stream_timeout": 1}, None) if where == "router" \
        else ({"timeout": 30}, {"stream_timeout": 1})
    llm, p, b = two_groups(make_adapter, settings=settings, p_extra=p_extra)
    sim.set_scenario(p, STALL)
    started = time.monotonic()
    stream = llm.generate(prompt="Tell me a story", stream=True)
    text = "".join(stream)
    elapsed = time.monotonic() - started
    assert text.startswith("Simulated answer") and stream.response is not None
    assert stream.response.deployment == b
    assert (stream.response.attempts[0].deployment, stream.response.attempts[0].error_kind) == \
        (p, "timeout")
    assert 0.9 < elapsed < 8, f"{elapsed:.2f}s: a 1 s read timeout, not the 10 s stall"


# ------------------------------------------------------------------ router_settings.deadline


def test_router_deadline_bounds_the_whole_call(make_adapter, sim):
    llm, p, b = two_groups(make_adapter, settings={"timeout": 30, "deadline": 2})
    sim.set_scenario(p, STALL)
    sim.set_scenario(b, STALL)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded) as caught:
        llm.generate(prompt="Hello")
    elapsed = time.monotonic() - started
    assert elapsed < 3.5, f"{elapsed:.2f}s: past the 2 s router_settings.deadline"
    assert [a.deployment for a in caught.value.attempts] == [p, b], "both had their turn"
    # The caller's timeout= wins over the config's deadline.
    sim.set_scenario(b, "ok")
    assert llm.generate(prompt="Hello", timeout=6).deployment == b


def test_default_deadline_lets_the_whole_chain_run(make_adapter, sim):
    llm, p, b = two_groups(make_adapter, settings={"timeout": 7}, p_extra={"timeout": 12})
    assert call_deadline(llm.config, "primary") == 12 + 7 + DEADLINE_HEADROOM_S
    assert call_deadline(llm.config, "backup") == 7 + DEADLINE_HEADROOM_S
    fixed, _, _ = two_groups(make_adapter, settings={"deadline": 45})
    assert call_deadline(fixed.config, "primary") == 45


BAD_DEADLINES = [("10s", "expected a number of seconds > 0"), (0, "out of range"),
                 (-3, "out of range"), ("true", "expected a number of seconds > 0"),
                 ("[1, 2]", "expected a number of seconds > 0")]


@pytest.mark.parametrize("value,problem", BAD_DEADLINES, ids=[str(v) for v, _ in BAD_DEADLINES])
def test_bad_router_deadline_is_a_config_error(tmp_path, value, problem):
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(f"""
        model_list:
          - model_name: m
            litellm_params: {{model: openai/gpt-4o, api_key: sk-test-0001}}
        router_settings: {{deadline: {value}}}
        """))
    with pytest.raises(ConfigError) as caught:
        load_config(path, load_dotenv=False)
    error = caught.value
    assert error.key == "router_settings.deadline" and problem in error.problem
    assert "use a number of seconds, e.g. 120" in (error.fix or "")
    assert str(path) in str(error)


def test_a_profile_may_set_the_deadline(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent("""
        model_list:
          - model_name: m
            litellm_params: {model: openai/gpt-4o, api_key: sk-test-0001}
        router_settings: {deadline: 30}
        environments:
          development: {}
          production: {router_settings: {deadline: 90}}
        """))
    assert load_config(path, load_dotenv=False).router_settings.deadline == 30
    assert load_config(path, environment="production",
                       load_dotenv=False).router_settings.deadline == 90


@pytest.mark.parametrize("value", [0, -1, "3", True, None])
def test_caller_timeout_is_still_validated(make_adapter, value):
    llm, _, _ = two_groups(make_adapter)
    if value is None:
        assert llm.generate(prompt="Hello", timeout=None).content   # None: the default deadline
        return
    with pytest.raises(UsageError, match="timeout must be a positive number of seconds"):
        llm.generate(prompt="Hello", timeout=value)


# ------------------------------------------------------------ the first call of a process

FIRST_CALL = """
import json, sys, threading, time
t0 = time.monotonic()
import adapters.llm
imported = {"import_s": time.monotonic() - t0, "litellm_loaded": "litellm" in sys.modules,
            "import_thread": any(t.name == "llm-adapter-import" for t in threading.enumerate())}
from adapters.llm import DeadlineExceeded, LiteLLMAdapter, load_config
llm = LiteLLMAdapter(config=load_config(sys.argv[1], load_dotenv=False), enable_langfuse=False)
timeout = float(sys.argv[2])
started = time.monotonic()
try:
    outcome = {"answered_by": llm.generate(prompt="Hello", timeout=timeout).deployment}
except DeadlineExceeded as exc:
    outcome = {"deadline": str(exc)}
outcome["elapsed"] = time.monotonic() - started
then = time.monotonic()
outcome["second_by"] = llm.generate(prompt="Hello", timeout=60).deployment
outcome["second_s"] = time.monotonic() - then
print(json.dumps({**imported, **outcome}))
"""


def first_call(tmp_path: Path, sim, timeout: float,
               settings: dict | None = None) -> tuple[dict, str, str]:
    """A fresh interpreter's first call, timed inside it from just before ``generate``."""
    p, b = unique("first-p"), unique("first-b")
    config = write_config(tmp_path, chain_config(p, b, settings), sim_url=sim.url,
                          name=f"{p}.yaml")
    script = tmp_path / "first_call.py"
    script.write_text(FIRST_CALL)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LLM_ADAPTER_HOME": str(tmp_path / "home")}
    wall = time.monotonic()
    done = subprocess.run([sys.executable, str(script), str(config), str(timeout)], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert time.monotonic() - wall < 90
    return result, p, b


@pytest.mark.parametrize("settings", [None, {"hedging": {"after_ms": 300}}],
                         ids=["plain", "hedged"])
def test_a_fresh_process_first_call_ends_within_its_deadline(tmp_path, sim, settings):
    result, p, b = first_call(tmp_path, sim, 3.0, settings)
    assert not result["litellm_loaded"] and not result["import_thread"], \
        "importing the package imports nothing and starts nothing"
    # Start-up (litellm's import, the router, the store) counts toward the 3 s; a little
    # scheduling slack on a busy machine, far below what start-up alone takes (seconds).
    assert result["elapsed"] < 3.3, result
    if "deadline" in result:
        assert "starting up" in result["deadline"] or "deadline" in result["deadline"]
    else:   # the primary, or the fallback when start-up left the primary less than its share
        assert result["answered_by"] in (p, b), result
    assert result["second_by"] == p, "the start-up cut off by the deadline went on for the next call"


def test_a_deadline_shorter_than_start_up_is_kept_and_sends_nothing(tmp_path, sim):
    result, p, b = first_call(tmp_path, sim, 0.5)
    assert result["elapsed"] < 0.8, result
    if "deadline" in result:       # litellm cannot be imported in 0.5 s on any machine we know
        assert "starting up (no request was sent)" in result["deadline"]
        assert requests(sim, p) == 1 and requests(sim, b) == 0, "only the second call was sent"
    assert result["second_by"] == p


FORK = """
import os, sys
from adapters.llm import LiteLLMAdapter, load_config
llm = LiteLLMAdapter(config=load_config(sys.argv[1], load_dotenv=False), enable_langfuse=False)
pid = os.fork()                 # while litellm is still being imported in the background
if pid == 0:
    print("child", llm.generate(prompt="Hello", timeout=60).deployment, flush=True)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("parent", llm.generate(prompt="Hello", timeout=60).deployment, os.waitstatus_to_exitcode(status))
"""


def test_a_fork_during_the_background_import_leaves_a_working_child(tmp_path, sim):
    p, b = unique("fork-p"), unique("fork-b")
    config = write_config(tmp_path, chain_config(p, b), sim_url=sim.url, name="config.yaml")
    script = tmp_path / "fork.py"
    script.write_text(FORK)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LLM_ADAPTER_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, str(script), str(config)], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.split()
    assert lines[:2] == ["child", p] and lines[2:] == ["parent", p, "0"], done.stdout
