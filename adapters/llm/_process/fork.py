"""fork(): what a child process must not inherit from its parent, and what litellm refuses.

Servers fork workers from a parent that may already have made calls (gunicorn ``--preload``,
Celery's prefork pool, ``multiprocessing`` with the fork start method). Only the forking thread
survives in the child: the sync API's event loop thread, the store writer and the telemetry
workers are gone, a lock another thread held stays locked forever, and a pooled socket is shared
with the parent. Each holder of such state registers a reset here that runs in the child;
litellm's cached HTTP clients are dropped there too.

litellm's Router runs on a native (Rust) runtime whose threads do not survive fork either. Once
that runtime started in the parent (its first routed call, or a cooldown read), every Router
call in the child raises litellm's ``ForkedAfterNativeRuntimeStarted``; a new Router does too.
The child gets a ``UsageError`` at once instead, saying what to do.
"""

from __future__ import annotations

import logging
import os
import sys
import weakref
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

from ..errors import UsageError

__all__ = ["fork_guard", "refused_after_fork", "reset_in_child"]

T = TypeVar("T")
log = logging.getLogger("adapters.llm")

_NATIVE = "litellm.rust_bridge._native"
FORK_FIX = ("create the LiteLLMAdapter (and call warmup()) in each worker after the fork, e.g. "
            "gunicorn's post_fork or Celery's worker_process_init, not in the parent; or start "
            "workers with the spawn start method (multiprocessing.get_context('spawn'))")


def reset_in_child(owner: T, reset: Callable[[T], None]) -> None:
    """Run ``reset(owner)`` in every child forked from now on, while ``owner`` lives."""
    fork_guard().add(owner, reset)


class ForkGuard:
    """The process's fork handlers: the resets to run in a child, and whether the parent's
    litellm runtime had started. One registration for the process (``os.register_at_fork``
    cannot unregister), owners held weakly so an adapter made per request is not kept alive."""

    def __init__(self) -> None:
        self.inherited_runtime = False     # set in the child: the parent's runtime had started
        self._parent_started = False
        self._resets: weakref.WeakKeyDictionary[Any, Callable[[Any], None]] = \
            weakref.WeakKeyDictionary()
        os.register_at_fork(before=self._before, after_in_child=self._after_in_child)

    def add(self, owner: Any, reset: Callable[[Any], None]) -> None:
        self._resets[owner] = reset

    def _before(self) -> None:
        native = sys.modules.get(_NATIVE)
        self._parent_started = bool(native is not None and native.process_state_started())

    def _after_in_child(self) -> None:
        self.inherited_runtime = self.inherited_runtime or self._parent_started
        litellm = sys.modules.get("litellm")
        clients = getattr(litellm, "in_memory_llm_clients_cache", None)
        if clients is not None:
            # litellm's pooled HTTP clients: their keep-alive sockets are the parent's, their
            # sessions bound to its event loops. Dropped, not closed: closing would end the
            # parent's connections too.
            clients.flush_cache()
        for owner, reset in list(self._resets.items()):
            try:
                reset(owner)
            except Exception:  # one holder's reset must not keep the others from theirs
                log.exception("llm-adapter: resetting %r after fork failed", owner)

    def refusal(self) -> UsageError | None:
        """The error for a call litellm would refuse in this process, else None."""
        return fork_error() if self.inherited_runtime else None


def fork_error() -> UsageError:
    return UsageError(f"this process was forked (pid {os.getpid()}, parent {os.getppid()}) "
                      "after llm-adapter had made calls in its parent, and litellm's router "
                      f"cannot run in a forked child (its native runtime's threads do not "
                      f"survive fork); {FORK_FIX}")


def refused_after_fork(exc: BaseException) -> bool:
    """Whether ``exc`` is litellm refusing to route in a forked child."""
    native = sys.modules.get(_NATIVE)
    if native is None:
        return False
    refused = (native.ForkedAfterNativeRuntimeStarted, native.ProcessReservedForForking)
    return isinstance(exc, refused)


@cache
def fork_guard() -> ForkGuard:
    """The process's guard (registered once: fork handlers are process-wide)."""
    return ForkGuard()
