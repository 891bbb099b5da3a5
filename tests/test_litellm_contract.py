"""Contract tests: the private litellm behaviours the adapter relies on, against the installed
litellm, over real HTTP to the provider simulator.

Each one is reached only through ``adapters.llm._routing.litellm``. When an upgrade of litellm
changes one of them, the test that names it fails here, with what changed, before the routing
tests fail somewhere less obvious.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from adapters.llm._routing import litellm as boundary
from adapters.llm._routing.provider_errors import classify
from adapters.llm.simulator import Fault, Scenario

from .conftest import unique
from .waiting import await_until

MESSAGES = [{"role": "user", "content": "Hello"}]


def router(sim: Any, *deps: str, group: str = "g", **settings: Any) -> Any:
    model_list = [{"model_name": group,
                   "litellm_params": {"model": "openai/gpt-4o", "api_base": sim.base(d),
                                      "api_key": "sk-test-contract-0001"},
                   "model_info": {"id": d}} for d in deps]
    return boundary.new_router(model_list=model_list, num_retries=0, **settings)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_the_answering_deployment_id_is_stamped_on_the_response(sim):
    a, b = unique("contract-a"), unique("contract-b")
    r = router(sim, a, b)
    response = run(r.acompletion(model="g", messages=MESSAGES))
    answered = boundary.answering_deployment(response)
    assert answered in (a, b), f"_hidden_params['model_id'] is {answered!r}, not a model_info id"
    assert int(sim.stats(answered)["requests"]) == 1
    assert boundary.answering_deployment(object()) is None


def test_attempt_logger_sees_each_attempt_and_each_failure_with_the_deployment_id(sim):
    bad, good = unique("contract-bad"), unique("contract-good")
    sim.set_scenario(bad, Scenario(faults=[Fault(kind="status", status=503)]))
    key = unique("call")
    seen: list[tuple[str, str | None, str | None]] = []

    def ids(kwargs: Any) -> tuple[str | None, str | None]:
        params = kwargs.get("litellm_params") or {}
        return ((params.get("metadata") or {}).get("contract_key"),
                (params.get("model_info") or {}).get("id"))

    class Logger(boundary.attempt_logger_base()):  # type: ignore[misc]
        def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
            mine, dep = ids(kwargs)
            if mine == key:
                seen.append(("pre", dep, None))

        async def async_log_failure_event(self, kwargs: Any, response_obj: Any,
                                          start_time: Any, end_time: Any) -> None:
            mine, dep = ids(kwargs)
            if mine == key:
                seen.append(("failure", dep, type(kwargs.get("exception")).__name__))

    logger = Logger()
    boundary.add_attempt_logger(logger)
    boundary.add_attempt_logger(logger)            # registered once, however often asked
    lt = boundary.litellm()
    assert lt.input_callback.count(logger) == 1 and lt._async_failure_callback.count(logger) == 1
    try:
        r = boundary.new_router(
            model_list=[{"model_name": "first", "litellm_params": {
                "model": "openai/gpt-4o", "api_base": sim.base(bad),
                "api_key": "sk-test-contract-0001"}, "model_info": {"id": bad}},
                {"model_name": "second", "litellm_params": {
                    "model": "openai/gpt-4o", "api_base": sim.base(good),
                    "api_key": "sk-test-contract-0001"}, "model_info": {"id": good}}],
            fallbacks=[{"first": ["second"]}], num_retries=0)

        async def call() -> Any:
            response = await r.acompletion(model="first", messages=MESSAGES,
                                           metadata={"contract_key": key})
            await await_until(lambda: any(s[0] == "failure" for s in seen), timeout=5,
                              what="the failure event (it runs after the call)", interval=0.01)
            return response

        response = run(call())
    finally:
        lt.input_callback.remove(logger)
        lt._async_failure_callback.remove(logger)
    assert boundary.answering_deployment(response) == good
    assert ("pre", bad, None) in seen and ("pre", good, None) in seen, seen
    failures = [s for s in seen if s[0] == "failure"]
    assert failures and failures[0][1] == bad, seen
    assert failures[0][2] == "ServiceUnavailableError", seen


def test_the_cooldown_store_records_a_failed_deployment_and_takes_our_own_records(sim):
    bad, good = unique("contract-cool"), unique("contract-warm")
    sim.set_scenario(bad, Scenario(faults=[Fault(kind="status", status=503)]))
    r = router(sim, bad, good, allowed_fails=0, cooldown_time=30)

    async def until_cooled() -> None:
        for _ in range(20):
            try:
                await r.acompletion(model="g", messages=MESSAGES)
            except Exception:
                pass
            if dict(boundary.cooldown_store(r).get_active_cooldowns([bad], None)):
                return

    run(until_cooled())
    store = boundary.cooldown_store(r)
    active = dict(store.get_active_cooldowns([bad, good], None))
    assert set(active) == {bad}, active
    record = active[bad]
    for field in ("timestamp", "cooldown_time", "status_code", "exception_received"):
        assert field in record, f"cooldown record lost {field!r}: {record}"
    assert int(record["status_code"]) == 503
    assert abs(float(record["timestamp"]) - time.time()) < 120
    # What the adapter writes itself (a slow or unreachable deployment) and how it lifts one.
    store.add_deployment_to_cooldown(model_id=good, original_exception=TimeoutError("too slow"),
                                     exception_status=599, cooldown_time=30)
    assert good in dict(store.get_active_cooldowns([good], None))
    store.cooldown_store.put(good, {**dict(store.get_active_cooldowns([good], None))[good],
                                    "cooldown_time": 0.0}, 1.0)
    lifted = dict(store.get_active_cooldowns([good], None)).get(good)
    assert lifted is None or float(lifted["cooldown_time"]) == 0.0


@pytest.mark.parametrize("fault,kind,status", [
    (Fault(kind="status", status=503), "unavailable", 503),
    (Fault(kind="status", status=500), "server_error", 500),
    (Fault(kind="status", status=429, retry_after=2), "rate_limit", 429),
    (Fault(kind="status", status=401), "authentication", 401),
    (Fault(kind="status", status=404), "not_found", 404),
    (Fault(kind="status", status=400), "bad_request", 400),
    (Fault(kind="reset"), "connection", None),
    (Fault(kind="malformed"), "malformed_response", None),
], ids=["503", "500", "429", "401", "404", "400", "reset", "malformed"])
def test_each_provider_failure_is_raised_as_a_class_or_text_the_classifier_knows(sim, fault,
                                                                                 kind, status):
    dep = unique(f"contract-{kind}")
    sim.set_scenario(dep, Scenario(faults=[fault]))

    async def call() -> BaseException:
        try:
            await boundary.acompletion(model="openai/gpt-4o", messages=MESSAGES,
                                       api_base=sim.base(dep), api_key="sk-test-contract-0001",
                                       num_retries=0)
        except Exception as exc:
            return exc
        raise AssertionError("the fault did not fail the call")

    failure = classify(run(call()))
    assert (failure.kind, failure.status) == (kind, status), failure
    if kind == "rate_limit":
        assert failure.retry_after == 2


def test_the_router_refusing_a_resting_group_is_recognised(sim):
    # litellm never rests a group's last deployment: two that fail rest together.
    bad, worse = unique("contract-rest"), unique("contract-rest")
    for dep in (bad, worse):
        sim.set_scenario(dep, Scenario(faults=[Fault(kind="status", status=503)]))
    r = router(sim, bad, worse, allowed_fails=0, cooldown_time=30)

    async def calls() -> list[BaseException]:
        out = []
        for _ in range(4):
            try:
                await r.acompletion(model="g", messages=MESSAGES)
            except Exception as exc:
                out.append(exc)
        return out

    failures = run(calls())
    assert any(boundary.is_router_cooldown(e) for e in failures), [type(e) for e in failures]
    assert classify(next(e for e in failures if boundary.is_router_cooldown(e))).kind == "cooldown"


def test_the_public_surface_the_adapter_uses(sim):
    dep = unique("contract-stream")
    prices = boundary.model_prices()
    assert prices["gpt-4o"]["input_cost_per_token"] > 0       # the offline price map is loaded
    assert boundary.count_tokens("openai/gpt-4o", MESSAGES) > 0
    assert "text" in boundary.user_part_types() and "image_url" in boundary.user_part_types()
    assert issubclass(boundary.exceptions().ContextWindowExceededError,
                      boundary.exceptions().BadRequestError)

    async def stream() -> Any:
        chunks = []
        response = await boundary.acompletion(
            model="openai/gpt-4o", messages=MESSAGES, api_base=sim.base(dep),
            api_key="sk-test-contract-0001", stream=True)
        async for chunk in response:
            chunks.append(chunk)
        return boundary.response_from_chunks(chunks)

    full = run(stream())
    assert "Hello" in full.choices[0].message.content
    assert full.usage.completion_tokens > 0
