"""The provider simulator as the vendors' official SDKs see it, over real loopback HTTP.

Users test their own code offline with ``openai``, ``anthropic``, ``google-genai`` and
``ollama`` pointed at the simulator, so each SDK must parse structured output, read
request ids and rate-limit headers and usage details, raise its own exception for what
the real service refuses, and see fresh ids, parallel tool calls and mid-stream errors.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import jsonschema
import ollama
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types
from pydantic import BaseModel, Field

from adapters.llm.simulator import Fault, Scenario, Simulator

QUESTION = "What is the capital of France?"
LONG_SYSTEM = "You are a meticulous geography assistant. " * 200  # ~1400 tokens: cacheable


class City(BaseModel):
    name: str
    population: int = Field(ge=0)
    coastal: bool
    districts: list[str]
    mayor: Person | None = None


class Person(BaseModel):
    first_name: str
    age: int


City.model_rebuild()

WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 2},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit", "days"],
    "additionalProperties": False,
}
TIME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"zone": {"type": "string", "format": "uuid"}},
    "required": ["zone"],
}


def unique(prefix: str) -> str:
    return f"{prefix}-{time.monotonic_ns()}"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    scenarios = {
        "parallel": Scenario(tool_calls=3),
        "mid-stream": Scenario(faults=[Fault("stream_error", status=529, after_chunks=3)]),
        "strict": Scenario(models=["gpt-4o*", "claude-*", "gemini-*", "llama*"]),
        "no-quota": Scenario(faults=[Fault("status", status=429, error_code="insufficient_quota",
                                           error_type="insufficient_quota", retry_after=2.0,
                                           message="You exceeded your current quota.")]),
        "lenient": Scenario(validate=False),
    }
    with Simulator(scenarios) as simulator:
        yield simulator


# -- OpenAI --------------------------------------------------------------------------------


def oai(sim: Simulator, scenario: str = "ok") -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.base(scenario), api_key="sk-sim", max_retries=0)


def user(text: str = QUESTION) -> list[Any]:
    return [{"role": "user", "content": text}]


def test_openai_structured_output_parses_into_the_model(sim: Simulator) -> None:
    client = oai(sim)
    first = client.chat.completions.parse(model="gpt-4o", messages=user(), response_format=City)
    parsed = first.choices[0].message.parsed
    assert isinstance(parsed, City) and parsed.population >= 0 and parsed.districts
    again = client.beta.chat.completions.parse(model="gpt-4o", messages=user(), response_format=City)
    assert again.choices[0].message.parsed == parsed, "seeded: the same request, the same answer"
    other = client.chat.completions.parse(model="gpt-4o", messages=user("Rome?"), response_format=City)
    assert other.choices[0].message.parsed != parsed
    mode = client.chat.completions.create(model="gpt-4o", messages=user(),
                                          response_format={"type": "json_object"})
    assert isinstance(json.loads(mode.choices[0].message.content or ""), dict)


def test_openai_request_id_and_rate_limit_headers(sim: Simulator) -> None:
    client = oai(sim, unique("openai-limits"))
    raw = [client.chat.completions.with_raw_response.create(model="gpt-4o", messages=user())
           for _ in range(2)]
    remaining = [int(r.headers["x-ratelimit-remaining-requests"]) for r in raw]
    assert remaining[0] - 1 == remaining[1] < int(raw[0].headers["x-ratelimit-limit-requests"])
    assert raw[0].headers["x-ratelimit-reset-requests"].endswith("s")
    completion = raw[0].parse()
    assert completion._request_id and completion._request_id.startswith("req_")
    assert raw[0].headers["x-request-id"] != raw[1].headers["x-request-id"]

    sim.set_scenario(name := unique("openai-limited"), Scenario(rate_limit_requests=2))
    limited = oai(sim, name)
    limited.chat.completions.create(model="gpt-4o", messages=user())
    limited.chat.completions.create(model="gpt-4o", messages=user())
    with pytest.raises(openai.RateLimitError) as caught:
        limited.chat.completions.create(model="gpt-4o", messages=user())
    assert caught.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert float(caught.value.response.headers["retry-after"]) > 0
    assert caught.value.request_id and caught.value.request_id.startswith("req_")

    with pytest.raises(openai.RateLimitError) as quota:
        oai(sim, "no-quota").chat.completions.create(model="gpt-4o", messages=user())
    assert quota.value.code == "insufficient_quota" and quota.value.type == "insufficient_quota"
    assert quota.value.response.headers["retry-after"] == "2"


def test_openai_usage_details_and_prompt_caching(sim: Simulator) -> None:
    client = oai(sim, unique("openai-cache"))
    history = [{"role": "system", "content": LONG_SYSTEM}, *user()]
    first = client.chat.completions.create(model="gpt-4o", messages=history)
    second = client.chat.completions.create(model="gpt-4o", messages=history)
    assert first.usage is not None and second.usage is not None
    assert first.usage.prompt_tokens_details is not None
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert second.usage.prompt_tokens_details is not None
    cached = second.usage.prompt_tokens_details.cached_tokens or 0
    assert 1024 <= cached < second.usage.prompt_tokens
    assert first.usage.completion_tokens_details is not None
    assert first.usage.completion_tokens_details.reasoning_tokens == 0
    reasoning = client.chat.completions.create(model="o3-mini", messages=user(),
                                               reasoning_effort="high")
    assert reasoning.usage is not None and reasoning.usage.completion_tokens_details is not None
    thought = reasoning.usage.completion_tokens_details.reasoning_tokens or 0
    assert 0 < thought < reasoning.usage.completion_tokens


INVALID_OPENAI: list[tuple[str, dict[str, Any], str]] = [
    ("orphan tool message", {"messages": [*user(), {"role": "tool", "tool_call_id": "call_x",
                                                    "content": "sunny"}]}, "preceeding"),
    ("unanswered tool_calls", {"messages": [*user(), {"role": "assistant", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        *user("and?")]}, "call_1"),
    ("unknown role", {"messages": [{"role": "robot", "content": "hi"}]}, "robot"),
    ("temperature", {"messages": user(), "temperature": 5}, "temperature"),
]


@pytest.mark.parametrize(("case", "kwargs", "needle"), INVALID_OPENAI, ids=[c[0] for c in INVALID_OPENAI])
def test_openai_invalid_requests_raise_bad_request(
    sim: Simulator, case: str, kwargs: dict[str, Any], needle: str
) -> None:
    with pytest.raises(openai.BadRequestError, match=needle):
        oai(sim).chat.completions.create(model="gpt-4o", **kwargs)
    answered = oai(sim, "lenient").chat.completions.create(model="gpt-4o", **kwargs)
    assert answered.choices[0].message.content


def test_openai_unknown_model_is_not_found_when_models_are_strict(sim: Simulator) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        oai(sim, "strict").chat.completions.create(model="gtp-4o", messages=user())
    assert caught.value.code == "model_not_found"
    assert oai(sim, "strict").chat.completions.create(model="gpt-4o-mini", messages=user()).id


def test_openai_fresh_ids_same_content(sim: Simulator) -> None:
    client = oai(sim)
    first, second = (client.chat.completions.create(model="gpt-4o", messages=user()) for _ in "12")
    assert first.id != second.id
    assert first.choices[0].message.content == second.choices[0].message.content


def test_openai_parallel_tool_calls_with_valid_arguments(sim: Simulator) -> None:
    tools: Any = [{"type": "function", "function": {"name": "weather", "parameters": WEATHER_SCHEMA}},
                  {"type": "function", "function": {"name": "time", "parameters": TIME_SCHEMA}}]
    completion = oai(sim, "parallel").chat.completions.create(model="gpt-4o", messages=user(),
                                                              tools=tools)
    calls = completion.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["weather", "time", "weather"]  # type: ignore[union-attr]
    assert len({c.id for c in calls}) == 3
    schemas = {"weather": WEATHER_SCHEMA, "time": TIME_SCHEMA}
    for call in calls:
        jsonschema.validate(json.loads(call.function.arguments), schemas[call.function.name],  # type: ignore[union-attr]
                            format_checker=jsonschema.FormatChecker())
    single = oai(sim, "parallel").chat.completions.create(model="gpt-4o", messages=user(),
                                                          tools=tools, parallel_tool_calls=False)
    assert len(single.choices[0].message.tool_calls or []) == 1


def test_openai_mid_stream_error_raises_api_error(sim: Simulator) -> None:
    stream = oai(sim, "mid-stream").chat.completions.create(model="gpt-4o", messages=user(),
                                                            stream=True)
    received = []
    with pytest.raises(openai.APIError, match="simulated"):
        for chunk in stream:
            received.append(chunk)
    assert len(received) == 3


# -- Anthropic -----------------------------------------------------------------------------


def claude(sim: Simulator, scenario: str = "ok") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=sim.base(scenario), api_key="sk-ant-sim", max_retries=0)


MODEL = "claude-sonnet-4-5"


def test_anthropic_structured_output_parses_into_the_model(sim: Simulator) -> None:
    client = claude(sim)
    message = client.messages.parse(model=MODEL, max_tokens=1024, messages=user(),
                                    output_format=City)
    assert isinstance(message.parsed_output, City)
    again = client.messages.parse(model=MODEL, max_tokens=1024, messages=user(), output_format=City)
    assert again.parsed_output == message.parsed_output


def test_anthropic_request_id_and_rate_limit_headers(sim: Simulator) -> None:
    client = claude(sim, unique("anthropic-limits"))
    raw = [client.messages.with_raw_response.create(model=MODEL, max_tokens=50, messages=user())
           for _ in range(2)]
    remaining = [int(r.headers["anthropic-ratelimit-requests-remaining"]) for r in raw]
    assert remaining[0] - 1 == remaining[1]
    assert "T" in raw[0].headers["anthropic-ratelimit-tokens-reset"]
    message = raw[0].parse()
    assert message._request_id and message._request_id.startswith("req_")
    sim.set_scenario(name := unique("anthropic-limited"), Scenario(rate_limit_requests=2))
    limited = claude(sim, name)
    limited.messages.create(model=MODEL, max_tokens=50, messages=user())
    limited.messages.create(model=MODEL, max_tokens=50, messages=user())
    with pytest.raises(anthropic.RateLimitError) as caught:
        limited.messages.create(model=MODEL, max_tokens=50, messages=user())
    assert caught.value.request_id and caught.value.request_id.startswith("req_")
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["request_id"] == caught.value.request_id
    assert caught.value.response.headers["anthropic-ratelimit-requests-remaining"] == "0"


def test_anthropic_prompt_caching_and_stream_usage(sim: Simulator) -> None:
    client = claude(sim, unique("anthropic-cache"))
    system: Any = [{"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral"}}]
    first = client.messages.create(model=MODEL, max_tokens=50, system=system, messages=user())
    second = client.messages.create(model=MODEL, max_tokens=50, system=system, messages=user())
    assert first.usage.cache_creation_input_tokens and first.usage.cache_creation_input_tokens > 1024
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens == 0
    assert second.usage.input_tokens == first.usage.input_tokens > 0  # the uncached rest

    with client.messages.stream(model=MODEL, max_tokens=50, messages=user()) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    plain = client.messages.create(model=MODEL, max_tokens=50, messages=user())
    assert final.usage.input_tokens == plain.usage.input_tokens > 0
    assert final.usage.output_tokens == plain.usage.output_tokens
    raw = client.messages.create(model=MODEL, max_tokens=50, messages=user(), stream=True)
    raw_types = [event.type for event in raw]
    assert raw_types[:2] == ["message_start", "content_block_start"]
    assert events[-1] == "message_stop"


INVALID_ANTHROPIC: list[tuple[str, dict[str, Any], str]] = [
    ("system role", {"messages": [{"role": "system", "content": "be terse"}, *user()]}, "system"),
    ("unknown tool_use_id", {"messages": [*user(), {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_a", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_b",
                                      "content": "x"}]}]}, "toolu_b"),
    ("temperature", {"messages": user(), "extra_body": {"temperature": 5}}, "temperature"),
    ("no anthropic-version", {"messages": user(),
                              "extra_headers": {"anthropic-version": anthropic.omit}},
     "anthropic-version"),
]


@pytest.mark.parametrize(("case", "kwargs", "needle"), INVALID_ANTHROPIC,
                         ids=[c[0] for c in INVALID_ANTHROPIC])
def test_anthropic_invalid_requests_raise_bad_request(
    sim: Simulator, case: str, kwargs: dict[str, Any], needle: str
) -> None:
    with pytest.raises(anthropic.BadRequestError, match=needle) as caught:
        claude(sim).messages.create(model=MODEL, max_tokens=50, **kwargs)
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert claude(sim, "lenient").messages.create(model=MODEL, max_tokens=50, **kwargs).content
    with pytest.raises(anthropic.NotFoundError):
        claude(sim, "strict").messages.create(model="claud-sonnet", max_tokens=50, messages=user())


def test_anthropic_fresh_ids_and_parallel_tool_use(sim: Simulator) -> None:
    tools: Any = [{"name": "weather", "input_schema": WEATHER_SCHEMA},
                  {"name": "time", "input_schema": TIME_SCHEMA}]
    client = claude(sim, "parallel")
    first, second = (client.messages.create(model=MODEL, max_tokens=200, messages=user(),
                                            tools=tools) for _ in "12")
    assert first.id != second.id
    uses = [block for block in first.content if block.type == "tool_use"]
    assert [u.name for u in uses] == ["weather", "time", "weather"]  # type: ignore[union-attr]
    assert len({u.id for u in uses} | {b.id for b in second.content if b.type == "tool_use"}) == 6  # type: ignore[union-attr]
    schemas = {"weather": WEATHER_SCHEMA, "time": TIME_SCHEMA}
    for use in uses:
        jsonschema.validate(use.input, schemas[use.name])  # type: ignore[union-attr]
    assert first.stop_reason == "tool_use"


def test_anthropic_mid_stream_error_and_overloaded(sim: Simulator) -> None:
    with pytest.raises(anthropic.APIStatusError) as caught:
        with claude(sim, "mid-stream").messages.stream(model=MODEL, max_tokens=50,
                                                       messages=user()) as stream:
            for _ in stream:
                pass
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "overloaded_error"


def test_anthropic_thinking_count_tokens_and_models(sim: Simulator) -> None:
    client = claude(sim)
    message = client.messages.create(model=MODEL, max_tokens=2000, messages=user(),
                                     thinking={"type": "enabled", "budget_tokens": 1024})
    assert [block.type for block in message.content] == ["thinking", "text"]
    counted = client.messages.count_tokens(model=MODEL, messages=user())
    assert counted.input_tokens == message.usage.input_tokens
    assert [model.id for model in client.models.list()]


# -- Gemini --------------------------------------------------------------------------------


def gemini(sim: Simulator, scenario: str = "ok") -> genai.Client:
    options = genai_types.HttpOptions(base_url=sim.base(scenario))
    return genai.Client(api_key="sim-key", http_options=options)


FLASH = "gemini-2.5-flash"


def test_gemini_structured_output_parsed(sim: Simulator) -> None:
    client = gemini(sim)
    config = genai_types.GenerateContentConfig(response_mime_type="application/json",
                                               response_schema=City)
    response = client.models.generate_content(model=FLASH, contents=QUESTION, config=config)
    assert isinstance(response.parsed, City)
    json_config = genai_types.GenerateContentConfig(response_mime_type="application/json",
                                                    response_json_schema=City.model_json_schema())
    as_json = client.models.generate_content(model=FLASH, contents=QUESTION, config=json_config)
    City.model_validate_json(as_json.text or "")


def test_gemini_usage_details_ids_and_thinking(sim: Simulator) -> None:
    client = gemini(sim)
    first, second = (client.models.generate_content(model=FLASH, contents=QUESTION) for _ in "12")
    assert first.response_id != second.response_id and first.text == second.text
    usage = first.usage_metadata
    assert usage is not None and usage.prompt_tokens_details
    assert usage.prompt_tokens_details[0].token_count == usage.prompt_token_count
    config = genai_types.GenerateContentConfig(
        thinking_config=genai_types.ThinkingConfig(thinking_budget=512, include_thoughts=True))
    thought = client.models.generate_content(model=FLASH, contents=QUESTION, config=config)
    assert thought.usage_metadata is not None and thought.usage_metadata.thoughts_token_count
    parts = thought.candidates[0].content.parts  # type: ignore[index, union-attr]
    assert parts is not None and parts[0].thought is True


def test_gemini_invalid_requests_and_retry_info(sim: Simulator) -> None:
    bad = genai_types.GenerateContentConfig(temperature=5)
    client, strict = gemini(sim), gemini(sim, "strict")
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(model=FLASH, contents=QUESTION, config=bad)
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"
    with pytest.raises(genai_errors.ClientError, match="valid role"):
        client.models.generate_content(
            model=FLASH, contents=[genai_types.Content(role="robot", parts=[genai_types.Part(text="hi")])])
    with pytest.raises(genai_errors.ClientError) as missing:
        strict.models.generate_content(model="gemni-2.5", contents=QUESTION)
    assert missing.value.code == 404
    sim.set_scenario(name := unique("gemini-429"), "rate-limited")
    limited_client = gemini(sim, name)
    with pytest.raises(genai_errors.ClientError) as limited:
        limited_client.models.generate_content(model=FLASH, contents=QUESTION)
    details = limited.value.details["error"]["details"]
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"} in details


def test_gemini_parallel_function_calls_and_mid_stream_error(sim: Simulator) -> None:
    tools = [genai_types.Tool(function_declarations=[
        genai_types.FunctionDeclaration(name="weather", parameters_json_schema=WEATHER_SCHEMA),
        genai_types.FunctionDeclaration(name="time", parameters_json_schema=TIME_SCHEMA)])]
    config = genai_types.GenerateContentConfig(
        tools=tools, automatic_function_calling=genai_types.AutomaticFunctionCallingConfig(disable=True))
    parallel, broken = gemini(sim, "parallel"), gemini(sim, "mid-stream")
    response = parallel.models.generate_content(model=FLASH, contents=QUESTION, config=config)
    calls = response.function_calls or []
    assert [c.name for c in calls] == ["weather", "time", "weather"]
    for call in calls:
        jsonschema.validate(call.args, WEATHER_SCHEMA if call.name == "weather" else TIME_SCHEMA)
    received = []
    with pytest.raises(genai_errors.APIError):
        for chunk in broken.models.generate_content_stream(model=FLASH, contents=QUESTION):
            received.append(chunk)
    assert len(received) == 3


def test_gemini_count_tokens_and_embeddings(sim: Simulator) -> None:
    client = gemini(sim)
    counted = client.models.count_tokens(model=FLASH, contents=QUESTION)
    assert counted.total_tokens == 7
    embedded = client.models.embed_content(model="text-embedding-004", contents=["a", "b", "a"])
    vectors = [e.values for e in embedded.embeddings or []]
    assert len(vectors) == 3 and vectors[0] == vectors[2] != vectors[1]
    assert len(vectors[0] or []) == 768


# -- Ollama --------------------------------------------------------------------------------


def local(sim: Simulator, scenario: str = "ok") -> ollama.Client:
    return ollama.Client(host=sim.base(scenario))


def test_ollama_structured_output_and_json_mode(sim: Simulator) -> None:
    client = local(sim)
    response = client.chat(model="llama3.2", messages=user(), format=City.model_json_schema())
    parsed = City.model_validate_json(response.message.content or "")
    again = client.chat(model="llama3.2", messages=user(), format=City.model_json_schema())
    assert City.model_validate_json(again.message.content or "") == parsed
    assert isinstance(json.loads(client.chat(model="llama3.2", messages=user(),
                                             format="json").message.content or ""), dict)
    assert response.prompt_eval_count == 7 and response.eval_count


def test_ollama_invalid_requests_tools_and_mid_stream_error(sim: Simulator) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        local(sim).chat(model="llama3.2", messages=[{"role": "robot", "content": "hi"}])
    assert caught.value.status_code == 400
    with pytest.raises(ollama.ResponseError) as missing:
        local(sim, "strict").chat(model="lama3", messages=user())
    assert missing.value.status_code == 404
    # ollama's Tool type keeps only type, enum and description of each property
    schema = {"type": "object", "required": ["city", "unit"], "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer"}}}
    tools: Any = [{"type": "function", "function": {"name": "weather", "parameters": schema}}]
    response = local(sim, "parallel").chat(model="llama3.2", messages=user(), tools=tools)
    calls = response.message.tool_calls or []
    assert len(calls) == 3
    for call in calls:
        jsonschema.validate(dict(call.function.arguments), schema)
    received = []
    with pytest.raises(ollama.ResponseError, match="simulated"):
        for part in local(sim, "mid-stream").chat(model="llama3.2", messages=user(), stream=True):
            received.append(part)
    assert len(received) == 3


def test_ollama_generate_embed_tags_and_show(sim: Simulator) -> None:
    client = local(sim)
    generated = client.generate(model="llama3.2", prompt=QUESTION, system="Reply with: Paris.")
    assert generated.response == "Paris." and generated.done
    embedded = client.embed(model="nomic-embed-text", input=["a", "b"])
    assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0]) == 768
    assert [m.model for m in client.list().models]
    assert client.show("llama3.2").details is not None


# -- across vendors ------------------------------------------------------------------------


def test_unknown_paths_answer_vendor_shaped_404s(sim: Simulator) -> None:
    with pytest.raises(openai.NotFoundError):
        oai(sim).files.list()
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude(sim).beta.files.list()
    assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


def test_openai_embeddings_models_and_sampling_controls(sim: Simulator) -> None:
    client = oai(sim)
    vectors = client.embeddings.create(model="text-embedding-3-small", input=["a", "b", "a"])
    values = [item.embedding for item in vectors.data]
    assert values[0] == values[2] != values[1] and len(values[0]) == 1536
    assert "gpt-4o" in [model.id for model in client.models.list()]
    stopped = client.chat.completions.create(model="gpt-4o", messages=user(), stop=["capital"])
    assert stopped.choices[0].message.content == "Simulated answer from gpt-4o: What is the "
    several = client.chat.completions.create(model="gpt-4o", messages=user(), n=3, logprobs=True,
                                             top_logprobs=2)
    assert [c.index for c in several.choices] == [0, 1, 2]
    assert len({c.message.content for c in several.choices}) == 3
    logprobs = several.choices[0].logprobs
    assert logprobs is not None and logprobs.content and len(logprobs.content[0].top_logprobs) == 2
    directed = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "system", "content": "Reply with: Paris."}, *user()])
    assert directed.choices[0].message.content == "Paris."


def test_openai_responses_api(sim: Simulator) -> None:
    client = oai(sim)
    response = client.responses.create(model="gpt-4o", input=QUESTION, instructions="Be terse.")
    assert response.output_text == f"Simulated answer from gpt-4o: {QUESTION}"
    assert response.usage is not None and response.usage.input_tokens == 10
    assert response._request_id and response.id.startswith("resp_")
    parsed = client.responses.parse(model="gpt-4o", input=QUESTION, text_format=City)
    assert isinstance(parsed.output_parsed, City)
    with client.responses.stream(model="gpt-4o", input=QUESTION) as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == response.output_text
    tools: Any = [{"type": "function", "name": "weather", "parameters": WEATHER_SCHEMA,
                   "strict": True}]
    called = oai(sim, "parallel").responses.create(model="gpt-4o", input=QUESTION, tools=tools)
    calls = [item for item in called.output if item.type == "function_call"]
    assert len(calls) == 3 and len({c.call_id for c in calls}) == 3
    for call in calls:
        jsonschema.validate(json.loads(call.arguments), WEATHER_SCHEMA)
    follow_up: Any = [{"role": "user", "content": QUESTION},
                      {"type": "function_call", "call_id": calls[0].call_id, "name": "weather",
                       "arguments": calls[0].arguments},
                      {"type": "function_call_output", "call_id": calls[0].call_id,
                       "output": "sunny"}]
    answered = client.responses.create(model="gpt-4o", input=follow_up, tools=tools)
    assert answered.output_text.endswith("the tool returned sunny")
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="gpt-4o", input=QUESTION, temperature=3)


def test_gemini_candidates_stop_and_implicit_cache(sim: Simulator) -> None:
    client = gemini(sim, unique("gemini-cache"))
    config = genai_types.GenerateContentConfig(candidate_count=2, stop_sequences=["capital"])
    response = client.models.generate_content(model=FLASH, contents=QUESTION, config=config)
    texts = [c.content.parts[0].text for c in response.candidates or []]  # type: ignore[union-attr, index]
    assert texts == ["Simulated answer from gemini-2.5-flash: What is the "] * 2
    history = [genai_types.Content(role="user", parts=[genai_types.Part(text=LONG_SYSTEM)]),
               genai_types.Content(role="model", parts=[genai_types.Part(text="Noted.")]),
               genai_types.Content(role="user", parts=[genai_types.Part(text=QUESTION)])]
    first = client.models.generate_content(model=FLASH, contents=history)
    second = client.models.generate_content(model=FLASH, contents=history)
    assert first.usage_metadata is not None and second.usage_metadata is not None
    assert first.usage_metadata.cached_content_token_count is None
    cached = second.usage_metadata.cached_content_token_count or 0
    assert 1024 < cached < (second.usage_metadata.prompt_token_count or 0)


def test_anthropic_stop_sequences_and_system_prompt(sim: Simulator) -> None:
    client = claude(sim)
    stopped = client.messages.create(model=MODEL, max_tokens=50, messages=user(),
                                     stop_sequences=["capital"])
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", "capital")
    assert stopped.content[0].text == "Simulated answer from claude-sonnet-4-5: What is the "  # type: ignore[union-attr]
    directed = client.messages.create(model=MODEL, max_tokens=50, messages=user(),
                                      system="Reply with: Paris.")
    assert directed.content[0].text == "Paris."  # type: ignore[union-attr]
