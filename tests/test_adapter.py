"""The public facade: calling conventions, argument checks, threads and event loops."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import adapters.llm as public
from adapters.llm import ConfigError, LiteLLMAdapter, UsageError

from .conftest import one_group, unique, write_config

ROOT = Path(__file__).resolve().parent.parent

@pytest.fixture
def llm(make_adapter):
    return make_adapter(one_group(unique("adapter")))


def test_public_names_are_exactly_the_documented_ones():
    assert sorted(public.__all__) == sorted([
        "AllProvidersFailed", "Attempt", "AuthenticationError", "BackendUnavailable",
        "BudgetExceeded", "Config",
        "ConfigError", "ContextWindowExceeded", "DeadlineExceeded", "LLMAdapterError",
        "LLMResponse", "LiteLLMAdapter", "Prompt", "ProviderError", "RateLimited",
        "ResponseStream", "ToolCall", "Usage", "UsageError", "load_config"])
    for name in public.__all__:
        assert getattr(public, name) is not None
        # Public objects carry the public path, whatever private module defines them.
        assert getattr(public, name).__module__ == "adapters.llm", name


def test_the_package_is_rooms_by_concern_and_only_its_public_modules_lack_an_underscore():
    root = Path(public.__file__).parent
    flat = sorted(p.name for p in root.iterdir()
                  if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))
    assert [n for n in flat if not n.startswith("_")] == [
        "errors.py", "litellm_adapter.py", "simulator"]
    rooms = {p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("_")
             and (p / "__init__.py").exists()}
    assert rooms == {"_cli", "_config", "_observability", "_process", "_prompts", "_reports",
                     "_routing", "_traffic"}


def test_import_is_cheap_and_does_not_import_litellm():
    """Nor what only reading a config or prompt file needs (yaml, python-dotenv)."""
    code = ("import sys, adapters.llm; "
            "print([m for m in ('litellm', 'yaml', 'dotenv') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_guide_quick_start(llm):
    response = llm.generate(prompt="Hello", system="You schedule therapists.",
                            metadata={"session_id": "S1", "user_id": "admin", "agent": "matching",
                                      "tags": ["urgent"]})
    assert "Hello" in response.content
    assert response.model == "main" and response.provider == "openai"
    assert response.provider_model == "gpt-4o"
    # gpt-4o is in litellm's price map: the cost is the usage times its prices.
    expected = response.usage.input_tokens * 2.5e-06 + response.usage.output_tokens * 1e-05
    assert response.cost == pytest.approx(expected)
    assert response.latency_ms > 0 and response.finish_reason == "stop"
    assert [a.outcome for a in response.attempts] == ["ok"]
    llm.flush_langfuse()


def test_unknown_price_is_none_never_zero(make_adapter):
    name = unique("unpriced")
    llm = make_adapter(one_group(name, model="openai/house-model-xyz"))
    response = llm.generate(prompt="Hello")
    assert response.usage.output_tokens > 0
    assert response.cost is None


def test_config_price_override_wins(make_adapter):
    name = unique("priced")
    config = one_group(name)
    config["model_list"][0]["model_info"].update(input_cost_per_token=0.001,
                                                 output_cost_per_token=0.002)
    response = make_adapter(config).generate(prompt="Hello")
    assert response.cost == pytest.approx(response.usage.input_tokens * 0.001 +
                                          response.usage.output_tokens * 0.002)


@pytest.mark.parametrize("kwargs,message", [
    ({}, "nothing to send"),
    ({"prompt": 42}, "prompt must be a string"),
    ({"prompt": "x", "temperature": 5}, "temperature must be a number from 0 to 2"),
    ({"prompt": "x", "max_tokens": 0}, "max_tokens must be a positive integer"),
    ({"prompt": "x", "timeout": -1}, "timeout must be a positive number"),
    ({"prompt": "x", "messages": "hi"}, "messages must be a list"),
    ({"messages": [{"content": "no role"}]}, "messages[0] must be a dict with 'role'"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "has role 'robot'"),
    ({"prompt": "x", "metadata": {"tags": "urgent"}}, "metadata['tags'] must be a list"),
    ({"prompt": "x", "api_key": "sk-zzz"}, "cannot be passed to generate()"),
    ({"prompt": "x", "model": "nope"}, "unknown model 'nope'"),
    ({"prompt": "x", "model": ["main"]}, "unknown model ['main']"),
    ({"prompt": "x", "tools": ["not-a-dict"]}, "tools must be a list"),
])
def test_bad_arguments_are_usage_errors(llm, kwargs, message):
    with pytest.raises(UsageError) as caught:
        llm.generate(**kwargs)
    assert message in str(caught.value)


def test_unknown_model_at_construction_lists_groups(make_adapter):
    with pytest.raises(ConfigError) as caught:
        make_adapter(one_group(unique("x")), model="claude-sonnet")
    assert "main" in str(caught.value)


async def test_sync_generate_inside_a_running_event_loop(llm):
    assert asyncio.get_running_loop() is not None
    response = llm.generate(prompt="from inside a loop")
    assert "from inside a loop" in response.content


async def test_agenerate(llm):
    results = await asyncio.gather(*(llm.agenerate(prompt=f"question {i}") for i in range(10)))
    assert all(f"question {i}" in r.content for i, r in enumerate(results))


def test_sync_generate_from_eight_threads(llm):
    barrier = threading.Barrier(8)

    def call(i: int) -> str:
        barrier.wait()
        return llm.generate(prompt=f"thread {i}").content

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(call, range(8)))
    assert all(f"thread {i}" in answer for i, answer in enumerate(answers))


def test_two_adapters_with_one_config_share_one_router(make_adapter, sim):
    config = one_group(unique("shared"))
    first, second = make_adapter(config), make_adapter(config)
    assert first.gateway is second.gateway


def test_get_prompt_from_local_registry(llm):
    llm._prompts.directory = ROOT / "prompts"
    text = llm.get_prompt("smart-scheduling-matching-v1", variables={"required_skills": "orthopedic"})
    assert "orthopedic" in text and "{{" not in text
    assert "Medicare" in llm.get_prompt(prompt_name="smart-scheduling-system-v1")
    with pytest.raises(UsageError) as caught:
        llm.get_prompt("smart-scheduling-matching-v1")
    assert "required_skills" in str(caught.value)
    b = llm.get_prompt("smart-scheduling-matching", {"required_skills": "x"}, label="prod-b")
    assert "continuity of care" in b
    assert llm.prompt("smart-scheduling-matching", version=2).labels == ("prod-b",)
    with pytest.raises(UsageError) as caught:
        llm.get_prompt("smart-scheduling-sytem-v1")
    assert "did you mean 'smart-scheduling-system-v1'" in str(caught.value)


def test_simulation_environment_needs_no_key(monkeypatch):
    for var in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    llm = LiteLLMAdapter(environment="simulation", config_path=ROOT / "config" / "litellm_config.yaml")
    response = llm.generate(prompt="Hello")
    assert response.model == "claude-sonnet" and response.provider == "anthropic"
    assert response.cost is not None and response.cost > 0


def test_python_dash_m_and_console_script_help():
    out = subprocess.run([sys.executable, "-m", "adapters.llm", "--help"], capture_output=True,
                         text=True, check=True, env={**os.environ})
    assert "demo" in out.stdout and "simulate" in out.stdout


FREEZE = '''
import gc, sys
from adapters.llm import LiteLLMAdapter, load_config
before = gc.get_freeze_count()
llm = LiteLLMAdapter(config=load_config(sys.argv[1], load_dotenv=False))
answered = bool(llm.generate("hi").content)
print(before, gc.get_freeze_count(), answered)
'''


@pytest.mark.parametrize("setting", [None, "0"])
def test_what_importing_litellm_made_is_kept_out_of_the_collectors_passes(sim, tmp_path,
                                                                          setting):
    """~400,000 objects that live as long as the process: a full collection walked them all
    with the event loop stopped. ``LLM_ADAPTER_GC_FREEZE=0`` leaves the collector alone."""
    config = write_config(tmp_path, one_group(unique("freeze")), sim_url=sim.url)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LLM_ADAPTER_HOME": str(tmp_path)}
    env.pop("LLM_ADAPTER_GC_FREEZE", None)
    if setting is not None:
        env["LLM_ADAPTER_GC_FREEZE"] = setting
    out = subprocess.run([sys.executable, "-c", FREEZE, str(config)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    before, after, answered = out.stdout.split()
    assert (int(before), answered) == (0, "True")
    if setting is None:
        assert int(after) > 100_000, "litellm's modules and price tables are frozen"
    else:
        assert int(after) == 0
