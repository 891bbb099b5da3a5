"""Which deployment each attempt of a call went to, and how it failed, as litellm reports it.

litellm appends per-call ``callbacks=[...]`` to its global input-callback list and never removes
them (a leak that slows every later call), so one logger is registered for the process and
calls are told apart by a key in the request metadata.
"""

from __future__ import annotations

import itertools
import time
import uuid
from functools import cache
from typing import Any

from .._process.fork import reset_in_child
from .litellm import add_attempt_logger, attempt_logger_base

__all__ = ["CALL_KEY", "AttemptLog", "Tries", "attempt_log"]


class Tries:
    """The attempts of one router call, as litellm reports them (from its worker threads)."""

    def __init__(self) -> None:
        # (deployment id, start, (exception, end) | None)
        self.tries: list[tuple[str | None, float, tuple[BaseException, float] | None]] = []
        self.last_start: float | None = None
        self.responded = False      # a provider response came back (so a request went out)

    def started(self, dep_id: str | None) -> None:
        self.last_start = time.monotonic()
        self.tries.append((dep_id, self.last_start, None))

    def failed(self, dep_id: str | None, exc: BaseException) -> None:
        for i in range(len(self.tries) - 1, -1, -1):
            tried, t0, failure = self.tries[i]
            if failure is None and tried == dep_id:
                self.tries[i] = (tried, t0, (exc, time.monotonic()))
                return


CALL_KEY = "llm_adapter_call"


class AttemptLog:
    """One litellm logger for the process, routing each attempt event to its call's ``Tries``.

    litellm appends per-call ``callbacks=[...]`` to its global input-callback list and never
    removes them (a leak that slows every later call), so the adapter registers this single
    logger once and tells calls apart by a key in the request metadata.
    """

    def __init__(self) -> None:
        log = self

        class _Logger(attempt_logger_base()):  # type: ignore[misc]
            def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
                tries, dep_id = log._lookup(kwargs)
                if tries is not None:
                    tries.started(dep_id)

            def log_post_api_call(self, kwargs: Any, response_obj: Any, start_time: Any,
                                  end_time: Any) -> None:
                tries, _ = log._lookup(kwargs)
                if tries is not None:
                    tries.responded = True

            async def async_log_failure_event(self, kwargs: Any, response_obj: Any,
                                              start_time: Any, end_time: Any) -> None:
                tries, dep_id = log._lookup(kwargs)
                exc = kwargs.get("exception")
                if tries is not None and isinstance(exc, BaseException):
                    tries.failed(dep_id, exc)

        # One dict operation at a time, each atomic: no lock, whose hand-offs between the
        # calls' thread and litellm's threads would each cost a turn of the GIL.
        self._calls: dict[str, Tries] = {}
        self._keys = itertools.count()
        self._prefix = uuid.uuid4().hex[:8]     # keys of another AttemptLog never match
        self.logger = _Logger()
        add_attempt_logger(self.logger)
        reset_in_child(self, AttemptLog._forget)

    def _forget(self) -> None:
        """In a forked child: the parent's calls are not this process's."""
        self._calls = {}

    def track(self) -> tuple[str, Tries]:
        key = f"{self._prefix}-{next(self._keys)}"
        tries = Tries()
        self._calls[key] = tries
        return key, tries

    def release(self, key: str) -> None:
        self._calls.pop(key, None)

    def _lookup(self, kwargs: Any) -> tuple[Tries | None, str | None]:
        params = kwargs.get("litellm_params") or {}
        key = (params.get("metadata") or {}).get(CALL_KEY)
        if key is None:
            return None, None
        return self._calls.get(key), (params.get("model_info") or {}).get("id")


@cache
def attempt_log() -> AttemptLog:
    """The process's attempt logger (litellm's callback list is process-wide)."""
    return AttemptLog()
