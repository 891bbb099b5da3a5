"""A caller error is never a provider failure: through real litellm over real HTTP, a request
that cannot be sent is a UsageError naming the field, nothing reaches any provider, nothing is
retried elsewhere and the primary answers the next call (no cooldown). A local Ollama that is
not running is one failed attempt, rested, with a hint."""

from __future__ import annotations

import socket
import textwrap
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from adapters.llm import AllProvidersFailed, UsageError

from .conftest import sim_deployment, unique
from .test_routing import requests, two_groups

WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}

TIMEOUT = "timeout must be a positive number of seconds, and finite"

# (id, generate() arguments, text the error must contain)
CALLER_ERRORS = [
    ("surrogate-prompt", dict(prompt="caf\ud800 order"), "prompt: character 3"),
    ("surrogate-messages", dict(messages=[{"role": "user", "content": "hi"},
                                          {"role": "assistant", "content": "ok\udc80"}]),
     "messages[1]['content']: character 2"),
    ("surrogate-system", dict(prompt="hi", system="be \ud83d brief"), "system: character 3"),
    ("surrogate-part", dict(messages=[{"role": "user", "content": [
        {"type": "text", "text": "x\ud800"}]}]), "messages[0]['content'][0]['text']"),
    ("surrogate-metadata", dict(prompt="hi", metadata={"tags": ["ok", "bad\ud800"]}),
     "metadata['tags'][1]"),
    ("surrogate-tool", dict(prompt="hi", tools=[{"type": "function", "function": {
        "name": "f", "description": "d\ud800", "parameters": {"type": "object"}}}]),
     "tools[0]['function']['description']"),
    ("int-content", dict(messages=[{"role": "user", "content": 123}]),
     "messages[0].content must be a string"),
    ("no-user-content", dict(messages=[{"role": "user", "content": None}]),
     "messages[0] (user) has no content"),
    ("part-type", dict(messages=[{"role": "user", "content": [{"type": "txt", "text": "x"}]}]),
     "messages[0].content[0] has type 'txt'"),
    ("response-format-str", dict(prompt="hi", response_format="json"), "response_format"),
    ("response-format-type", dict(prompt="hi", response_format={"type": "json"}),
     "response_format['type'] is 'json'"),
    ("response-format-schema", dict(prompt="hi", response_format={"type": "json_schema"}),
     "needs 'json_schema'"),
    ("timeout-inf", dict(prompt="hi", timeout=float("inf")), TIMEOUT),
    ("timeout-nan", dict(prompt="hi", timeout=float("nan")), TIMEOUT),
    ("timeout-zero", dict(prompt="hi", timeout=0), TIMEOUT),
    ("tool-shape", dict(prompt="hi", tools=[{"type": "function", "function": 123}]),
     "tools[0]['function'] must be a dict"),
    ("header", dict(prompt="hi", extra_headers={"X-Note": "日本"}),
     "extra_headers['X-Note'] is not ASCII"),
]


def assert_primary_still_answers(llm, sim, p: str, b: str, sent_p: int) -> None:
    """Nothing reached either provider, and the primary (not cooled) answers what follows."""
    assert requests(sim, p) == sent_p and requests(sim, b) == 0
    for i in range(3):
        response = llm.generate(prompt=f"next {i}")
        assert response.deployment == p
        assert [a.outcome for a in response.attempts] == ["ok"], response.attempts
    assert requests(sim, p) == sent_p + 3 and requests(sim, b) == 0


@pytest.mark.parametrize("case,kwargs,named", CALLER_ERRORS, ids=[c[0] for c in CALLER_ERRORS])
def test_caller_error_is_a_usage_error_and_sends_nothing(make_adapter, sim, case, kwargs, named):
    p, b = unique(f"caller-{case}"), unique("backup")
    llm = two_groups(make_adapter, p, b)
    assert llm.generate(prompt="warm").deployment == p
    with pytest.raises(UsageError) as caught:
        llm.generate(**kwargs)
    assert named in str(caught.value), str(caught.value)
    assert_primary_still_answers(llm, sim, p, b, sent_p=1)


async def test_async_caller_error_too(make_adapter, sim):
    p, b = unique("caller-async"), unique("backup")
    llm = two_groups(make_adapter, p, b)
    with pytest.raises(UsageError, match="character 1"):
        await llm.agenerate(prompt="a\ud800")
    assert requests(sim, p) == 0 and requests(sim, b) == 0


# Requests the adapter's own checks let through that litellm cannot build for the provider:
# litellm raises (as a 400, a "connection" error, or a 500 that makes its Router cool the
# deployment down) before any HTTP request.
LITELLM_LOCAL = [
    ("openai-body", "openai/gpt-4o", dict(prompt="hi", extra_body={"x": object()})),
    ("unsupported-param", "anthropic/claude-sonnet-4-5-20250929",
     dict(prompt="hi", frequency_penalty=0.5)),
    ("anthropic", "anthropic/claude-sonnet-4-5-20250929",
     dict(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": 123}]}])),
    ("gemini", "gemini/gemini-2.5-flash",
     dict(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": 123}]}])),
]


@pytest.mark.parametrize("case,model,kwargs", LITELLM_LOCAL, ids=[c[0] for c in LITELLM_LOCAL])
def test_litellm_local_failure_is_a_usage_error(make_adapter, sim, case, model, kwargs):
    p, b = unique(f"local-{case}"), unique("backup")
    llm = two_groups(make_adapter, p, b, primary_model=model)
    with pytest.raises(UsageError) as caught:
        llm.generate(**kwargs)
    assert not isinstance(caught.value, AllProvidersFailed)
    assert "primary" in str(caught.value)
    if "frequency_penalty" in kwargs:
        assert "frequency_penalty" in str(caught.value)
    assert_primary_still_answers(llm, sim, p, b, sent_p=0)


class Answer(BaseModel):
    text: str


SCHEMA = {"name": "answer", "schema": Answer.model_json_schema()}


@pytest.mark.parametrize("response_format", [
    {"type": "json_object"}, Answer, {"type": "json_schema", "json_schema": SCHEMA}],
    ids=["json_object", "pydantic", "json_schema"])
def test_valid_response_formats_are_sent(make_adapter, sim, response_format):
    p, b = unique("rf-ok"), unique("backup")
    llm = two_groups(make_adapter, p, b)
    response = llm.generate(prompt="Reply in JSON", response_format=response_format)
    assert response.deployment == p and requests(sim, p) == 1


def test_prompt_variables_must_be_a_mapping_without_none(make_adapter, sim, tmp_path: Path):
    directory = tmp_path / "prompts"
    directory.mkdir()
    (directory / "greet.yaml").write_text(textwrap.dedent("""\
        name: greet
        type: text
        versions:
          - version: 1
            labels: [production]
            prompt: "Hello {{name}}, you are {{age}}"
        """))
    only = unique("vars")
    llm = make_adapter({"model_list": [sim_deployment("only", only, key="sk-test-v-0001")]},
                       prompts_dir=directory)
    assert llm.get_prompt("greet", variables={"name": "Ada", "age": 36}) == "Hello Ada, you are 36"
    with pytest.raises(UsageError, match="variables must be a dict"):
        llm.get_prompt("greet", variables="Ada")  # type: ignore[arg-type]
    with pytest.raises(UsageError) as caught:
        llm.get_prompt("greet", variables={"name": None, "age": 36})
    assert "'name'" in str(caught.value) and "None" in str(caught.value)
    assert llm.get_prompt("greet", variables={"name": "", "age": 0}) == "Hello , you are 0"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def local_config(sim, dead: str, backup: str, *, fallback: bool) -> dict:
    """An Ollama deployment on a closed port, then the simulator's ``backup``."""
    local = {"model_name": "local",
             "litellm_params": {"model": "ollama_chat/llama3.2",
                                "api_base": f"http://127.0.0.1:{closed_port()}"},
             "model_info": {"id": dead}}
    return {"model_list": [local, sim_deployment("backup", backup, key="sk-test-b-0002")],
            **({"fallbacks": ["local", "backup"]} if fallback else {}),
            "router_settings": {"num_retries": 2, "cooldown_time": 30}}


def test_ollama_not_running_is_one_attempt_then_rested(make_adapter, sim):
    dead, b = unique("ollama-dead"), unique("backup")
    llm = make_adapter(local_config(sim, dead, b, fallback=True), model="local")
    first = llm.generate(prompt="Hello")
    assert first.deployment == b
    failed, ok = first.attempts
    assert (failed.deployment, failed.outcome, failed.error_kind) == (dead, "error", "connection")
    assert "ollama serve" in (failed.message or "") and "ENVIRONMENT=simulation" in \
        (failed.message or "")
    assert ok.outcome == "ok"
    # No hidden retry backoff: what the adapter added to the exchanges is not seconds of sleep.
    assert first.overhead_ms < 1000, first.overhead_ms
    second = llm.generate(prompt="Hello again")
    skipped = second.attempts[0]
    assert (skipped.deployment, skipped.outcome, skipped.error_kind) == \
        (dead, "skipped", "cooldown")
    assert "connection refused" in (skipped.message or "")
    assert second.deployment == b and requests(sim, b) == 2


def test_ollama_not_running_without_fallback_says_how_to_start_it(make_adapter, sim):
    dead, b = unique("ollama-alone"), unique("unused")
    llm = make_adapter(local_config(sim, dead, b, fallback=False), model="local")
    for _ in range(2):              # the only way to an answer is never rested
        started = time.monotonic()
        with pytest.raises(AllProvidersFailed) as caught:
            llm.generate(prompt="Hello", timeout=10)
        assert time.monotonic() - started < 10
        error = caught.value
        assert [(a.deployment, a.error_kind) for a in error.attempts] == [(dead, "connection")]
        assert "ollama serve" in str(error) and "ENVIRONMENT=simulation" in str(error)
