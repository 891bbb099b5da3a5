"""Traffic control through the adapter, across OS processes sharing a real Redis."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from adapters.llm import BudgetExceeded, RateLimited

from .conftest import one_group, sim_deployment, unique
from .conftest import write_config as write_file
from .redis_support import RUN, shared_redis_url, wait_for_ping



def write_config(tmp_path: Path, sim_url: str, config: dict[str, Any]) -> tuple[Path, str]:
    """A config whose only environment has a unique name: limits and budgets are namespaced by
    environment, so tests sharing one Redis never share counters."""
    environment = f"t{RUN}{uuid.uuid4().hex[:6]}"
    path = write_file(tmp_path, {**config, "environments": {environment: {"default_model": "main"}}},
                      sim_url=sim_url, name=f"{environment}.yaml")
    return path, environment


def _worker(config: str, environment: str, calls: int, redis_url: str, home: str,
            out: Any) -> None:
    os.environ["REDIS_URL"] = redis_url
    os.environ["LLM_ADAPTER_HOME"] = home
    from adapters.llm import LiteLLMAdapter, load_config

    llm = LiteLLMAdapter(config=load_config(config, environment=environment, load_dotenv=False))
    ok, limited, over, spent = 0, 0, 0, 0.0
    for i in range(calls):
        try:
            answer = llm.generate(prompt=f"call {os.getpid()} {i}", max_tokens=20,
                                  metadata={"user_id": "shared-user"})
        except RateLimited:
            limited += 1
        except BudgetExceeded:
            over += 1
        else:
            ok += 1
            spent += answer.cost or 0.0
    llm.flush_langfuse(timeout=10)
    out.put((ok, limited, over, spent))


def run_processes(n: int, config: Path, environment: str, calls: int, home: Path
                  ) -> list[tuple[int, int, int, float]]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(config), environment, calls, shared_redis_url(),
                                               str(home), out)) for _ in range(n)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    return results


@pytest.mark.parametrize("processes", [2, 4])
def test_processes_together_stay_within_one_rpm_limit(sim, tmp_path, processes):
    name = unique("rpm")
    config, environment = write_config(tmp_path, sim.url, one_group(
        name, key="sk-test-rpm-0001", router_settings={"rpm": 12}))
    results = run_processes(processes, config, environment, 8, tmp_path / "home")
    sent = int(sim.stats(name).get("requests", 0))
    ok = sum(r[0] for r in results)
    limited = sum(r[1] for r in results)
    assert sent == ok <= 12, f"{sent} requests reached the provider for an rpm of 12"
    assert ok + limited == processes * 8 and limited >= processes * 8 - 12


def test_budget_stops_the_call_that_would_cross_it_across_processes(sim, tmp_path):
    name = unique("budget")
    config, environment = write_config(tmp_path, sim.url, one_group(
        name, key="sk-test-budget-0001",
        budgets={"limits": [{"scope": "user", "limit": 0.001, "period": "day"}]}))
    results = run_processes(4, config, environment, 6, tmp_path / "home")
    ok = sum(r[0] for r in results)
    over = sum(r[2] for r in results)
    spent = sum(r[3] for r in results)
    assert over > 0 and ok > 0
    assert spent <= 0.001 + 1e-9, f"spent ${spent:.6f} of a $0.001 budget"
    assert int(sim.stats(name).get("requests", 0)) == ok, "a stopped call sent nothing"


def test_budget_exceeded_names_scope_spent_limit_and_reset(make_adapter, sim, tmp_path):
    name = unique("budget-one")
    config, environment = write_config(tmp_path, sim.url, one_group(
        name, key="sk-test-budget-0002", budgets={"limits": [
            {"scope": "agent", "id": "matching", "limit": 0.001, "period": "month"}]}))
    from adapters.llm import LiteLLMAdapter, load_config
    from adapters.llm._traffic.policies import PolicyPool

    llm = LiteLLMAdapter(config=load_config(config, environment=environment, load_dotenv=False),
                         policies=PolicyPool())
    with pytest.raises(BudgetExceeded) as caught:
        for _ in range(20):
            llm.generate(prompt="rank the therapists", max_tokens=20,
                         metadata={"agent": "matching"})
    error = caught.value
    assert error.scope.startswith("agent") and error.limit == pytest.approx(0.001)
    assert error.spent <= 0.001 and error.resets_at
    assert "matching" in str(error)
    assert llm.generate(prompt="other agents are not limited", max_tokens=20,
                        metadata={"agent": "orchestrator"}).content


def test_cooldowns_are_shared_through_redis(sim, tmp_path):
    primary, backup = unique("shared-down"), unique("shared-backup")
    sim.set_scenario(primary, "down")
    config, environment = write_config(tmp_path, sim.url, {
        "model_list": [sim_deployment("main", primary, key="sk-test-cd-0001"),
                       sim_deployment("backup", backup, key="sk-test-cd-0002")],
        "fallbacks": ["main", "backup"]})
    run_processes(1, config, environment, 1, tmp_path / "home")
    assert sim.stats(primary)["requests"] == 1
    run_processes(2, config, environment, 3, tmp_path / "home")
    assert sim.stats(primary)["requests"] == 1, "later processes skipped the cooling primary"
    assert sim.stats(backup)["requests"] == 7


@pytest.fixture
def own_redis() -> Any:
    """A Redis server of this test's own, to kill mid-run."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is needed (apt-get install redis-server)"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    wait_for_ping(client, f"redis-server on port {port} answering")
    yield f"redis://127.0.0.1:{port}/0", proc
    proc.kill()
    proc.wait()


def test_calls_keep_succeeding_when_redis_dies(make_adapter, sim, tmp_path, own_redis,
                                                monkeypatch):
    url, proc = own_redis
    monkeypatch.setenv("REDIS_URL", url)
    name = unique("redis-dies")
    from adapters.llm._traffic.policies import PolicyPool

    llm = make_adapter(one_group(name, key="sk-test-rd-0001", router_settings={
        "rpm": 1000, "cache": {"type": "redis", "ttl": 60}}), policies=PolicyPool())
    before = [llm.generate(prompt=f"before {i}") for i in range(3)]
    assert llm.generate(prompt="before 0").cache_hit
    proc.kill()
    proc.wait()
    after = [llm.generate(prompt=f"after {i}", timeout=10) for i in range(3)]
    assert all(a.content for a in before + after)
    assert not any(a.cache_hit for a in after)
