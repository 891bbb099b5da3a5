"""One call through the policies, in order: budget check → cache lookup → rate limit → routing.

Each step can end the call early (over budget, cache hit, no capacity) and every ending is
recorded once. What a step took (a budget reservation, rate-limit capacity) is settled with the
real figures when the call ends, or given back when it fails. A hedge (``hedging.py``) takes its
own capacity and budget through ``CallSpec.admit_hedge``, without waiting, and is settled alike:
a lost hedge counts its input tokens and cost, one never sent counts nothing.

A call that has its outcome is recorded first and settled after: settling never raises into it
(what the counters do not take is added later, ``budgets.py``), and a provider's error is never
replaced by a settlement failure. Every step that reaches Redis is async.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .. import errors
from .._routing.responses import build_response
from .._routing.tokens import answer_tokens, prompt_tokens
from .cache import CacheControl, CachedAnswer
from .._routing.pricing import estimate_cost
from .policies import Policies
from .._prompts.registry import Prompt
from .._observability.records import LLMResponse, ToolCall
from .._observability.recording import build_record
from .._routing.gateway import CallSpec, Gateway
from .._routing.streaming import ReplayStream, ResponseStream
from .._observability.telemetry import Telemetry

__all__ = ["Call", "run"]

log = logging.getLogger(__name__)


@dataclass
class Call:
    """Everything one ``generate`` call needs on its way through."""

    spec: CallSpec
    call_id: str
    environment: str
    metadata: Mapping[str, Any] | None
    scope: Any
    parent: tuple[str, str | None]
    prompt: Prompt | None
    control: CacheControl
    started: float                                  # monotonic
    started_at: float = field(default_factory=time.time)

    @property
    def meta(self) -> Mapping[str, Any]:
        return self.metadata or {}

    def who(self, key: str) -> str | None:
        value = self.meta.get(key) or getattr(self.scope, key, None)
        return str(value) if value else None


async def run(call: Call, gateway: Gateway, policies: Policies,
              telemetry: Telemetry) -> LLMResponse | ResponseStream:
    spec = call.spec = _call_options(call.spec)
    settle = _Settlement(call, policies, telemetry)
    # A policy that is off costs nothing here: not even the coroutine of a step with no work.
    if policies.budgets is not None:
        await settle.reserve_budget(gateway)        # raises BudgetExceeded, recorded

    cache, key = policies.cache, None
    if cache is not None:
        key = cache.key(spec.group, spec.messages, spec.params)
        hit = None if call.control.no_cache else await cache.aget(key)
        if hit is not None:
            answer = _from_cache(hit, call)
            await settle.release()
            if spec.stream:
                return ReplayStream(answer, on_end=settle.record)
            settle.record(answer, None)
            return answer

    if policies.limiter is not None:
        spec = await settle.take_capacity(gateway)   # raises RateLimited, recorded
    if gateway.hedger is not None and (policies.limiter or policies.budgets) and not spec.stream:
        spec = replace(spec, admit_hedge=lambda group, deployment: settle.admit_hedge(
            gateway, group, deployment))

    def storing(response: LLMResponse | None) -> bool:
        return response is not None and cache is not None and key is not None \
            and not call.control.no_store

    async def store_and_settle(response: LLMResponse | None) -> None:
        if storing(response):
            assert cache is not None and key is not None and response is not None
            await cache.aset(key, _to_cache(response), call.control.ttl)
        await settle.done(response)

    async def finish(response: LLMResponse | None) -> None:
        """After recording, when there is something to store or settle: both, shielded, so a
        caller cancelling now gets no answer but the call's settlement still ends."""
        await asyncio.shield(_spawn(policies, store_and_settle(response)))

    def finish_stream(response: LLMResponse | None,
                      error: errors.LLMAdapterError | None) -> None:
        settle.record(response, error)
        if storing(response) or settle.holds:       # the reader has its outcome already
            _spawn(policies, store_and_settle(response))

    try:
        outcome = await gateway.complete(spec)
    except errors.LLMAdapterError as exc:
        settle.record(None, exc)
        if settle.holds:
            await finish(None)
        raise
    if spec.stream:
        return ResponseStream(outcome, started=call.started, call_id=call.call_id,
                              on_end=finish_stream, model=spec.group,
                              pricing=gateway.pricing.get(outcome.deployment.id),
                              secrets=gateway.secrets)
    dep = outcome.deployment
    latency_ms = (time.monotonic() - call.started) * 1000
    response = build_response(outcome.response, model=spec.group, group=outcome.group,
                              deployment_id=dep.id,
                              provider=dep.provider, pricing=gateway.pricing.get(dep.id),
                              attempts=outcome.attempts, call_id=call.call_id,
                              latency_ms=latency_ms)
    response.overhead_ms, response.hedged = outcome.overhead_ms(latency_ms), outcome.hedged
    _add_hedge_cost(response)
    settle.record(response, None)
    if storing(response) or settle.holds:
        await finish(response)
    return response


def _call_options(spec: CallSpec) -> CallSpec:
    """``stream_ttft_timeout=`` given to generate() is the adapter's own, not litellm's."""
    if "stream_ttft_timeout" not in spec.params:
        return spec
    params = dict(spec.params)
    value = params.pop("stream_ttft_timeout")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or value <= 0):
        raise errors.UsageError(f"stream_ttft_timeout must be a positive number of seconds, "
                                f"not {value!r}")
    return replace(spec, params=params, stream_ttft_timeout=value)


def _add_hedge_cost(response: LLMResponse) -> None:
    """What lost hedges were billed is part of the call's cost, shown as ``hedge`` apart."""
    extra = sum(a.cost for a in response.attempts if a.cost is not None)
    if not extra or response.cost is None:
        return
    response.cost += extra
    if response.cost_details is not None:
        details = response.cost_details
        response.cost_details = {**details, "hedge": extra, "total": details["total"] + extra}


@dataclass(frozen=True, slots=True)
class _Hold:
    """Capacity and budget a hedge took, and its input tokens (what a lost hedge is billed)."""

    permit: Any
    reservation: Any
    input_tokens: int


class _Settlement:
    """What the call holds (budget reservation, rate-limit permit) and how it is recorded."""

    def __init__(self, call: Call, policies: Policies, telemetry: Telemetry) -> None:
        self.call = call
        self.policies = policies
        self.telemetry = telemetry
        self.reservation: Any = None
        self.permit: Any = None
        self.hedges: list[_Hold] = []

    def record(self, response: LLMResponse | None, error: errors.LLMAdapterError | None) -> None:
        call = self.call
        if response is not None:
            response.trace_id = call.parent[0]
        recorder = self.telemetry.recorder
        if not recorder.sinks:          # nothing records (no store, no Langfuse): no record
            return
        recorder.record(build_record(
            call_id=call.call_id, group=call.spec.group, environment=call.environment,
            messages=call.spec.messages, params=call.spec.params, metadata=call.metadata,
            scope=call.scope, parent=call.parent, started_at=call.started_at,
            response=response, error=error, stream=call.spec.stream, prompt=call.prompt))

    async def reserve_budget(self, gateway: Gateway) -> None:
        if self.policies.budgets is None:
            return
        try:
            self.reservation = await self._reserve(gateway, self.call.spec.group)
        except errors.LLMAdapterError as exc:
            self.record(None, exc)
            raise

    async def _reserve(self, gateway: Gateway, group: str) -> Any:
        budgets, call = self.policies.budgets, self.call
        assert budgets is not None
        deployments = gateway.config.group(group)
        estimate = estimate_cost(str(deployments[0].litellm_params.get("model", "")),
                                 [gateway.pricing.get(d.id) for d in deployments],
                                 call.spec.messages, call.spec.params.get("max_tokens"))
        return await budgets.acheck_and_reserve(
            user=call.who("user_id"), session=call.who("session_id"), agent=call.who("agent"),
            tags=[*call.meta.get("tags", ()), *getattr(call.scope, "tags", ())],
            environment=call.environment, estimated_cost=estimate)

    async def admit_hedge(self, gateway: Gateway, group: str, deployment: str | None) -> bool:
        """Budget and rate-limit capacity for a hedge to ``group`` (only to ``deployment`` of it,
        when one was chosen), taken now or not at all."""
        limiter, budgets, spec = self.policies.limiter, self.policies.budgets, self.call.spec
        reservation = permit = None
        targets = [d for d in gateway.config.group(group) if deployment in (None, d.id)]
        model = str(targets[0].litellm_params.get("model", ""))
        tokens = prompt_tokens(model, spec.messages) if limiter else 0
        try:
            if budgets is not None:
                reservation = await self._reserve(gateway, group)
            if limiter is not None:
                permit = await limiter.acquire(
                    [d.id for d in targets],
                    tokens + answer_tokens(spec.params.get("max_tokens")),
                    deadline=time.monotonic())          # no waiting: a late hedge is no hedge
        except errors.LLMAdapterError:      # over budget, at a limit, counters unreachable
            if reservation is not None and budgets is not None:
                await budgets.arelease(reservation)
            return False
        self.hedges.append(_Hold(permit, reservation, tokens))
        return True

    async def take_capacity(self, gateway: Gateway) -> CallSpec:
        """Rate-limit capacity; the walk starts at the first group with room."""
        limiter = self.policies.limiter
        spec = self.call.spec
        if limiter is None:
            return spec
        chain = gateway.chain(spec.group)
        deployments = [d.id for g in chain for d in gateway.config.group(g)]
        first = gateway.config.group(spec.group)[0]
        tokens = limiter.estimate_tokens(str(first.litellm_params.get("model", "")),
                                         spec.messages, spec.params.get("max_tokens"))
        try:
            self.permit = await limiter.acquire(deployments, tokens, deadline=spec.deadline)
        except errors.LLMAdapterError as exc:
            self.record(None, exc)
            await self.release()
            raise
        chosen = self.permit.deployment
        if chosen is None or chosen not in gateway.deployments:
            return spec
        start = chain.index(gateway.deployments[chosen].model_name)
        return spec if start == 0 else replace(spec, start_at=start)

    @property
    def holds(self) -> bool:
        """Whether the call holds anything to settle (budget, capacity, hedges)."""
        return self.reservation is not None or self.permit is not None or bool(self.hedges)

    async def release(self) -> None:
        if self.reservation is not None and self.policies.budgets is not None:
            reservation, self.reservation = self.reservation, None
            await self.policies.budgets.arelease(reservation)

    async def done(self, response: LLMResponse | None) -> None:
        """Settle what the call held; it is recorded already, so nothing here may raise."""
        try:
            await self._settle(response)
        except Exception:   # a defect in settling must not turn an answered call into an error
            log.exception("settling call %s failed; its budgets and limits may be off",
                          self.call.call_id)

    async def _settle(self, response: LLMResponse | None) -> None:
        limiter, budgets = self.policies.limiter, self.policies.budgets
        if self.permit is not None and limiter is not None:
            used = response.usage.total_tokens if response is not None else 0
            _spawn(self.policies, limiter.settle(self.permit, used))
        crossings = []
        if self.reservation is not None and budgets is not None:
            if response is None:
                await budgets.arelease(self.reservation)
            else:       # response.cost includes what lost hedges cost, when it is known
                crossings += await budgets.asettle(self.reservation, response.cost)
        lost = sum(1 for a in response.attempts if a.error_kind == "hedge_lost" and a.deployment) \
            if response is not None else 0
        for i, hold in enumerate(self.hedges):
            billed = i < lost
            if hold.permit is not None and limiter is not None:
                _spawn(self.policies,
                       limiter.settle(hold.permit, hold.input_tokens if billed else 0))
            if hold.reservation is not None and budgets is not None:
                if billed and response is not None and response.cost is None:
                    crossings += await budgets.asettle(hold.reservation, None)  # estimate kept
                else:
                    await budgets.arelease(hold.reservation)
        for crossing in crossings:
            if self.telemetry.alerts is not None:
                self.telemetry.alerts.notify_budget(
                    crossing.rule.scope, crossing.id, crossing.spent, crossing.limit,
                    crossing.rule.period)


def _spawn(policies: Policies, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """Run ``coro`` in the background of the running loop (the call has its outcome already),
    held by ``policies`` until it ends so it is neither collected nor lost unseen."""
    task = asyncio.get_running_loop().create_task(coro)
    policies.tasks.add(task)
    task.add_done_callback(policies.finished)
    return task


def _to_cache(response: LLMResponse) -> CachedAnswer:
    u = response.usage
    return CachedAnswer(
        content=response.content, finish_reason=response.finish_reason,
        tool_calls=[{"id": t.id, "name": t.name, "arguments": t.arguments}
                    for t in response.tool_calls],
        usage={"input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
               "cached_tokens": u.cached_tokens, "cache_write_tokens": u.cache_write_tokens,
               "reasoning_tokens": u.reasoning_tokens},
        cost=response.cost, deployment=response.deployment, provider=response.provider,
        provider_model=response.provider_model, stored_at=time.time(),
        answered_group=response.answered_group)


def _from_cache(hit: CachedAnswer, call: Call) -> LLMResponse:
    latency_ms = (time.monotonic() - call.started) * 1000
    return LLMResponse(
        content=hit.content, model=call.spec.group, deployment=hit.deployment,
        provider=hit.provider, provider_model=hit.provider_model, usage=hit.usage_object(),
        cost=0.0, latency_ms=latency_ms, overhead_ms=latency_ms,
        finish_reason=hit.finish_reason, call_id=call.call_id,
        tool_calls=[ToolCall(t["id"], t["name"], t["arguments"]) for t in hit.tool_calls],
        cache_hit=True, cost_saved=hit.cost, answered_group=hit.answered_group,
        cost_details={"input": 0.0, "cached": 0.0, "cache_write": 0.0, "output": 0.0,
                      "total": 0.0})
