"""The one place litellm is used: imported in a background thread, reached through typed calls.

Every other module asks this one for what it needs of litellm (``new_router``,
``answering_deployment``, ``add_attempt_logger``, ...), so an upgrade that changes a private
behaviour the adapter relies on breaks here, where ``tests/test_litellm_contract.py`` checks each
of them against the installed version.

``import litellm`` takes seconds, so importing the package never does it: the first
``LiteLLMAdapter`` starts it in a daemon thread (``start_import``), and the first call waits for
it within its own deadline, so an application that builds its adapter at start-up finds litellm
ready by its first request. The thread also imports what litellm's Router imports on its first
call (tracing hooks, routing steps), which would otherwise block the event loop mid-call.

Before the import the offline price map is chosen (litellm otherwise fetches its price list over
the network at import and stalls), unless the user decided otherwise.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import importlib
import inspect
import logging
import os
import re
import sys
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from functools import cache
from types import ModuleType
from typing import Any

from .._process.collector import freeze_long_lived

__all__ = ["acompletion", "add_attempt_logger", "answering_deployment", "attempt_logger_base",
           "close_clients", "cooldown_store", "cooldowns_shared", "count_tokens",
           "error_text_kind", "exceptions", "forget_clients", "is_router_cooldown", "litellm",
           "model_prices", "new_router", "response_from_chunks", "start_import",
           "stop_logging_worker", "user_part_types"]

log = logging.getLogger(__name__)

# Modules litellm's Router imports on its first call (litellm 1.110); warmed here so that call
# does not block its event loop. A name missing from another litellm version is skipped.
_ROUTER_LAZY = (
    "litellm.router_rust.core", "litellm.router_rust.invoke.walk",
    "litellm.router_rust.invoke.prompt_management", "litellm.rust_bridge.host.settings",
    "litellm.rust_bridge.logger", "litellm.integrations.otel.logger",
    "litellm.integrations.SlackAlerting.slack_alerting", "litellm._service_logger",
    "litellm.integrations.prometheus_services", "litellm.integrations.generic_api",
    "litellm.litellm_core_utils.logging_callback_manager",
    "litellm.router_utils.client_initalization_utils", "litellm.router_utils.request_priority",
    "litellm.router_utils.pre_call_checks.continuation_prefill_check",
    "litellm.router_strategy.auto_router.baseline_request", "litellm.proxy._types",
    "litellm.proxy.spend_tracking.savings", "litellm.proxy.openai_files_endpoints.common_utils",
    "litellm.llms.litellm_proxy.chat", "litellm.llms.openai_like.dynamic_config",
    "litellm.llms.github_copilot.authenticator", "litellm.llms.github_copilot.per_user_auth",
    "litellm.llms.edenai.chat", "litellm.llms.fal_ai.chat",
    "litellm.llms.openai.chat.gpt_audio_transformation",
)
_FORK_WAIT_S = 60.0                 # a fork waits this long at most for an import in flight
_EXIT_WAIT_S = 30.0                 # and the end of the process


class _Import:
    """The import of litellm: started once, awaited by every caller."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.future: Future[ModuleType] = Future()
        self.module: ModuleType | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Future[ModuleType]:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="llm-adapter-import",
                                                daemon=True)
                self.future.set_running_or_notify_cancel()  # no waiter can cancel it now
                # A child forked mid-import would inherit module locks held by a thread it
                # does not have, and hang on its first import of litellm: forks wait for it.
                os.register_at_fork(before=self._settle)
                # A process that ends mid-import would finalize while this thread runs native
                # code, which aborts the process ("exception not rethrown"): exit waits for it.
                atexit.register(self._finish, _EXIT_WAIT_S)
                self._thread.start()
        return self.future

    def _run(self) -> None:
        # What an import creates lives on, so the collector's passes during it free little;
        # paused, the import is ~20 % faster. Re-enabled right after.
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            module = _import()
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of litellm()
            self.future.set_exception(exc)
            return
        finally:
            if paused:
                gc.enable()
        freeze_long_lived()         # what the import made lives as long as the process
        self.module = module
        self.future.set_result(module)

    def _finish(self, timeout: float) -> None:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _settle(self) -> None:
        thread = self._thread
        if thread is None or thread is threading.current_thread() or self.future.done():
            return
        thread.join(_FORK_WAIT_S)
        if thread.is_alive():
            log.warning("llm-adapter: forking while litellm is still being imported; the "
                        "child may hang on it (make adapters after the fork)")


def _import() -> ModuleType:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm as _litellm

    # litellm prints a "Give Feedback / Get Help" banner for every exception it maps.
    _litellm.suppress_debug_info = True
    if not os.environ.get("LITELLM_LOG"):
        # Its warnings repeat what the adapter reports itself (e.g. unknown prices).
        logging.getLogger("LiteLLM").setLevel(logging.ERROR)
    for name in _ROUTER_LAZY:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # a warm-up only: the call imports what it needs itself
            log.debug("llm-adapter: %s not warmed (%s)", name, exc)
    # litellm registers its at-exit client clean-up on the first read of a lazily imported
    # attribute (any name it does not define): have that happen now, then put the process's
    # drain before it and before its logging worker's at-exit flush (see _lifecycle).
    hasattr(_litellm, "_llm_adapter_registers_cleanup")
    from .._process.lifecycle import LOOPS, default_lifecycle

    lifecycle = default_lifecycle()
    lifecycle.run_first()
    # After the private loop closed its own clients: those of the application's loops too.
    lifecycle.add(lambda _timeout: forget_clients(), stage=LOOPS + 1)
    return _litellm


@cache
def _state() -> _Import:
    return _Import()


def start_import() -> Future[ModuleType]:
    """Start importing litellm in the background (once per process); its future."""
    return _state().start()


def litellm() -> ModuleType:
    """The litellm module, imported (or waited for) now."""
    state = _state()
    if state.module is not None:
        return state.module
    return state.start().result()


async def stop_logging_worker(timeout: float) -> None:
    """Finish and stop litellm's logging worker if it runs on this loop.

    litellm runs its success and failure callbacks from a worker task that never ends; left
    to be cancelled it logs "coroutine already executing", and its own at-exit flush would
    run what is left on a new loop of its own."""
    module = sys.modules.get("litellm.litellm_core_utils.logging_worker")
    worker = getattr(module, "GLOBAL_LOGGING_WORKER", None) if module is not None else None
    if worker is None or getattr(worker, "_bound_loop", None) is not asyncio.get_running_loop():
        return
    try:
        await asyncio.wait_for(worker.flush(), timeout)
    except TimeoutError:
        log.debug("llm-adapter: litellm's logging callbacks did not finish in %.1f s", timeout)
    await worker.stop(timeout=timeout)


async def close_clients() -> None:
    """Close litellm's cached HTTP clients that belong to the running loop, on it.

    litellm keeps its clients in ``in_memory_llm_clients_cache``, keyed per event loop. Left
    to the garbage collector, a client is finalized during interpreter shutdown, and its
    finalizer imports a module: that hangs for good when a daemon thread, frozen by the
    shutdown, holds the import lock. Closed here (and forgotten by ``forget_clients`` once the
    loop stopped), nothing is left for a finalizer to do."""
    lt = sys.modules.get("litellm")
    cache = getattr(lt, "in_memory_llm_clients_cache", None) if lt is not None else None
    entries = getattr(cache, "cache_dict", None)
    scoped = getattr(cache, "update_cache_key_with_event_loop", None)
    if not isinstance(entries, dict) or not callable(scoped):
        return
    ours = scoped("")                       # "-<this loop's token>": keys of this loop
    for key, client in list(entries.items()):
        if not (isinstance(key, str) and ours and key.endswith(ours)):
            continue
        close = getattr(client, "aclose", None) or getattr(client, "close", None)
        if close is None:
            continue
        try:
            result = close()
            if inspect.isawaitable(result):
                await asyncio.wait_for(result, timeout=2.0)
        except Exception:  # a client that fails to close is still forgotten; logged
            log.debug("llm-adapter: closing litellm client %s failed", key, exc_info=True)


def forget_clients() -> None:
    """Drop litellm's cached clients (after ``close_clients``, from a thread without a running
    loop): each is finalized now, while the interpreter is whole, and a client of another
    loop takes litellm's synchronous clean-up path."""
    lt = sys.modules.get("litellm")
    cache = getattr(lt, "in_memory_llm_clients_cache", None) if lt is not None else None
    flush = getattr(cache, "flush_cache", None)
    if callable(flush):
        flush()


# -- the surface the adapter uses ------------------------------------------------------------
# Public litellm API first; the private behaviours (marked) each have a contract test.
def new_router(**kwargs: Any) -> Any:
    """A ``litellm.Router`` built from ``kwargs``."""
    return litellm().Router(**kwargs)


async def acompletion(**kwargs: Any) -> Any:
    """``litellm.acompletion`` (one deployment, no Router)."""
    return await litellm().acompletion(**kwargs)


def exceptions() -> ModuleType:
    """``litellm.exceptions``: the classes litellm maps provider errors to."""
    module: ModuleType = litellm().exceptions
    return module


def model_prices() -> Mapping[str, Mapping[str, Any]]:
    """litellm's price map (the offline copy unless the user chose otherwise)."""
    prices: Mapping[str, Mapping[str, Any]] = litellm().model_cost
    return prices


def count_tokens(model: str, messages: Sequence[Mapping[str, Any]]) -> int:
    """Prompt tokens of ``messages`` as litellm counts them for ``model`` (may raise)."""
    return int(litellm().token_counter(model=model, messages=list(messages)))


def response_from_chunks(chunks: list[Any]) -> Any:
    """The full response a stream's chunks add up to."""
    return litellm().stream_chunk_builder(chunks)


def answering_deployment(response: Any) -> str | None:
    """Private: the id of the deployment that answered, which the Router stamps on the
    response's ``_hidden_params["model_id"]`` (the ``model_info.id`` of the config)."""
    hidden = getattr(response, "_hidden_params", None) or {}
    value = hidden.get("model_id") if isinstance(hidden, Mapping) else None
    return str(value) if value else None


def attempt_logger_base() -> type:
    """``CustomLogger``, the base of a logger that sees each attempt."""
    from litellm.integrations.custom_logger import CustomLogger

    return CustomLogger


def add_attempt_logger(logger: Any) -> None:
    """Private: register ``logger`` for the two attempt events only — before each provider
    call (``input_callback``) and on each failed one (``_async_failure_callback``) — so no
    success hook runs on every call of the process."""
    lt = litellm()
    if logger not in lt.input_callback:
        lt.input_callback.append(logger)
    if logger not in lt._async_failure_callback:
        lt._async_failure_callback.append(logger)


def cooldown_store(router: Any) -> Any:
    """Private: the Router's cooldown store (``router.health().cooldowns``): records by
    deployment id with ``timestamp``, ``cooldown_time``, ``status_code`` and
    ``exception_received``, shared through Redis when the Router has one."""
    return router.health().cooldowns


def cooldowns_shared(store: Any) -> bool:
    """Private: whether the cooldown store ``store`` is shared with other processes (Redis)."""
    return bool(store.cooldown_store.has_redis)


def is_router_cooldown(exc: BaseException) -> bool:
    """Whether ``exc`` is the Router refusing because every deployment of a group rests."""
    from litellm.types.router import RouterRateLimitError, RouterRateLimitErrorBasic

    return isinstance(exc, (RouterRateLimitError, RouterRateLimitErrorBasic))


# litellm reports a dropped connection, and an unparseable 200 body, as a 500 with an invented
# response: only its words tell them apart.
_CONNECTION_LOST = re.compile(
    r"Connection error|Connection reset|Connection refused|Server disconnected|Errno 10[34]|"
    r"ConnectError|RemoteProtocolError|peer closed connection", re.IGNORECASE)
_MALFORMED = re.compile(
    r"JSONDecodeError|Unterminated string|Expecting value|Expecting ',' delimiter|"
    r"Expecting property name|Extra data: line|Invalid control character")


def error_text_kind(message: str) -> str | None:
    """Private: ``"connection"`` or ``"malformed_response"`` when litellm's error text says the
    connection was lost or the body could not be parsed, else None."""
    if _CONNECTION_LOST.search(message):
        return "connection"
    if _MALFORMED.search(message):
        return "malformed_response"
    return None


def user_part_types() -> tuple[str, ...]:
    """The part types litellm accepts in a user message (it refuses others before sending)."""
    from litellm.types.llms.openai import ValidUserMessageContentTypes

    return tuple(ValidUserMessageContentTypes)
