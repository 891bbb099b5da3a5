"""Streamed answers: text chunks as they come, the full response when the stream ends.

The routing walk has already received the first chunk (a stream that fails before it is failed
over), so iteration starts with it. A failure after the first chunk cannot be failed over
without repeating text the caller has seen: it is raised as a ``ProviderError``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from . import errors
from ._litellm import litellm
from ._loop import LoopThread
from ._provider_errors import classify
from ._response import build_response
from .records import LLMResponse
from .routing import Outcome

__all__ = ["ResponseStream"]


class ResponseStream:
    """Iterate (sync or async) for text chunks; ``response`` is set once the stream is done."""

    def __init__(self, outcome: Outcome, *, started: float, call_id: str,
                 on_end: Callable[[LLMResponse | None, errors.LLMAdapterError | None], None],
                 gateway: Any, loop: LoopThread | None = None) -> None:
        self._outcome = outcome
        self._started = started
        self._call_id = call_id
        self._on_end = on_end
        self._gateway = gateway
        self._loop = loop
        self._chunks: list[Any] = []
        self._agen: AsyncIterator[str] | None = None
        self.response: LLMResponse | None = None

    @property
    def content(self) -> str:
        return self.response.content if self.response else ""

    # -- async --------------------------------------------------------------------------------
    def __aiter__(self) -> AsyncIterator[str]:
        if self._agen is None:
            self._agen = self._texts()
        return self._agen

    # -- sync ---------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[str]:
        if self._loop is None:
            raise errors.UsageError("this stream came from agenerate(); iterate it with `async for`")
        agen = self.__aiter__()
        while True:
            try:
                yield self._loop.run(_next(agen))
            except StopAsyncIteration:
                return

    async def _texts(self) -> AsyncIterator[str]:
        outcome = self._outcome
        first = outcome.first_chunk
        if first is not None:
            self._chunks.append(first)
            text = _delta_text(first)
            if text:
                yield text
        try:
            async for chunk in outcome.response:
                self._chunks.append(chunk)
                text = _delta_text(chunk)
                if text:
                    yield text
        except Exception as exc:  # a stream cut after text reached the caller
            failure = classify(exc)
            error = errors.ProviderError(
                f"{outcome.group}: the stream from {outcome.deployment.id} broke after "
                f"{len(self._chunks)} chunk(s): {failure.message}",
                status=failure.status, deployment=outcome.deployment.id,
                model_group=outcome.group, kind="stream_interrupted",
                attempts=outcome.attempts)
            self._on_end(None, error)
            raise error from None
        self.response = self._build()
        self._on_end(self.response, None)

    def _build(self) -> LLMResponse:
        lt = litellm()
        raw = lt.stream_chunk_builder(self._chunks) if self._chunks else None
        now = time.monotonic()
        ttft = None
        if self._outcome.first_chunk_at is not None:
            ttft = (self._outcome.first_chunk_at - self._started) * 1000
        dep = self._outcome.deployment
        return build_response(
            raw, group=self._outcome.group, deployment_id=dep.id, provider=dep.provider,
            pricing=self._gateway.pricing.get(dep.id), attempts=self._outcome.attempts,
            latency_ms=(now - self._started) * 1000, call_id=self._call_id, ttft_ms=ttft)


async def _next(agen: AsyncIterator[str]) -> str:
    return await agen.__anext__()


def _delta_text(chunk: Any) -> str:
    choices = getattr(chunk, "choices", None) or []
    if not choices:
        return ""
    delta = getattr(choices[0], "delta", None)
    return str(getattr(delta, "content", None) or "")
