"""The one place litellm is imported.

``import litellm`` takes seconds, so nothing imports it at module level: callers ask for it when a
call needs it. Before the first import the offline price map is chosen (litellm otherwise fetches
its price list over the network at import and stalls), unless the user decided otherwise.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import sys
from functools import cache
from types import ModuleType

log = logging.getLogger("adapters.llm")


@cache
def litellm() -> ModuleType:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm as _litellm

    # litellm prints a "Give Feedback / Get Help" banner for every exception it maps.
    _litellm.suppress_debug_info = True
    if not os.environ.get("LITELLM_LOG"):
        # Its warnings repeat what the adapter reports itself (e.g. unknown prices).
        logging.getLogger("LiteLLM").setLevel(logging.ERROR)
    # litellm registers its at-exit client clean-up on the first read of a lazily imported
    # attribute (any name it does not define): have that happen now, then put the process's
    # drain before it and before its logging worker's at-exit flush (see _lifecycle).
    hasattr(_litellm, "_llm_adapter_registers_cleanup")
    from ._lifecycle import LOOPS, default_lifecycle

    lifecycle = default_lifecycle()
    lifecycle.run_first()
    # After the private loop closed its own clients: those of the application's loops too.
    lifecycle.add(lambda _timeout: forget_clients(), stage=LOOPS + 1)
    return _litellm


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
