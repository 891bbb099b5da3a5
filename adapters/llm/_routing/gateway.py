"""Routing: one litellm Router per config, walked group by group under one deadline.

litellm's Router does what it does well inside a model group: load balancing, retries,
cooldowns. The walk across groups (the fallback chain) happens here, because the adapter must
record every attempt, stop on a caller error (400) instead of falling back, send context-window
errors to their own chain, honour one deadline for the whole call, fail a stream over before its
first chunk (or when ``stream_ttft_timeout`` passes without one) and, optionally, race a slow
attempt against the next target (``hedging.py``).

Timeouts keep LiteLLM's meaning: a deployment's ``timeout`` (else ``router_settings.timeout``)
bounds each attempt and ``stream_timeout`` each read of a stream; litellm applies them. The
deadline (the caller's ``timeout=``, else ``router_settings.deadline``, else ``call_deadline``)
bounds the whole call. While a later group could still answer, a group's router call gets at
most half of what remains, so a stalled primary leaves its fallback a turn; the last way to an
answer gets all of it. Fallbacks are still given to the Router (and
disabled per call): litellm only cools down a lone deployment whose group has a fallback, and the
cooldown is what makes calls during an outage skip the dead provider in microseconds instead of
paying for it every time.

Routers are shared process-wide by config fingerprint (``RouterPool``): stateful routing
strategies register process-wide litellm callbacks, so two adapters with one config must share
one Router rather than double-count each other's traffic.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import cache
from typing import Any

from .. import errors
from .litellm import answering_deployment, model_prices, new_router
from .provider_errors import (CONTEXT_WINDOW, LOCAL, NEXT_GROUP, STOP, Failure, classify,
                              local_failure, raised_locally, to_error)
from .._observability.redact import config_secrets, redact
from .._config.loader import Config, Deployment
from .pricing import Pricing, pricing_for
from .attempts import CALL_KEY, Tries, attempt_log
from .bounds import Bound
from .cooldowns import Cooldowns
from .._process.fork import fork_error, fork_guard, refused_after_fork, reset_in_child
from .local_servers import is_local_server, not_running_hint
from .._observability.records import Attempt
from .streaming import close_stream, first_chunk
from .walk import CallSpec, GroupFailed, Outcome, Walk
from .hedging import Hedger

__all__ = ["CallSpec", "Gateway", "Outcome", "RouterPool", "call_deadline", "default_pool"]

SIMULATED_KEY = "simulated-key"
DEADLINE_HEADROOM_S = 10.0      # call_deadline's allowance for start-up and retry backoff


class Gateway:
    """A Router built from one config, and the fallback walk over it."""

    def __init__(self, config: Config, simulator_url: str | None = None) -> None:
        self.config = config
        self.simulator_url = simulator_url
        self.deployments: dict[str, Deployment] = {d.id: d for d in config.deployments}
        prices = model_prices()
        self.pricing: dict[str, Pricing | None] = {
            d.id: pricing_for(d.litellm_params, d.model_info, prices)
            for d in config.deployments}
        self.secrets = config_secrets(config)
        # A deployment whose key is missing cannot answer: it is left out of the Router and the
        # walk reports the variable to set instead of letting the provider SDK fail obscurely.
        usable = [d for d in config.deployments if d.key_present or simulator_url]
        self._usable = usable
        self._group_ids: dict[str, tuple[str, ...]] = {
            g: tuple(d.id for d in usable if d.model_name == g) for g in config.groups()}
        self._chains = {p: tuple(t) for p, t in config.fallbacks} \
            if config.profile.fallbacks_enabled else {}
        self._window_chains = {p: tuple(t) for p, t in config.context_window_fallbacks}
        self._policy_chains = {p: tuple(t) for p, t in config.content_policy_fallbacks}
        # litellm_settings that shape a call, passed per call: never set on the litellm module.
        drop = config.settings.litellm.drop_params
        self._call_defaults: dict[str, Any] = {} if drop is None else {"drop_params": drop}
        self._attempt_limits = {g: attempt_limit(config, g) for g in config.groups()}
        self._read_limits = {g: _read_limit(config, g) for g in config.groups()}
        # Groups served on this machine (Ollama): one attempt a call, see _local_servers.
        self._local_groups = frozenset() if simulator_url else frozenset(
            g for g, ids in self._group_ids.items()
            if ids and all(is_local_server(self.deployments[i]) for i in ids))
        self._ttft: float | None = config.router_settings.extra.get("stream_ttft_timeout")
        self.hedger: Hedger | None = Hedger.from_config(config)
        self._fork = fork_guard()
        self.router = new_router(**self._router_kwargs())
        self.cooldowns = Cooldowns(self.router, self.deployments, self._group_ids, self._chains,
                                   config.router_settings.cooldown_time)

    # -- construction -------------------------------------------------------------------------
    def _router_kwargs(self) -> dict[str, Any]:
        rs = self.config.router_settings
        kwargs: dict[str, Any] = {
            "model_list": [self._model_entry(d) for d in self._usable],
            "routing_strategy": rs.routing_strategy,
            "num_retries": rs.num_retries,
            "timeout": rs.timeout,
            "cooldown_time": rs.cooldown_time,
            "allowed_fails": rs.allowed_fails,
            "retry_after": rs.retry_after,
            "max_fallbacks": rs.max_fallbacks,
            "enable_pre_call_checks": rs.enable_pre_call_checks,
        }
        if rs.stream_timeout is not None:
            kwargs["stream_timeout"] = rs.stream_timeout
        redis_url = rs.redis_url or os.environ.get("REDIS_URL")
        if redis_url:
            # Cooldowns shared by every process: one that saw the primary fail spares the rest.
            kwargs["redis_url"] = redis_url
        fallbacks = self._routable(self._chains)
        if fallbacks:
            kwargs["fallbacks"] = fallbacks
        window = self._routable(self._window_chains)
        if window:
            kwargs["context_window_fallbacks"] = window
        policy = self._routable(self._policy_chains)
        if policy:
            kwargs["content_policy_fallbacks"] = policy
        passthrough = {k: v for k, v in rs.extra.items() if k in _ROUTER_PASSTHROUGH}
        return {**kwargs, **passthrough}

    def _routable(self, chains: Mapping[str, tuple[str, ...]]) -> list[dict[str, list[str]]]:
        """Chains in litellm's form, limited to groups the Router has deployments for."""
        out = []
        for primary, targets in chains.items():
            kept = [t for t in targets if self._group_ids.get(t)]
            if self._group_ids.get(primary) and kept:
                out.append({primary: kept})
        return out

    def _model_entry(self, d: Deployment) -> dict[str, Any]:
        params = {k: v for k, v in d.litellm_params.items() if v is not None}
        if self.simulator_url:
            params["api_base"] = f"{self.simulator_url}/s/{d.id}"
            params["api_key"] = SIMULATED_KEY
        return {"model_name": d.model_name, "litellm_params": params,
                "model_info": dict(d.model_info)}

    # -- the walk -----------------------------------------------------------------------------
    def chain(self, group: str) -> tuple[str, ...]:
        return (group, *self._chains.get(group, ()))

    async def complete(self, spec: CallSpec) -> Outcome:
        """Walk the fallback chain of ``spec.group`` until a deployment answers."""
        refused = self._fork.refusal()
        if refused is not None:
            raise refused
        walk = Walk()
        chain = self.chain(spec.group)
        for skipped in chain[:spec.start_at]:
            for d in self.config.group(skipped):
                walk.attempts.append(Attempt(d.id, skipped, d.provider, "skipped",
                                             error_kind="rate_limited", latency_ms=0.0,
                                             message="at its rate limit"))
        outcome = await self._walk(spec, chain[spec.start_at:], walk)
        if outcome is None and walk.waits:
            # Everything failed but something said when it will be back: wait for it if the
            # deadline allows, then walk once more. Never waited while another group could answer.
            pause = min(walk.waits)
            if time.monotonic() + pause < spec.deadline:
                await asyncio.sleep(pause)
                walk.waits.clear()
                outcome = await self._walk(spec, self.chain(spec.group), walk)
        if outcome is None:
            raise self._all_failed(spec, walk)
        return outcome

    async def _walk(self, spec: CallSpec, chain: Sequence[str], walk: Walk) -> Outcome | None:
        index = 0
        switched: set[str] = set()      # groups whose content-policy chain was taken
        while index < len(chain):
            group = chain[index]
            index += 1
            if self._skip_keyless(group, walk) or \
                    self.cooldowns.skip(group, walk.attempts, walk.failures, walk.waits):
                continue
            try:
                if self.hedger is not None and self.hedger.applies(spec):
                    return await self.hedger.race(self, spec, group, chain[index:], walk)
                return await self.try_group(spec, group, walk, rest=chain[index:])
            except GroupFailed as failed:
                if failed.failure.action == STOP:
                    raise errors.UsageError(
                        f"{failed.group}: the provider rejected the request "
                        f"({failed.failure.status or 400}): {failed.error}") from None
                if failed.failure.action == LOCAL:      # nothing was sent: no provider failed
                    raise errors.UsageError(str(failed.error)) from None
                policy_chain = self._policy_chains.get(failed.group)
                if failed.failure.kind == "content_policy" and policy_chain and \
                        failed.group not in switched:
                    # As LiteLLM's content_policy_fallbacks: that chain instead of the usual one.
                    switched.add(failed.group)
                    chain, index = policy_chain, 0
                elif failed.failure.action == CONTEXT_WINDOW:
                    window_chain = self._window_chains.get(failed.group)
                    if not window_chain:
                        raise failed.error from None
                    chain, index = window_chain, 0
                elif failed.tried:          # groups a race's hedges have tried already
                    chain = [*chain[:index], *(g for g in chain[index:] if g not in failed.tried)]
        return None

    def _skip_keyless(self, group: str, walk: Walk) -> bool:
        if self._group_ids.get(group):
            return False
        for d in self.config.group(group):
            message = f"{d.key_env} is not set" if d.key_env else "no API key configured"
            walk.attempts.append(Attempt(
                deployment=d.id, model_group=group, provider=d.provider, outcome="skipped",
                error_kind="authentication", latency_ms=0.0, message=message))
            walk.failures.append(errors.AuthenticationError(
                f"{d.id}: {message}", env_var=d.key_env, deployment=d.id, model_group=group,
                kind="authentication", latency_ms=0.0))
        return True

    async def try_group(self, spec: CallSpec, group: str, walk: Walk,
                        only: str | None = None, rest: Sequence[str] = ()) -> Outcome:
        """One router call to ``group`` (litellm retries inside it), recorded in ``walk``; to
        its deployment ``only`` when that is given (a hedge sent to a sibling). ``rest``: the
        groups the walk may try after it."""
        remaining = spec.deadline - time.monotonic()
        if remaining <= 0:
            raise self.deadline_error(spec, walk)
        later = next((g for g in rest if self.cooldowns.healthy(g)), None)
        budget = remaining / 2 if later is not None else remaining
        log = attempt_log()
        key, collector = log.track()
        walk.live = collector
        kwargs: dict[str, Any] = {**self._call_defaults, **spec.params, "disable_fallbacks": True,
                                  "metadata": {CALL_KEY: key}}
        # litellm sends each attempt its deployment's timeout (else the router's); only a budget
        # shorter than that is passed, so it bounds every attempt of this router call.
        if budget < self._attempt_limits[group]:
            kwargs["timeout"] = _whole_seconds(budget)
        if group in self._local_groups:
            kwargs["num_retries"] = 0
        if spec.stream:
            kwargs["stream"] = True
            kwargs.setdefault("stream_options", {"include_usage": True})
            if budget < self._read_limits[group]:
                kwargs["stream_timeout"] = _whole_seconds(budget)
        # The TTFT cut-off fails this group over when no first chunk came in time; litellm's
        # stream_timeout only bounds each read.
        ttft = (spec.stream_ttft_timeout or self._ttft) if spec.stream else None
        cut = Bound(ttft if ttft is not None and ttft < budget else None)
        bound = Bound(budget)
        started, since = time.monotonic(), time.time()
        response = None
        answered = False
        try:
            with bound, cut:
                response = await self.router.acompletion(model=only or group,
                                                         messages=spec.messages, **kwargs)
                first = await first_chunk(response) if spec.stream else None
            answered = True
        except TimeoutError:
            await close_stream(response)
            if later is not None and bound.expired():   # its share is over: the next group's turn
                why = (f"no answer within {budget:.1f} s, its share of the call's deadline "
                       f"(the rest is kept for {later})")
                raise self._failed(Failure("timeout", None, None, NEXT_GROUP, why),
                                   collector, group, started, walk) from None
            if cut.expired():     # a timeout litellm never saw: it counts toward a cooldown
                why = f"no first chunk within {ttft:g} s"
                failed = self._failed(Failure("ttft_timeout", None, None, NEXT_GROUP, why),
                                      collector, group, started, walk)
                self.cooldowns.strike(failed.error.deployment,
                                      self.config.router_settings.allowed_fails + 1, why)
                raise failed from None
            deadline = Failure("deadline", None, None, NEXT_GROUP, "cut off by the call's deadline")
            walk.attempts.extend(self._attempts(collector, group, started, deadline))
            raise self.deadline_error(spec, walk) from None
        except asyncio.CancelledError:  # a lost hedge race (or the caller gave up): recorded
            walk.attempts.extend(self._attempts(collector, group, started, _CANCELLED))
            raise
        except Exception as exc:  # every provider failure is recorded and decides the next hop
            if refused_after_fork(exc):
                raise fork_error() from None
            if raised_locally(exc, responded=collector.responded):
                # litellm may have cooled the deployment as if it had failed: it did not.
                self.cooldowns.lift((only,) if only else self._group_ids.get(group, ()), since)
                raise self._failed(local_failure(exc, self.secrets), collector, group, started,
                                   walk) from None
            raise self._failed(classify(exc, self.secrets), collector, group, started,
                               walk) from None
        finally:
            log.release(key)
            if not answered or len(collector.tries) > 1:
                self.cooldowns.changed()    # litellm may have cooled a deployment down
        attempts = self._attempts(collector, group, started, None)
        deployment = self._answering(response, attempts, group)
        self.cooldowns.clear(deployment.id)
        walk.attempts.extend(attempts)
        return Outcome(response=response, deployment=deployment, group=group,
                       attempts=walk.attempts, first_chunk=first,
                       started=collector.last_start or started,
                       first_chunk_at=time.monotonic() if spec.stream else None)

    def _failed(self, failure: Failure, collector: Tries, group: str, started: float,
                walk: Walk) -> GroupFailed:
        """Record a failed router call in ``walk``; the failure decides the walk's next hop."""
        attempts = self._attempts(collector, group, started, failure)
        last = attempts[-1] if attempts else None
        dep = self.deployments.get(last.deployment or "") if last else None
        message = failure.message
        if failure.kind == "connection" and dep is not None and self._local_server(dep.id):
            # A local server that is not running: say so, and rest it like any failure.
            message = f"{not_running_hint(dep)} ({message})"
            attempts[-1] = replace(attempts[-1], message=redact(message, self.secrets))
            self.cooldowns.rest(dep.id, "connection refused")
        walk.attempts.extend(attempts)
        error = to_error(failure, message=redact(f"{group}: {message}", self.secrets),
                         deployment=last.deployment if last else None, group=group,
                         latency_ms=last.latency_ms if last else None,
                         env_var=dep.key_env if dep else None)
        walk.failures.append(error)
        if failure.kind in ("rate_limit", "cooldown") and failure.retry_after:
            walk.waits.append(failure.retry_after)
        return GroupFailed(failure, error, group)

    def _local_server(self, dep_id: str) -> bool:
        """Whether ``dep_id`` is served on this machine (not by the simulator)."""
        dep = self.deployments.get(dep_id)
        return dep is not None and not self.simulator_url and is_local_server(dep)

    def _answering(self, response: Any, attempts: list[Attempt], group: str) -> Deployment:
        dep_id = answering_deployment(response) or (attempts[-1].deployment if attempts else None)
        if dep_id in self.deployments:
            return self.deployments[dep_id]
        return self.config.group(group)[0]

    def _attempts(self, collector: Tries, group: str, started: float,
                  final: Failure | None) -> list[Attempt]:
        """Attempts of one router call: each deployment litellm tried, the last one ``final``."""
        out: list[Attempt] = []
        tries = list(collector.tries)
        now = time.monotonic()
        if not tries and final is not None:
            tries = [(None, started, None)]
        for i, (dep_id, t0, failed) in enumerate(tries):
            last = i == len(tries) - 1
            dep = self.deployments.get(dep_id or "")
            provider = dep.provider if dep else None
            if last and final is None:
                out.append(Attempt(dep_id, group, provider, "ok",
                                   latency_ms=(now - t0) * 1000))
                continue
            failure = classify(failed[0], self.secrets) if failed else final
            end = failed[1] if failed else now
            kind = failure.kind if failure else None
            out.append(Attempt(
                dep_id, group, provider, _OUTCOMES.get(kind or "", "error"),
                error_kind=failure.kind if failure else "error",
                status=failure.status if failure else None,
                latency_ms=(end - t0) * 1000,
                message=redact(failure.message, self.secrets) if failure else None))
        return out

    def deadline_error(self, spec: CallSpec, walk: Walk) -> errors.DeadlineExceeded:
        return errors.DeadlineExceeded(
            f"{spec.group}: no answer within the call's deadline "
            f"({len(walk.attempts)} attempt(s) made); raise timeout= or check the providers",
            model_group=spec.group, kind="deadline", attempts=walk.attempts)

    def _all_failed(self, spec: CallSpec, walk: Walk) -> errors.ProviderError:
        tried = ", ".join(f"{a.deployment or a.model_group} ({a.error_kind}"
                          f"{' ' + str(a.status) if a.status else ''})"
                          for a in walk.attempts) or "none"
        auth = [f for f in walk.failures if isinstance(f, errors.AuthenticationError)]
        hint = ""
        if auth:
            names = sorted({f.env_var for f in auth if f.env_var})
            hint = f"; set {', '.join(names)} (see `llm-adapter models`)" if names else ""
        local = [self.deployments[a.deployment] for a in walk.attempts if a.deployment and
                 a.error_kind in ("connection", "cooldown") and self._local_server(a.deployment)]
        if local:
            hint += f"; {not_running_hint(local[0])}"
        return errors.AllProvidersFailed(
            f"{spec.group}: every deployment failed: {tried}{hint}", walk.failures,
            model_group=spec.group, kind="all_failed", attempts=walk.attempts)


_CANCELLED = Failure("cancelled", None, None, NEXT_GROUP, "cancelled before it answered")
_OUTCOMES = {"cooldown": "skipped", "cancelled": "cancelled"}


def attempt_limit(config: Config, group: str) -> float:
    """Seconds one attempt to ``group`` may take: the longest of its deployments' own
    ``timeout``, where a deployment without one has the router's (LiteLLM's precedence)."""
    default = config.router_settings.timeout
    return max(_seconds(d.litellm_params.get("timeout"), default) for d in config.group(group))


def _read_limit(config: Config, group: str) -> float:
    """Seconds one read of a stream from ``group`` may wait, as litellm resolves it: the
    deployment's ``stream_timeout``, else the router's, else the attempt's ``timeout``."""
    rs = config.router_settings
    return max(_seconds(d.litellm_params.get("stream_timeout"),
                        rs.stream_timeout if rs.stream_timeout is not None else
                        _seconds(d.litellm_params.get("timeout"), rs.timeout))
               for d in config.group(group))


def call_deadline(config: Config, group: str) -> float:
    """Seconds a call to ``group`` may take when the caller does not say: ``router_settings.
    deadline``, else one full attempt for each group of its fallback chain plus
    ``DEADLINE_HEADROOM_S`` (a first call's start-up, litellm's retry backoff), so by default
    no attempt is cut short of its own ``timeout``."""
    if config.router_settings.deadline is not None:
        return config.router_settings.deadline
    chains = dict(config.fallbacks) if config.profile.fallbacks_enabled else {}
    chain = (group, *chains.get(group, ()))
    return sum(attempt_limit(config, g) for g in chain) + DEADLINE_HEADROOM_S


def _seconds(value: Any, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else default


def _whole_seconds(seconds: float) -> float:
    """A per-call timeout for litellm, rounded up to whole seconds: litellm keeps one HTTP
    client per distinct timeout value, so an exact float per call would open a new connection
    every call. The exact bound is enforced around the router call."""
    return float(max(math.ceil(seconds), 1))


# Router kwargs a config may pass straight through (router_settings keys LiteLLM knows).
_ROUTER_PASSTHROUGH = frozenset({
    "retry_policy", "allowed_fails_policy", "model_group_alias", "default_litellm_params",
    "enable_weighted_failover", "routing_strategy_args", "default_max_parallel_requests",
    "disable_cooldowns", "set_verbose", "debug_level",
})


class RouterPool:
    """Gateways shared by every adapter of the process, one per config and simulator."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gateways: dict[tuple[str, str | None], Gateway] = {}
        reset_in_child(self, RouterPool._forget_lock)

    def _forget_lock(self) -> None:
        """In a forked child the lock may be held by a thread that is gone. The gateways stay:
        a Router that never routed works in the child, one that did refuses (``_fork``)."""
        self._lock = threading.Lock()

    def get(self, config: Config, simulator_url: str | None = None) -> Gateway:
        key = (config.fingerprint(), simulator_url)
        with self._lock:
            gateway = self._gateways.get(key)
            if gateway is None:
                gateway = self._gateways[key] = Gateway(config, simulator_url)
            return gateway

    def clear(self) -> None:
        with self._lock:
            self._gateways.clear()


@cache
def default_pool() -> RouterPool:
    """The process's pool: litellm's routing callbacks are process-wide, so this is too."""
    return RouterPool()
