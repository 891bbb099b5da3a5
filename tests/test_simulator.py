"""The provider simulator, exercised through real litellm calls over real loopback HTTP.

Each wire format must be parsed by litellm exactly as the real provider's would be
(content, usage, finish reason, tool calls), and each injected fault must surface as
the litellm exception a real outage of that kind produces.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import asyncio
import json
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import litellm
import openai
import pytest

from adapters.llm.simulator import BUILTIN_SCENARIOS, Fault, Scenario, Simulator

from .waiting import await_until, wait_until

amodule = pytest.mark.asyncio(loop_scope="module")  # litellm caches async clients per loop

OPENAI = "openai/gpt-4o"
ANTHROPIC = "anthropic/claude-sonnet-4-5"
GEMINI = "gemini/gemini-2.5-flash"
OLLAMA = "ollama_chat/llama3"
ALL_MODELS = [OPENAI, ANTHROPIC, GEMINI, OLLAMA]

SYSTEM = "You are terse."
QUESTION = "What's the capital of France, in one word?"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
                "verbose": {"type": "boolean"},
            },
            "required": ["city", "unit", "days"],
        },
    },
}
LOOKUP_TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


def tokens(text: str) -> int:
    """The simulator's documented token rule."""
    return len(re.findall(r"\w+|[^\w\s]", text))


def answer_for(model: str, text: str) -> str:
    return f"Simulated answer from {model.split('/', 1)[1]}: {text}"


def messages() -> list[dict[str, Any]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]


def unique(prefix: str) -> str:
    """A scenario name no other test uses (new names start as a healthy copy of ``ok``)."""
    return f"{prefix}-{time.monotonic_ns()}"


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    with Simulator({"tiny-context": Scenario(max_input_tokens=5)}) as sim:
        yield sim


async def acall(sim: Simulator, model: str, scenario: str, **kwargs: Any) -> Any:
    """One litellm call with retries off, so every fault reaches the test."""
    kwargs.setdefault("messages", messages())
    return await litellm.acompletion(
        model=model,
        api_base=sim.base(scenario),
        api_key="sk-sim",
        num_retries=0,
        max_retries=0,
        **kwargs,
    )


async def drain(stream: Any) -> list[Any]:
    return [chunk async for chunk in stream]


def streamed_text(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# -- wire formats -------------------------------------------------------------------------


@amodule
@pytest.mark.parametrize("model", ALL_MODELS)
async def test_non_streaming_content_and_usage(simulator: Simulator, model: str) -> None:
    response = await acall(simulator, model, "ok")
    expected = answer_for(model, QUESTION)
    assert response.choices[0].message.content == expected
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.prompt_tokens == tokens(SYSTEM) + tokens(QUESTION)
    assert response.usage.completion_tokens == tokens(expected)


@amodule
@pytest.mark.parametrize("model", ALL_MODELS)
async def test_streaming_content_and_usage(simulator: Simulator, model: str) -> None:
    stream = await acall(simulator, model, "ok", stream=True, stream_options={"include_usage": True})
    chunks = await drain(stream)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    usage = [c.usage for c in chunks if getattr(c, "usage", None)][-1]
    expected = answer_for(model, QUESTION)
    assert streamed_text(chunks) == expected
    assert finish == ["stop"]
    assert len(chunks) >= len(expected.split())  # really streamed word by word, not one blob
    assert usage.prompt_tokens == tokens(SYSTEM) + tokens(QUESTION)
    assert usage.completion_tokens == tokens(expected)


def test_sync_completion_and_scenario_content(simulator: Simulator) -> None:
    simulator.set_scenario("fixed", Scenario(content="Paris."))
    response = litellm.completion(
        model=OPENAI,
        api_base=simulator.base("fixed"),
        api_key="sk-sim",
        messages=messages(),
        max_retries=0,
    )
    assert response.choices[0].message.content == "Paris."
    assert response.usage.completion_tokens == 2


@amodule
@pytest.mark.parametrize("model", ALL_MODELS)
async def test_max_tokens_truncates_with_length_finish(simulator: Simulator, model: str) -> None:
    response = await acall(simulator, model, "ok", max_tokens=4)
    first_word_of_model = re.match(r"\w+", model.split("/")[1])
    assert first_word_of_model is not None
    assert response.choices[0].message.content == f"Simulated answer from {first_word_of_model.group()}"
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 4


@amodule
@pytest.mark.parametrize("model", ALL_MODELS)
async def test_tool_call_round_trip(simulator: Simulator, model: str) -> None:
    history: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    first = await acall(simulator, model, "ok", messages=history, tools=[WEATHER_TOOL])
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    [call] = message.tool_calls
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, WEATHER_TOOL["function"]["parameters"])
    again = await acall(simulator, model, "ok", messages=history, tools=[WEATHER_TOOL])
    assert json.loads(again.choices[0].message.tool_calls[0].function.arguments) == arguments
    compact_args = json.dumps(arguments, separators=(",", ":"))
    assert first.usage.completion_tokens == tokens("get_weather") + tokens(compact_args)

    history.append({"role": "assistant", "content": message.content, "tool_calls": [call.model_dump()]})
    history.append({"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 degrees"})
    second = await acall(simulator, model, "ok", messages=history, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == answer_for(model, "the tool returned sunny, 21 degrees")
    assert second.choices[0].finish_reason == "stop"
    assert second.usage.prompt_tokens == tokens("Weather in Paris?") + tokens("sunny, 21 degrees")


@amodule
@pytest.mark.parametrize("model", [OPENAI, ANTHROPIC, GEMINI])
async def test_streamed_tool_call_and_tool_choice(simulator: Simulator, model: str) -> None:
    forced = {"type": "function", "function": {"name": "lookup"}}
    stream = await acall(
        simulator, model, "ok", tools=[WEATHER_TOOL, LOOKUP_TOOL], tool_choice=forced, stream=True
    )
    built: Any = litellm.stream_chunk_builder(await drain(stream))
    assert built.choices[0].finish_reason == "tool_calls"
    [call] = built.choices[0].message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("lookup", {})

    answer = await acall(simulator, model, "ok", tools=[WEATHER_TOOL], tool_choice="none")
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.tool_calls is None


# -- faults ---------------------------------------------------------------------------------


@amodule
@pytest.mark.parametrize("model", ALL_MODELS)
async def test_503_is_service_unavailable(simulator: Simulator, model: str) -> None:
    with pytest.raises(litellm.ServiceUnavailableError):
        await acall(simulator, model, "down")


@amodule
@pytest.mark.parametrize("model", ALL_MODELS)
async def test_429_is_rate_limit_with_retry_after(simulator: Simulator, model: str) -> None:
    with pytest.raises(litellm.RateLimitError) as caught:
        await acall(simulator, model, "rate-limited")
    headers: Any = getattr(caught.value, "litellm_response_headers", None)
    assert headers["retry-after"] == "3"


@amodule
@pytest.mark.parametrize(
    ("scenario", "error"),
    [
        ("unauthorized", litellm.AuthenticationError),
        ("bad-request", litellm.BadRequestError),
        ("error", litellm.InternalServerError),
    ],
)
async def test_status_faults_map_to_litellm_errors(
    simulator: Simulator, scenario: str, error: type[Exception]
) -> None:
    for model in ALL_MODELS:
        with pytest.raises(error):
            await acall(simulator, model, scenario)


# litellm's OpenAI and Anthropic handlers report a dropped connection as a 500.
RESET_ERRORS = {
    OPENAI: litellm.InternalServerError,
    ANTHROPIC: litellm.InternalServerError,
    GEMINI: litellm.APIConnectionError,
    OLLAMA: litellm.APIConnectionError,
}


@amodule
@pytest.mark.parametrize("model", ALL_MODELS)
async def test_reset_is_a_connection_error(simulator: Simulator, model: str) -> None:
    with pytest.raises(RESET_ERRORS[model]) as caught:
        await acall(simulator, model, "reset")
    assert re.search(r"connection (error|reset)", str(caught.value), re.IGNORECASE)


@amodule
@pytest.mark.parametrize("model", ALL_MODELS)
async def test_malformed_body_is_an_error(simulator: Simulator, model: str) -> None:
    with pytest.raises(openai.APIError, match="Unterminated string"):
        await acall(simulator, model, "malformed")


@amodule
@pytest.mark.parametrize("model", [OPENAI, ANTHROPIC, OLLAMA])
async def test_malformed_stream_fails_while_iterating(simulator: Simulator, model: str) -> None:
    stream = await acall(simulator, model, "malformed", stream=True)
    with pytest.raises(openai.APIError):
        await drain(stream)


@amodule
async def test_malformed_gemini_stream_is_swallowed_by_litellm(simulator: Simulator) -> None:
    """litellm buffers unparseable Gemini SSE data as a JSON fragment and ends the stream quietly."""
    chunks = await drain(await acall(simulator, GEMINI, "malformed", stream=True))
    assert streamed_text(chunks) == "Simulated"


@amodule
@pytest.mark.parametrize("model", ALL_MODELS)
async def test_cut_stream_fails_while_iterating(simulator: Simulator, model: str) -> None:
    stream = await acall(simulator, model, "cut", stream=True)
    with pytest.raises(openai.APIError):
        await drain(stream)
    with pytest.raises(openai.APIError):  # non-streaming: a body shorter than its Content-Length
        await acall(simulator, model, "cut")


@amodule
@pytest.mark.parametrize("stream", [False, True])
async def test_stall_times_out_and_the_handler_is_cancelled(simulator: Simulator, stream: bool) -> None:
    name = unique("stall")
    simulator.set_scenario(name, "stall")
    started = time.monotonic()
    with pytest.raises(litellm.Timeout):
        response = await acall(simulator, ANTHROPIC, name, timeout=0.5, stream=stream)
        if stream:
            await drain(response)
    assert time.monotonic() - started < 3
    await await_until(lambda: simulator.stats(name)["in_flight"] == 0, timeout=5,
                      what="the client's disconnect cancelling the stalled handler")
    expected = {"requests": 1, "by_status": {}, "faults": {"stall": 1}, "in_flight": 0}
    assert simulator.stats(name) == expected


@amodule
@pytest.mark.parametrize("model", [OPENAI, ANTHROPIC, GEMINI])
async def test_context_window_exceeded(simulator: Simulator, model: str) -> None:
    with pytest.raises(litellm.ContextWindowExceededError):
        await acall(simulator, model, "tiny-context")


@amodule
async def test_ollama_context_error_is_a_bad_request(simulator: Simulator) -> None:
    """litellm's Ollama error mapping has no context-window case."""
    with pytest.raises(litellm.BadRequestError, match="exceeds the available context size"):
        await acall(simulator, OLLAMA, "tiny-context")


# -- control, determinism, load, timing -----------------------------------------------------


def test_control_endpoint_changes_scenarios_and_counts(simulator: Simulator) -> None:
    name = unique("deployment")
    payload = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}

    def call(client: httpx.Client, path: str = "chat/completions") -> httpx.Response:
        return client.post(f"/s/{name}/{path}", json=payload, headers={"Authorization": "Bearer k"})

    with httpx.Client(base_url=simulator.url) as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert call(client).status_code == 200

        broken = {"faults": [{"kind": "status", "status": 503}]}
        assert client.put(f"/control/scenarios/{name}", json=broken).status_code == 200
        failed = call(client, "v1/chat/completions")
        assert failed.status_code == 503 and failed.json()["error"]["type"] == "server_error"
        assert client.get("/control/scenarios").json()[name]["faults"][0]["status"] == 503

        assert client.put(f"/control/scenarios/{name}", json={"use": "rate-limited"}).status_code == 200
        limited = call(client)
        assert (limited.status_code, limited.headers["retry-after"]) == (429, "3")

        typo = client.put(f"/control/scenarios/{name}", json={"latency": 5})
        assert typo.status_code == 400 and "'latency'" in typo.json()["error"]

        assert client.delete(f"/control/scenarios/{name}").status_code == 200
        assert call(client).status_code == 200

        assert client.get("/control/stats").json()[name] == {
            "requests": 4,
            "by_status": {"200": 2, "429": 1, "503": 1},
            "faults": {"status": 2},
            "in_flight": 0,
        }
        assert client.post("/control/reset-stats").json() == {"status": "ok"}
        assert name not in client.get("/control/stats").json()
    assert simulator.stats(name)["requests"] == 0


def test_control_endpoint_reads_one_scenario_as_put_takes_it(simulator: Simulator) -> None:
    """GET answers what PUT accepts: reading, editing and putting back round-trips."""
    name = unique("deployment")
    with httpx.Client(base_url=simulator.url) as client:
        missing = client.get(f"/control/scenarios/{name}")
        assert missing.status_code == 404 and repr(name) in missing.json()["error"]

        builtin = client.get("/control/scenarios/rate-limited")
        assert builtin.status_code == 200
        assert builtin.json() == BUILTIN_SCENARIOS["rate-limited"].to_dict()

        assert client.put(f"/control/scenarios/{name}", json={"use": "down"}).status_code == 200
        read = client.get(f"/control/scenarios/{name}").json()
        assert read["faults"][0]["status"] == 503
        read["faults"][0]["status"] = 502
        assert client.put(f"/control/scenarios/{name}", json=read).status_code == 200
        assert client.get(f"/control/scenarios/{name}").json() == read

        assert client.delete(f"/control/scenarios/{name}").status_code == 200
        assert client.get(f"/control/scenarios/{name}").json()["faults"] == []


def _statuses(sim: Simulator, name: str, count: int) -> list[int]:
    payload = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    url = f"{sim.base(name)}/v1/messages"
    with httpx.Client(headers={"x-api-key": "k", "anthropic-version": "2023-06-01"}) as client:
        return [client.post(url, json=payload).status_code for _ in range(count)]


def test_first_n_and_seeded_rate_are_deterministic(simulator: Simulator) -> None:
    warmup = unique("warmup")
    simulator.set_scenario(warmup, Scenario(faults=[Fault("status", status=500, first_n=2)]))
    assert _statuses(simulator, warmup, 4) == [500, 500, 200, 200]

    flaky = Scenario(faults=[Fault("status", status=503, rate=0.3)], seed=11)
    runs = []
    for _ in range(2):
        name = unique("flaky")
        simulator.set_scenario(name, flaky)
        runs.append(_statuses(simulator, name, 30))
    rng = random.Random(11)
    assert runs[0] == runs[1] == [503 if rng.random() < 0.3 else 200 for _ in range(30)]
    assert 0 < runs[0].count(503) < 30


@amodule
async def test_two_hundred_concurrent_requests(simulator: Simulator) -> None:
    name = unique("load")
    simulator.set_scenario(name, Scenario(latency_ms=100, jitter_ms=20))
    prompts = [f"request {i}" for i in range(200)]
    started = time.monotonic()
    responses = await asyncio.gather(
        *(acall(simulator, OPENAI, name, messages=[{"role": "user", "content": p}]) for p in prompts)
    )
    assert time.monotonic() - started < 10  # concurrent, not 200 sleeps of 100 ms one after another
    assert [r.choices[0].message.content for r in responses] == [answer_for(OPENAI, p) for p in prompts]
    assert simulator.stats(name)["by_status"] == {"200": 200}


def test_latency_and_chunking_shape_the_stream(simulator: Simulator) -> None:
    name = unique("paced")
    paced = Scenario(latency_ms=150, chunk_interval_ms=20, chunk_words=2, content="a b c d e f")
    simulator.set_scenario(name, paced)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    url = f"{simulator.base(name)}/chat/completions"
    started = time.monotonic()
    with httpx.stream("POST", url, json=body, headers={"Authorization": "Bearer k"}) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    elapsed = time.monotonic() - started
    deltas = [json.loads(line[6:])["choices"][0]["delta"] for line in lines[:-1]]
    # the role chunk, three chunks of two words, the finish chunk
    assert [delta.get("content") for delta in deltas] == ["", "a b", " c d", " e f", None]
    assert lines[-1] == "data: [DONE]"
    assert elapsed >= 0.15 + 4 * 0.02


def test_protocol_errors_in_provider_format(simulator: Simulator) -> None:
    one_message = [{"role": "user", "content": "x"}]
    with httpx.Client(base_url=simulator.base("ok")) as client:
        no_key = client.post("/v1/messages", json={"model": "m", "max_tokens": 5, "messages": one_message})
        assert no_key.status_code == 401
        assert no_key.json()["error"]["type"] == "authentication_error"

        no_limit = client.post(
            "/v1/messages", json={"model": "m", "messages": one_message}, headers={"x-api-key": "k"}
        )
        assert no_limit.status_code == 400
        assert "max_tokens" in no_limit.json()["error"]["message"]

        not_json = client.post("/models/g:generateContent", content=b"{", headers={"x-goog-api-key": "k"})
        assert not_json.json()["error"]["status"] == "INVALID_ARGUMENT"
        assert client.post("/v2/unknown", json={}).status_code == 404


# -- data model and lifecycle -----------------------------------------------------------------


def test_scenario_dict_round_trip_and_validation() -> None:
    for scenario in BUILTIN_SCENARIOS.values():
        assert Scenario.from_dict(scenario.to_dict()) == scenario
    with pytest.raises(ValueError, match="'stall'"):
        Scenario.from_dict({"faults": [{"kind": "status", "stall": 1}]})
    with pytest.raises(ValueError, match="Fault.rate"):
        Fault("status", rate=1.5)
    with pytest.raises(ValueError, match="Scenario.chunk_words"):
        Scenario.from_dict({"chunk_words": 0})
    with pytest.raises(ValueError, match="Fault.kind"):
        Fault.from_dict({"kind": "explode"})


def test_latency_sigma_gives_a_seeded_long_tail() -> None:
    from adapters.llm.simulator.state import ScenarioRuntime

    def draws(scenario: Scenario) -> list[float]:
        runtime = ScenarioRuntime(scenario)
        return sorted(runtime.latency_s() * 1000 for _ in range(4000))

    tail = draws(Scenario(latency_ms=300, latency_sigma=0.4, seed=3))
    assert tail == draws(Scenario(latency_ms=300, latency_sigma=0.4, seed=3)), "seeded"
    median, p99 = tail[2000], tail[3960]
    assert 285 < median < 315, "latency_ms is the median"
    assert 2.2 < p99 / median < 2.9, "sigma 0.4: p99 ≈ e^(0.4 × 2.33) ≈ 2.5 × the median"
    flat = draws(Scenario(latency_ms=300, jitter_ms=20, seed=3))
    assert 280 <= flat[0] and flat[-1] <= 320, "without sigma: uniform jitter only"
    with pytest.raises(ValueError, match="Scenario.latency_sigma"):
        Scenario.from_dict({"latency_sigma": -1})


def test_stop_closes_stalled_connections_promptly() -> None:
    sim = Simulator({"stuck": BUILTIN_SCENARIOS["stall"]}).start()
    errors: list[Exception] = []

    def client() -> None:
        try:
            httpx.post(f"{sim.base('stuck')}/api/chat", json={"model": "m", "messages": []}, timeout=30)
        except httpx.TransportError as exc:
            errors.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    wait_until(lambda: sim.stats("stuck")["in_flight"] > 0, timeout=5, interval=0.01,
               what="the client's request in flight at the simulator")
    started = time.monotonic()
    sim.stop()
    sim.stop()  # idempotent
    thread.join(timeout=5)
    assert time.monotonic() - started < 3
    assert len(errors) == 1


def test_restart_keeps_scenarios_and_port() -> None:
    sim = Simulator().start()
    sim.set_scenario("broken", "down")
    url = sim.url
    sim.stop()
    with sim:
        assert sim.url == url
        response = httpx.post(f"{sim.base('broken')}/api/chat", json={"model": "m", "messages": []})
        assert response.status_code == 503


@pytest.mark.asyncio
async def test_async_context_manager_serves_on_the_running_loop() -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    async with Simulator() as sim, httpx.AsyncClient(headers={"x-goog-api-key": "k"}) as client:
        sim.set_scenario("gone", "down")
        ok = await client.post(f"{sim.base('x')}/models/gemini-2.5-flash:generateContent", json=body)
        gone = await client.post(f"{sim.base('gone')}/models/gemini-2.5-flash:generateContent", json=body)
        assert ok.json()["candidates"][0]["content"]["parts"][0]["text"] == answer_for(GEMINI, "hi")
        assert gone.json()["error"]["status"] == "UNAVAILABLE"
        assert sim.stats("x")["requests"] == 1


def test_serve_runs_until_sigint() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "adapters.llm.simulator", "--port", "0"], stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        url = re.search(r"http://[\d.]+:\d+", process.stderr.readline())
        assert url is not None
        assert httpx.get(f"{url.group()}/health").json() == {"status": "ok"}
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=5) == 0
    finally:
        process.kill()


# -- raw wire details the SDKs hide -----------------------------------------------------------


def test_anthropic_stream_order_and_usage_on_the_wire(simulator: Simulator) -> None:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 50, "stream": True,
            "messages": [{"role": "user", "content": QUESTION}]}
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    with httpx.stream("POST", f"{simulator.base('ok')}/v1/messages", json=body,
                      headers=headers) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    kinds = [event["type"] for event in events]
    assert kinds[:3] == ["message_start", "content_block_start", "ping"]
    assert kinds[-2:] == ["message_delta", "message_stop"]
    start_usage = events[0]["message"]["usage"]
    delta_usage = events[-2]["usage"]
    assert start_usage["input_tokens"] == delta_usage["input_tokens"] == tokens(QUESTION)
    expected = answer_for(ANTHROPIC, QUESTION)
    assert delta_usage["output_tokens"] == tokens(expected)


def test_gemini_stream_without_alt_sse_is_one_json_array(simulator: Simulator) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": QUESTION}]}]}
    url = f"{simulator.base('ok')}/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    response = httpx.post(url, json=body, headers={"x-goog-api-key": "k"})
    assert response.headers["content-type"].startswith("application/json")
    chunks = response.json()
    assert isinstance(chunks, list) and len(chunks) > 1
    text = "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks)
    assert text == answer_for(GEMINI, QUESTION)
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    sse = httpx.post(url, params={"alt": "sse"}, json=body, headers={"x-goog-api-key": "k"})
    assert sse.headers["content-type"].startswith("text/event-stream")


SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"a": {"type": "string", "minLength": 30, "maxLength": 40},
                                      "b": {"type": "number", "exclusiveMinimum": 5, "maximum": 6},
                                      "c": {"type": "integer", "multipleOf": 7, "minimum": 10}},
     "required": ["a", "b", "c"], "additionalProperties": False},
    {"type": "array", "items": {"type": "string", "enum": ["x", "y", "z"]}, "minItems": 2,
     "maxItems": 3, "uniqueItems": True},
    {"$defs": {"P": {"type": "object", "properties": {"n": {"type": ["string", "null"]}},
                     "required": ["n"]}},
     "type": "object", "properties": {"people": {"type": "array", "items": {"$ref": "#/$defs/P"}},
                                      "one": {"anyOf": [{"$ref": "#/$defs/P"}, {"type": "null"}]}},
     "required": ["people", "one"]},
    {"type": "object", "properties": {"when": {"type": "string", "format": "date-time"},
                                      "mail": {"type": "string", "format": "email"},
                                      "code": {"type": "string", "pattern": "^[0-9]{2}$"},
                                      "fixed": {"const": 3}, "flag": {"type": "boolean"}},
     "required": ["when", "mail", "code", "fixed", "flag"]},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_schema_answers_are_valid_and_seeded(schema: dict[str, Any]) -> None:
    from adapters.llm.simulator.schema_answers import generate, seeded_rng

    values = [generate(schema, seeded_rng(seed)) for seed in range(40)]
    for value in values:
        jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker())
    assert values == [generate(schema, seeded_rng(seed)) for seed in range(40)]
    assert len({json.dumps(v, sort_keys=True) for v in values}) > 1, "the seed varies the answer"


def test_gemini_schema_dialect_is_understood() -> None:
    from adapters.llm.simulator.schema_answers import generate, seeded_rng

    schema = {"type": "OBJECT", "properties": {"name": {"type": "STRING"},
                                               "age": {"type": "INTEGER", "nullable": True},
                                               "tags": {"type": "ARRAY", "items": {"type": "STRING"}}},
              "required": ["name", "age", "tags"], "propertyOrdering": ["tags", "name", "age"]}
    value = generate(schema, seeded_rng(1))
    assert list(value) == ["tags", "name", "age"]
    assert isinstance(value["name"], str) and isinstance(value["age"], int)
    assert all(isinstance(tag, str) for tag in value["tags"])


def test_gemini_json_array_stream_ends_with_the_error(simulator: Simulator) -> None:
    name = unique("array-error")
    simulator.set_scenario(name, Scenario(faults=[Fault("stream_error", status=503, after_chunks=2)]))
    body = {"contents": [{"role": "user", "parts": [{"text": QUESTION}]}]}
    url = f"{simulator.base(name)}/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    chunks = httpx.post(url, json=body, headers={"x-goog-api-key": "k"}).json()
    assert len(chunks) == 3 and "candidates" in chunks[1]
    assert chunks[-1]["error"]["status"] == "UNAVAILABLE"


def test_token_rate_limit_refuses_once_the_window_is_spent(simulator: Simulator) -> None:
    name = unique("tpm")
    simulator.set_scenario(name, Scenario(rate_limit_tokens=15))
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": QUESTION}]}
    url = f"{simulator.base(name)}/chat/completions"
    with httpx.Client(headers={"Authorization": "Bearer k"}) as client:
        first = client.post(url, json=body)
        second = client.post(url, json=body)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-remaining-tokens"] == str(15 - tokens(QUESTION))
    assert second.status_code == 429 and "tokens per min" in second.json()["error"]["message"]
    assert float(second.headers["retry-after"]) > 0
