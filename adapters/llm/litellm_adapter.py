"""``LiteLLMAdapter``: the one object application code talks to.

It checks the call, builds the messages, hands them to the routing walk (litellm's Router
underneath) and returns an ``LLMResponse``; nothing else lives here. Construction only reads the
config and starts importing litellm in the background; the first call waits for that import and
builds the router within its own deadline, which counts from the moment the caller called.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, overload

from . import errors
from ._routing.call_checks import (check_encodable, check_message, check_request,
                           check_response_format, check_timeout, check_tools)
from ._process.fork import fork_guard, reset_in_child
from ._process.lifecycle import default_lifecycle
from ._routing.litellm import start_import
from ._process.loop import default_loop
from ._observability.redact import redact
from ._traffic.cache import CacheControl
from ._config.loader import Config, load_config
from .errors import ProxyKeyWarning
from ._traffic.pipeline import Call
from ._traffic.pipeline import run as run_call
from ._traffic.policies import Policies, PolicyPool, default_policies
from ._prompts.registry import Prompt, build_registry, prompt_link
from ._observability.records import LLMResponse
from ._routing.gateway import CallSpec, Gateway, RouterPool, call_deadline, default_pool
from ._routing.streaming import ResponseStream
from ._observability.telemetry import Telemetry, TelemetryPool, default_telemetry
from ._observability.tracing import TraceScope, current_parent, current_scope

__all__ = ["LiteLLMAdapter"]

log = logging.getLogger("adapters.llm")

# Arguments the adapter owns; passing them through **litellm_kwargs would bypass routing.
_RESERVED = frozenset({"model", "messages", "api_key", "api_base", "fallbacks", "num_retries",
                       "callbacks", "disable_fallbacks"})


class LiteLLMAdapter:
    """Reliable, observable LLM calls through litellm, configured by ``litellm_config.yaml``.

    ``model`` is a model group of the config (default: the environment's ``default_model``).
    """

    def __init__(self, model: str | None = None, enable_langfuse: bool | None = None,
                 config_path: str | os.PathLike[str] | None = None,
                 environment: str | None = None, *, config: Config | None = None,
                 simulator_url: str | None = None,
                 prompts_dir: str | os.PathLike[str] | None = None,
                 pool: RouterPool | None = None, telemetry: TelemetryPool | None = None,
                 policies: PolicyPool | None = None) -> None:
        self.config = config or load_config(config_path, environment=environment)
        self.model = model or self.config.default_model
        if self.config.settings.proxy_only:
            warnings.warn(
                f"{self.config.path}: {', '.join(self.config.settings.proxy_only)}: LiteLLM "
                "proxy key(s), read by the proxy server only; this library does not use them",
                ProxyKeyWarning, stacklevel=2)
        if self.model not in self.config.groups():
            self.config.group(self.model)        # raises ConfigError listing the defined groups
        profile = self.config.profile
        self.environment = self.config.environment
        self.enable_langfuse = profile.langfuse.enabled if enable_langfuse is None \
            else enable_langfuse
        self._simulator_url = simulator_url
        self._pool = pool or default_pool()
        self._gateway: Gateway | None = None
        self._telemetry_pool = telemetry or default_telemetry()
        self._telemetry: Telemetry | None = None
        self._policy_pool = policies or default_policies()
        self._policies: Policies | None = None
        self._last_trace = threading.local()          # for score() without a trace id
        self._deadlines: dict[str, float] = {}        # by model group (``_deadline_of``)
        self._prompts = build_registry(self.config, enable_langfuse=bool(self.enable_langfuse),
                                       local_dir=Path(prompts_dir) if prompts_dir else None)
        reset_in_child(self, LiteLLMAdapter._after_fork)
        self._closed = False
        default_lifecycle().install()     # the process's records are drained at its end
        start_import()      # litellm takes seconds to import: ready by the first call, if it can

    def _after_fork(self) -> None:
        """In a forked child the sinks and policies are the pools' new ones (see ``_fork``)."""
        self._telemetry = None
        self._policies = None

    # -- the adapter's own end ----------------------------------------------------------------
    def close(self, timeout: float = 10.0) -> bool:
        """Write down every call this adapter made: its records reach the local store and the
        other sinks (Langfuse: delivered, or kept in the store for later) within ``timeout``.
        Later calls raise ``UsageError``. Never raises; safe to call twice; True when all was
        delivered. The process's store writer, event loop and Langfuse exporter are shared by
        every adapter and stop at the end of the process, which drains them whether or not
        ``close`` was called."""
        self._closed = True
        return self.flush_langfuse(timeout)

    def __enter__(self) -> LiteLLMAdapter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> LiteLLMAdapter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.close)      # waits on threads: not on the event loop

    # -- calls --------------------------------------------------------------------------------
    @overload
    def generate(self, prompt: str | None = None, *,
                 system: str | Sequence[Mapping[str, Any]] | None = None,
                 messages: Sequence[Mapping[str, Any]] | None = None,
                 metadata: Mapping[str, Any] | None = None,
                 tools: Sequence[Mapping[str, Any]] | None = None, tool_choice: Any = None,
                 temperature: float | None = None, max_tokens: int | None = None,
                 response_format: Any = None, timeout: float | None = None,
                 stream: Literal[False] = False, model: str | None = None,
                 cache: Mapping[str, Any] | None = None, **litellm_kwargs: Any) -> LLMResponse: ...

    @overload
    def generate(self, prompt: str | None = None, *,
                 system: str | Sequence[Mapping[str, Any]] | None = None,
                 messages: Sequence[Mapping[str, Any]] | None = None,
                 metadata: Mapping[str, Any] | None = None,
                 tools: Sequence[Mapping[str, Any]] | None = None, tool_choice: Any = None,
                 temperature: float | None = None, max_tokens: int | None = None,
                 response_format: Any = None, timeout: float | None = None,
                 stream: Literal[True], model: str | None = None,
                 cache: Mapping[str, Any] | None = None,
                 **litellm_kwargs: Any) -> ResponseStream: ...

    @overload
    def generate(self, prompt: str | None = None, *,
                 system: str | Sequence[Mapping[str, Any]] | None = None,
                 messages: Sequence[Mapping[str, Any]] | None = None,
                 metadata: Mapping[str, Any] | None = None,
                 tools: Sequence[Mapping[str, Any]] | None = None, tool_choice: Any = None,
                 temperature: float | None = None, max_tokens: int | None = None,
                 response_format: Any = None, timeout: float | None = None,
                 stream: bool = False, model: str | None = None,
                 cache: Mapping[str, Any] | None = None,
                 **litellm_kwargs: Any) -> LLMResponse | ResponseStream: ...

    def generate(self, prompt: str | None = None, *,
                 system: str | Sequence[Mapping[str, Any]] | None = None,
                 messages: Sequence[Mapping[str, Any]] | None = None,
                 metadata: Mapping[str, Any] | None = None,
                 tools: Sequence[Mapping[str, Any]] | None = None, tool_choice: Any = None,
                 temperature: float | None = None, max_tokens: int | None = None,
                 response_format: Any = None, timeout: float | None = None,
                 stream: bool = False, model: str | None = None,
                 cache: Mapping[str, Any] | None = None,
                 **litellm_kwargs: Any) -> LLMResponse | ResponseStream:
        """Answer ``prompt`` (and/or ``messages``); returns an ``LLMResponse``, or a
        ``ResponseStream`` of text chunks when ``stream=True``. Works from any thread and from
        code already running an event loop. ``cache={"no-cache": True, "no-store": True,
        "ttl": 60}`` controls the response cache for this call."""
        called_at = time.monotonic()
        loop = default_loop()
        coro = self._call(prompt, system=system, messages=messages, metadata=metadata,
                          tools=tools, tool_choice=tool_choice, temperature=temperature,
                          max_tokens=max_tokens, response_format=response_format, timeout=timeout,
                          stream=stream, model=model, kwargs=litellm_kwargs,
                          parent=self._parent(), cache=cache, called_at=called_at)
        result = loop.run(coro)
        if isinstance(result, ResponseStream):   # a ReplayStream too
            result._loop = loop
        return result

    @overload
    async def agenerate(self, prompt: str | None = None, *,
                        system: str | Sequence[Mapping[str, Any]] | None = None,
                        messages: Sequence[Mapping[str, Any]] | None = None,
                        metadata: Mapping[str, Any] | None = None,
                        tools: Sequence[Mapping[str, Any]] | None = None, tool_choice: Any = None,
                        temperature: float | None = None, max_tokens: int | None = None,
                        response_format: Any = None, timeout: float | None = None,
                        stream: Literal[False] = False, model: str | None = None,
                        cache: Mapping[str, Any] | None = None,
                        **litellm_kwargs: Any) -> LLMResponse: ...

    @overload
    async def agenerate(self, prompt: str | None = None, *,
                        system: str | Sequence[Mapping[str, Any]] | None = None,
                        messages: Sequence[Mapping[str, Any]] | None = None,
                        metadata: Mapping[str, Any] | None = None,
                        tools: Sequence[Mapping[str, Any]] | None = None, tool_choice: Any = None,
                        temperature: float | None = None, max_tokens: int | None = None,
                        response_format: Any = None, timeout: float | None = None,
                        stream: Literal[True], model: str | None = None,
                        cache: Mapping[str, Any] | None = None,
                        **litellm_kwargs: Any) -> ResponseStream: ...

    @overload
    async def agenerate(self, prompt: str | None = None, *,
                        system: str | Sequence[Mapping[str, Any]] | None = None,
                        messages: Sequence[Mapping[str, Any]] | None = None,
                        metadata: Mapping[str, Any] | None = None,
                        tools: Sequence[Mapping[str, Any]] | None = None, tool_choice: Any = None,
                        temperature: float | None = None, max_tokens: int | None = None,
                        response_format: Any = None, timeout: float | None = None,
                        stream: bool = False, model: str | None = None,
                        cache: Mapping[str, Any] | None = None,
                        **litellm_kwargs: Any) -> LLMResponse | ResponseStream: ...

    async def agenerate(self, prompt: str | None = None, *,
                        system: str | Sequence[Mapping[str, Any]] | None = None,
                        messages: Sequence[Mapping[str, Any]] | None = None,
                        metadata: Mapping[str, Any] | None = None,
                        tools: Sequence[Mapping[str, Any]] | None = None, tool_choice: Any = None,
                        temperature: float | None = None, max_tokens: int | None = None,
                        response_format: Any = None, timeout: float | None = None,
                        stream: bool = False, model: str | None = None,
                        cache: Mapping[str, Any] | None = None,
                        **litellm_kwargs: Any) -> LLMResponse | ResponseStream:
        """``generate`` for async code; a stream is iterated with ``async for``."""
        return await self._call(prompt, system=system, messages=messages, metadata=metadata,
                                tools=tools, tool_choice=tool_choice, temperature=temperature,
                                max_tokens=max_tokens, response_format=response_format,
                                timeout=timeout, stream=stream, model=model, kwargs=litellm_kwargs,
                                parent=self._parent(), cache=cache, called_at=time.monotonic())

    def stream(self, prompt: str | None = None, **kwargs: Any) -> ResponseStream:
        """``generate(..., stream=True)``."""
        result: ResponseStream = self.generate(prompt, stream=True, **kwargs)
        return result

    async def _call(self, prompt: str | None, *, system: Any, messages: Any, metadata: Any,
                    tools: Any, tool_choice: Any, temperature: Any, max_tokens: Any,
                    response_format: Any, timeout: Any, stream: bool, model: str | None,
                    kwargs: dict[str, Any], parent: tuple[str, str | None],
                    called_at: float, cache: Mapping[str, Any] | None = None
                    ) -> LLMResponse | ResponseStream:
        if self._closed:
            raise errors.UsageError("this LiteLLMAdapter is closed (close() or the end of its "
                                    "with block); make a new one for more calls")
        group = model or self.model
        default_s = self._deadline_of(group)
        link = prompt_link(system, messages)      # before _messages copies the dicts
        chat = _messages(prompt, system, messages)
        params = _params(tools=tools, tool_choice=tool_choice, temperature=temperature,
                         max_tokens=max_tokens, response_format=response_format, kwargs=kwargs)
        _check_metadata(metadata)
        check_request(params, metadata)
        allowed_s = default_s if timeout is None else _timeout(timeout)
        deadline = called_at + allowed_s
        gateway = self._built() or await self._started(group, deadline)
        started = time.monotonic()
        spec = CallSpec(group=group, messages=chat, params=params, deadline=deadline,
                        stream=stream)
        call = Call(spec=spec, call_id=_new_id(), environment=self.environment,
                    metadata=metadata, scope=current_scope(), parent=parent, prompt=link,
                    control=CacheControl.parse(cache), started=started)
        return await run_call(call, gateway, self.policies, self.telemetry)

    def _deadline_of(self, group: str) -> float:
        """Seconds a call to ``group`` may take when the caller does not say (worked out once
        per group: the config does not change); an unknown group is a ``UsageError``."""
        known = self._deadlines.get(group) if isinstance(group, str) else None
        if known is None:
            if group not in self.config.groups():
                raise errors.UsageError(f"unknown model {group!r}; defined: "
                                        f"{', '.join(self.config.groups())}")
            known = self._deadlines[group] = call_deadline(self.config, group)
        return known

    def _built(self) -> Gateway | None:
        """The router, once it (and the store and policies) was built; else None."""
        if self._telemetry is None or self._policies is None:
            return None
        return self._gateway

    async def _started(self, group: str, deadline: float) -> Gateway:
        """The router (and the store and policies), on the first call built within its deadline:
        the import of litellm started at construction is awaited, then the rest is built in a
        worker thread, so the event loop stays free to end the call at its deadline. A build cut
        off by it goes on in the background, for the next call."""
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                importing = start_import()
                # The recording process starts first, so that it is reading its pipe by the
                # first answer (a kill of both loses what it had not read yet), not seconds
                # after it: it starts while litellm is imported.
                await asyncio.to_thread(self._recording)
                await asyncio.wrap_future(importing)
                await asyncio.to_thread(self._build)
        except TimeoutError:
            raise errors.DeadlineExceeded(
                f"{group}: no answer within the call's deadline: litellm and the router were "
                "still starting up (no request was sent); raise timeout=, or call "
                "llm.warmup() at start-up", model_group=group, kind="deadline",
                attempts=[]) from None
        return self.gateway

    def _build(self) -> None:
        self.gateway                        # noqa: B018 - built on first use
        self.telemetry                      # noqa: B018
        self.policies                       # noqa: B018

    def _recording(self) -> None:
        self.telemetry                      # noqa: B018 - built on first use

    def _parent(self) -> tuple[str, str | None]:
        """The trace a call joins (the caller's ``llm.trace`` or span, else a new one), read in
        the caller's thread and context, and remembered there for ``score()``."""
        parent = current_parent() or (_new_id(), None)
        self._last_trace.trace_id = parent[0]
        return parent

    def warmup(self) -> None:
        """Import litellm and build the router now, so the first call does not pay for it.

        litellm takes seconds to import and lazily imports more on its first success and first
        failure; servers call this at startup (the CLI and the demo do)."""
        default_loop().run(self._warmup())

    async def _warmup(self) -> None:
        from ._routing.litellm import acompletion, count_tokens, exceptions

        refused = fork_guard().refusal()
        if refused is not None:     # litellm's router cannot run here: say what to do instead
            raise refused

        self._recording()                   # its process starts while litellm is imported
        messages = [{"role": "user", "content": "warm-up"}]
        # The tokenizer (rate-limit and budget estimates) loads on its first count.
        model = str(self.config.group(self.model)[0].litellm_params.get("model", ""))
        count_tokens(model, messages)
        # A mocked answer through the Router: its lazy imports, no provider traffic.
        await self.gateway.router.acompletion(model=self.model, messages=messages,
                                              mock_response="ok", disable_fallbacks=True)
        try:
            await acompletion(model="openai/gpt-4o", messages=messages,
                              mock_response=exceptions().InternalServerError(
                                  "warm-up", llm_provider="openai", model="gpt-4o"))
        except exceptions().InternalServerError:
            pass  # the failure path is what is being warmed up

    # -- prompts ------------------------------------------------------------------------------
    def prompt(self, prompt_name: str, *, version: int | str | None = None,
               label: str | None = None, sticky_key: str | None = None) -> Prompt:
        """The prompt object (template, version, labels, config, source, A/B variant)."""
        return self._prompts.get(prompt_name, version=version, label=label, sticky_key=sticky_key)

    def get_prompt(self, prompt_name: str, variables: Mapping[str, Any] | None = None,
                   version: int | str | None = None, label: str | None = None, *,
                   sticky_key: str | None = None) -> str | list[dict[str, Any]]:
        """The compiled prompt: text for text prompts, a message list for chat prompts.

        ``version`` may be a number or a label name (``"latest"`` applies a configured A/B
        experiment); a call made with the result records which prompt version it used.
        """
        if variables is not None and (not isinstance(variables, Mapping) or
                                      not all(isinstance(k, str) for k in variables)):
            raise errors.UsageError(f"variables must be a dict of names to values, e.g. "
                                    f"{{'name': 'Ada'}}, not {type(variables).__name__}")
        return self.prompt(prompt_name, version=version, label=label,
                           sticky_key=sticky_key).compile(**(variables or {}))

    def trace(self, name: str, *, session_id: str | None = None, user_id: str | None = None,
              tags: Sequence[str] = (), metadata: Mapping[str, Any] | None = None) -> TraceScope:
        """Group the calls made inside ``with``/``async with`` into one trace named ``name``."""
        telemetry = self.telemetry
        return TraceScope(name=name, session_id=session_id, user_id=user_id, tags=tuple(tags),
                          metadata=dict(metadata or {}), sink=telemetry.langfuse,
                          masker=telemetry.masker)

    def score(self, name: str, value: float | str | bool, trace_id: str | None = None, *,
              comment: str | None = None) -> str:
        """Record an outcome (user feedback, an evaluation) for a trace, in Langfuse and the local
        store. ``trace_id`` defaults to the current ``llm.trace`` or else the last call this
        adapter made in this thread; returns the trace id scored."""
        if isinstance(value, bool):
            value = 1.0 if value else 0.0
        if not isinstance(value, (int, float, str)):
            raise errors.UsageError(f"score value must be a number, bool or string, not "
                                    f"{type(value).__name__}")
        scope = current_scope()
        target = trace_id or (scope.trace_id if scope else None) or \
            getattr(self._last_trace, "trace_id", None)
        if target is None:
            raise errors.UsageError("no trace to score: make a call first, score inside "
                                    "llm.trace(...), or pass trace_id=response.trace_id")
        telemetry = self.telemetry
        masker = telemetry.masker                   # feedback text may quote patient data
        if telemetry.store is not None:
            kept = masker.text(comment) if comment and masker.mask_store else \
                (redact(comment, masker.secrets) if comment else comment)
            telemetry.store.add_score(name=name, value=value, trace_id=target, comment=kept)
        comment = masker.text(comment) if comment else comment
        if telemetry.langfuse is not None:
            client = telemetry.langfuse.client
            if isinstance(value, str):
                client.create_score(name=name, value=value, trace_id=target,
                                    data_type="CATEGORICAL", comment=comment)
            else:
                client.create_score(name=name, value=float(value), trace_id=target,
                                    data_type="NUMERIC", comment=comment)
        return target

    def flush_langfuse(self, timeout: float = 30.0) -> bool:
        """Block until every call recorded so far reached the local store and Langfuse. Never
        raises. True only when Langfuse acknowledged everything; False (logging how many calls
        are pending or quarantined, and the last error) otherwise: they stay in the store."""
        if self._telemetry is None:
            return True
        try:
            return self._telemetry.recorder.flush(timeout)
        except Exception:  # flushing is best effort by contract: report, never raise
            log.exception("llm-adapter: flush_langfuse failed")
            return False

    @property
    def policies(self) -> Policies:
        """The cache, limits and budgets of this adapter's config (built on first use)."""
        if self._policies is None:
            self._policies = self._policy_pool.get(self.config)
        return self._policies

    @property
    def telemetry(self) -> Telemetry:
        """Where this adapter's call records go (built on first use)."""
        if self._telemetry is None:
            self._telemetry = self._telemetry_pool.get(self.config, bool(self.enable_langfuse))
        return self._telemetry

    # -- plumbing -----------------------------------------------------------------------------
    @property
    def gateway(self) -> Gateway:
        """The shared router for this config (built on first use: it imports litellm)."""
        if self._gateway is None:
            self._gateway = self._pool.get(self.config, self._simulation_url())
        return self._gateway

    def _simulation_url(self) -> str | None:
        if not self.config.profile.simulated:
            return None
        if self._simulator_url:
            return self._simulator_url.rstrip("/")
        from_env = os.environ.get("LLM_ADAPTER_SIMULATOR_URL")
        if from_env:
            return from_env.rstrip("/")
        from ._routing.simulation import shared_simulator

        return shared_simulator(self.config).url

    def __repr__(self) -> str:
        return (f"LiteLLMAdapter(model={self.model!r}, environment={self.environment!r}, "
                f"langfuse={self.enable_langfuse})")


def _new_id() -> str:
    """32 random hex digits (a trace or call id). ``random``'s generator, as OpenTelemetry's
    ids: ``os.urandom`` is a system call that lets go of the GIL, and at concurrency 32 each
    one costs the calls 30-45 µs (``bench/bench_gil.py``); the generator is seeded again in a
    forked child."""
    return f"{random.getrandbits(128) or 1:032x}"


def _messages(prompt: Any, system: Any, messages: Any) -> list[dict[str, Any]]:
    if prompt is None and not messages:
        raise errors.UsageError("nothing to send: pass prompt='...' or messages=[...]")
    if prompt is not None and not isinstance(prompt, str):
        raise errors.UsageError(f"prompt must be a string, not {type(prompt).__name__}; "
                                "for a conversation pass messages=[{'role': ..., 'content': ...}]")
    check_encodable(prompt, "prompt")
    out: list[dict[str, Any]] = []
    if isinstance(system, str):
        check_encodable(system, "system")
        out.append({"role": "system", "content": system})
    elif system is not None:
        if not isinstance(system, (list, tuple)):
            raise errors.UsageError("system must be a string or a list of messages "
                                    "(as get_prompt returns for chat prompts)")
        out.extend(_checked(system, "system"))
    if messages is not None:
        if isinstance(messages, (str, bytes)) or not isinstance(messages, (list, tuple)):
            raise errors.UsageError("messages must be a list of {'role': ..., 'content': ...} "
                                    "dicts")
        out.extend(_checked(messages, "messages"))
    if prompt is not None:
        out.append({"role": "user", "content": prompt})
    return out


def _checked(messages: Sequence[Any], name: str) -> list[dict[str, Any]]:
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or "role" not in message:
            raise errors.UsageError(f"{name}[{i}] must be a dict with 'role' and 'content', "
                                    f"got {type(message).__name__}")
        if message["role"] not in ("system", "user", "assistant", "tool", "developer", "function"):
            raise errors.UsageError(f"{name}[{i}] has role {message['role']!r}; use system, user, "
                                    "assistant or tool")
        check_message(message, f"{name}[{i}]")
        check_encodable(message, f"{name}[{i}]")
        out.append(dict(message))
    return out


def _params(*, tools: Any, tool_choice: Any, temperature: Any, max_tokens: Any,
            response_format: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    if not kwargs and tools is None and tool_choice is None and temperature is None and \
            max_tokens is None and response_format is None:
        return {}                   # the plain call: nothing to check
    reserved = sorted(_RESERVED & kwargs.keys())
    if reserved:
        raise errors.UsageError(f"{', '.join(reserved)} cannot be passed to generate(): the "
                                "adapter sets them from the config (choose a model group with "
                                "model=..., keys and bases in litellm_config.yaml)")
    if temperature is not None and (isinstance(temperature, bool) or
                                    not isinstance(temperature, (int, float)) or
                                    not 0 <= temperature <= 2):
        raise errors.UsageError(f"temperature must be a number from 0 to 2, not {temperature!r}")
    if max_tokens is not None and (isinstance(max_tokens, bool) or
                                   not isinstance(max_tokens, int) or max_tokens <= 0):
        raise errors.UsageError(f"max_tokens must be a positive integer, not {max_tokens!r}")
    if tools is not None and (not isinstance(tools, (list, tuple)) or
                              not all(isinstance(t, Mapping) for t in tools)):
        raise errors.UsageError("tools must be a list of OpenAI-style tool dicts "
                                "({'type': 'function', 'function': {...}})")
    check_tools(tools or ())
    check_response_format(response_format)
    given = {"tools": list(tools) if tools else None, "tool_choice": tool_choice,
             "temperature": temperature, "max_tokens": max_tokens,
             "response_format": response_format}
    return {**{k: v for k, v in given.items() if v is not None}, **kwargs}


def _check_metadata(metadata: Any) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, Mapping):
        raise errors.UsageError(f"metadata must be a dict, not {type(metadata).__name__}")
    tags = metadata.get("tags")
    if tags is not None and (isinstance(tags, str) or not isinstance(tags, (list, tuple)) or
                             not all(isinstance(t, str) for t in tags)):
        raise errors.UsageError("metadata['tags'] must be a list of strings, e.g. ['urgent']")


def _timeout(value: Any) -> float:
    return check_timeout(value)
