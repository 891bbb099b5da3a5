"""Hedged requests: a slow first attempt is raced against one more, and the first answer wins.

LLM providers have heavy tails: a call that normally answers in 800 ms now and then stalls for
30 s, and a timeout-then-fallback pays the whole timeout first. A hedge pays a little instead:
when the first attempt has not answered after ``after_ms`` (or the group's observed percentile),
one more attempt goes to another healthy deployment of the same group (same model, same price),
else to the next healthy group of the fallback chain, else to the same group again. The first
answer wins and the loser's task is cancelled, which closes its HTTP connection. The loser is
billed its input tokens once the provider started on it, so that estimate is recorded on its
attempt and added to the call's cost. A deployment outrun by its hedge ``cooldown_after`` times
in a row is persistently slow, not unlucky: it is cooled down like a failed one
(``_cooldowns.py``), so calls stop paying the wait before the hedge.

The routing walk stays free of policies: a hedge is sent only when ``CallSpec.admit_hedge``
(supplied by the pipeline) took rate-limit capacity and budget for it without waiting. Streams
are not hedged (the TTFT cut-off covers them); the call keeps its one deadline, and each leg
gets the share of it that ``Gateway.try_group`` gives a group a later one could follow.

    router_settings:
      hedging: {after_ms: 500}                  # or after_percentile: 95, min_samples: 20,
                                                #    default_after_ms: 2000; max_extra: 1,
                                                #    cooldown_after: 5
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .._percentiles import percentile
from .provider_errors import NEXT_GROUP
from .responses import usage_of
from .tokens import prompt_tokens as count_prompt
from .pricing import cost_breakdown
from .._observability.records import Attempt
from .walk import CallSpec, GroupFailed, Outcome, Walk

if TYPE_CHECKING:
    from .._config.loader import Config, Deployment
    from .cooldowns import Cooldowns
    from .pricing import Pricing

__all__ = ["HedgePolicy", "Hedger"]

log = logging.getLogger(__name__)


class Gateway(Protocol):
    """What a race needs of the gateway that runs it (the gateway builds its hedger)."""

    cooldowns: Cooldowns
    deployments: dict[str, Deployment]
    pricing: dict[str, Pricing | None]

    async def try_group(self, spec: CallSpec, group: str, walk: Walk,
                        only: str | None = None, rest: Sequence[str] = ()) -> Outcome: ...

    def deadline_error(self, spec: CallSpec, walk: Walk) -> Exception: ...

WINDOW = 200                        # recent successful latencies kept per group


@dataclass(frozen=True, slots=True)
class HedgePolicy:
    """When a hedge is sent: after a fixed delay, or a percentile of the group's latencies."""

    after_ms: float | None = None
    after_percentile: float | None = None
    min_samples: int = 20           # percentile mode: samples needed before it is trusted
    default_after_ms: float = 2000.0    # ... and the delay used until then
    max_extra: int = 1              # hedges per call at most
    cooldown_after: int = 5         # races lost in a row that cool a deployment down; 0: never

    @classmethod
    def from_config(cls, config: Config) -> HedgePolicy | None:
        """``router_settings.hedging``; None when absent, empty (``hedging: null`` in a profile
        turns it off) or ``max_extra: 0``."""
        s = config.settings.hedging             # checked when the config was loaded
        if s is None:
            return None
        return cls(after_ms=s.after_ms, after_percentile=s.after_percentile,
                   min_samples=s.min_samples, default_after_ms=s.default_after_ms,
                   max_extra=s.max_extra, cooldown_after=s.cooldown_after)


@dataclass(slots=True)
class _Leg:
    group: str
    walk: Walk
    task: asyncio.Task[Outcome]
    started: float                  # loop time the leg was sent
    deployment: str | None = None   # a sibling deployment it was sent to; None: litellm picks


class Hedger:
    """The hedging of one Gateway: its policy and each group's recent successful latencies."""

    def __init__(self, policy: HedgePolicy) -> None:
        self.policy = policy
        self._lock = threading.Lock()   # a Gateway may serve several event loops' threads
        self._latencies: dict[str, deque[float]] = {}

    @classmethod
    def from_config(cls, config: Config) -> Hedger | None:
        policy = HedgePolicy.from_config(config)
        if policy is None:
            return None
        # A loser's cost needs a token count; the first count loads a tokenizer (~0.4 s),
        # which belongs here (the router is being built) rather than on a hedged call.
        for model in {str(d.litellm_params.get("model", "")) for d in config.deployments}:
            count_prompt(model, [{"role": "user", "content": "warm-up"}])
        return cls(policy)

    def applies(self, spec: CallSpec) -> bool:
        return not spec.stream

    def observe(self, group: str, latency_ms: float) -> None:
        """One answer's latency, from its leg's start: the clock the hedge timer runs on (the
        attempt's own latency leaves out litellm's pre-processing and the loop's queue).

        A first leg outrun by its hedge is observed at the threshold it passed (its latency is
        unknown, but no less). Leaving it out would keep only the fast answers, and the
        percentile would drift down, hedging ever more calls; counting its full wait (a stall)
        would push the percentile up until nothing is hedged."""
        with self._lock:
            window = self._latencies.setdefault(group, deque(maxlen=WINDOW))
            window.append(latency_ms)

    def after_s(self, group: str) -> float:
        """Seconds without an answer from ``group`` before a hedge is sent."""
        p = self.policy
        if p.after_ms is not None:
            return p.after_ms / 1000
        with self._lock:
            recent = sorted(self._latencies.get(group, ()))
        observed = percentile(recent, p.after_percentile) \
            if len(recent) >= p.min_samples and p.after_percentile is not None else None
        return (p.default_after_ms if observed is None else observed) / 1000

    async def race(self, gateway: Gateway, spec: CallSpec, group: str, rest: Sequence[str],
                   walk: Walk) -> Outcome:
        """``gateway.try_group(group)``, joined by a hedge each ``after_s`` it stays silent (up
        to ``max_extra``); every leg's attempts end up in ``walk``, in the order sent.

        A failed leg leaves the others running; the race fails when all legs have, with the
        failure of the last group tried (where a sequential walk would have ended).
        """
        loop = asyncio.get_running_loop()
        after = self.after_s(group)
        legs = [_start(gateway, spec, group, rest=rest)]
        may_hedge = True
        try:
            while True:
                running = {leg.task for leg in legs if not leg.task.done()}
                if not running:
                    last = legs[-1].task.exception()
                    assert last is not None
                    raise await _ended(gateway, spec, last, legs, walk)
                wait = None
                if may_hedge and len(legs) <= self.policy.max_extra:
                    wait = max(legs[0].started + after * len(legs) - loop.time(), 0.0)
                done, _ = await asyncio.wait(running, timeout=wait,
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    target, sibling = _next_target(gateway, legs, rest)
                    if spec.admit_hedge is None or await spec.admit_hedge(target, sibling):
                        legs.append(_start(gateway, spec, target, sibling,
                                           rest[rest.index(target) + 1:] if target in rest
                                           else rest))
                    else:
                        may_hedge = False           # no capacity or budget: no hedge now
                    continue
                for leg in legs:
                    if leg.task not in done:
                        continue
                    error = leg.task.exception()
                    if error is None:
                        return await self._won(gateway, spec, leg, legs, walk, after)
                    if not isinstance(error, GroupFailed) or \
                            (leg is legs[0] and error.failure.action != NEXT_GROUP):
                        raise await _ended(gateway, spec, error, legs, walk)  # deadline, 400
        finally:
            await _cancel(legs)

    async def _won(self, gateway: Gateway, spec: CallSpec, winner: _Leg, legs: list[_Leg],
                   walk: Walk, after: float) -> Outcome:
        self.observe(winner.group, (asyncio.get_running_loop().time() - winner.started) * 1000)
        if winner is not legs[0]:
            self.observe(legs[0].group, after * 1000)
        await _cancel(legs)
        outcome = winner.task.result()
        prompt_tokens: list[int] = []               # counted once, for the first loser
        for leg in legs:
            if leg is not winner:
                leg.walk.attempts[:] = [_lost(gateway, spec, leg, a, prompt_tokens)
                                        for a in leg.walk.attempts]
            if leg.started < winner.started:        # outrun by a request sent after it
                for a in leg.walk.attempts:
                    if a.error_kind == "hedge_lost" and gateway.cooldowns.strike(
                            a.deployment, self.policy.cooldown_after,
                            f"{self.policy.cooldown_after} hedge races lost in a row"):
                        log.info("llm-adapter: %s cooled down: it lost %d hedge races in a row",
                                 a.deployment, self.policy.cooldown_after)
        # From the first leg's start to the answer, some provider exchange was in flight.
        outcome.exchange_ms = (winner.started - legs[0].started) * 1000 + sum(
            a.latency_ms or 0.0 for a in winner.walk.attempts if a.outcome != "skipped")
        _merge(legs, walk)
        outcome.attempts, outcome.hedged = walk.attempts, len(legs) > 1
        return outcome



async def _ended(gateway: Gateway, spec: CallSpec, error: BaseException, legs: list[_Leg],
                 walk: Walk) -> BaseException:
    """The error a race ends with when nothing answered, every leg's attempts in ``walk``."""
    await _cancel(legs)
    _merge(legs, walk)
    if isinstance(error, GroupFailed):
        error.tried = tuple(leg.group for leg in legs[1:])   # the walk goes on after them
    elif isinstance(error, TimeoutError):       # DeadlineExceeded: rebuilt with every attempt
        return gateway.deadline_error(spec, walk)
    return error


def _start(gateway: Gateway, spec: CallSpec, group: str, deployment: str | None = None,
           rest: Sequence[str] = ()) -> _Leg:
    walk = Walk()
    task = asyncio.ensure_future(gateway.try_group(spec, group, walk, deployment, rest))
    return _Leg(group, walk, task, asyncio.get_running_loop().time(), deployment)


def _next_target(gateway: Gateway, legs: list[_Leg], rest: Sequence[str]
                 ) -> tuple[str, str | None]:
    """Where the next hedge goes: another healthy deployment of the last leg's group (the same
    model, the same price) that no leg is on; else the first group after it in the chain that
    can answer now; else that group again, for litellm to pick from (a stall is often one
    request's bad luck)."""
    last = legs[-1].group
    busy = {d for leg in legs for d in (leg.deployment, leg.walk.in_flight()) if d}
    sibling = gateway.cooldowns.spare(last, busy)
    if sibling is not None:
        return last, sibling
    after = rest[rest.index(last) + 1:] if last in rest else rest
    return next((g for g in after if gateway.cooldowns.healthy(g)), last), None


async def _cancel(legs: list[_Leg]) -> None:
    """Cancel the legs still running and wait until each has recorded its attempts."""
    tasks = [leg.task for leg in legs if not leg.task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


def _merge(legs: list[_Leg], walk: Walk) -> None:
    for leg in legs:
        walk.attempts.extend(leg.walk.attempts)
        walk.failures.extend(leg.walk.failures)
        walk.waits.extend(leg.walk.waits)
        leg.walk = Walk()                          # merged once, even if called again


def _lost(gateway: Gateway, spec: CallSpec, leg: _Leg, attempt: Attempt,
          prompt_tokens: list[int]) -> Attempt:
    """A losing leg's in-flight attempt as ``hedge_lost``, with what the provider bills for it."""
    if attempt.outcome not in ("cancelled", "ok"):
        return attempt
    cost = None
    pricing = gateway.pricing.get(attempt.deployment or "")
    if attempt.outcome == "ok" and not leg.task.cancelled() and pricing is not None:
        # It answered in the same instant as the winner: billed in full.
        breakdown = cost_breakdown(pricing, usage_of(getattr(leg.task.result().response,
                                                             "usage", None)))
        cost = breakdown["total"] if breakdown else None
    elif pricing is not None:                       # sent (the pre-call hook saw it) and cut
        if not prompt_tokens:
            dep = gateway.deployments[attempt.deployment or ""]
            prompt_tokens.append(count_prompt(str(dep.litellm_params.get("model", "")),
                                            spec.messages))
        cost = prompt_tokens[0] * pricing.input
    return dataclasses.replace(attempt, outcome="cancelled", error_kind="hedge_lost", cost=cost,
                               message="cancelled: another attempt answered first")
