"""Streamed answers: text chunks as they come, the full response when the stream ends.

The routing walk has already received the first chunk (a stream that fails before it is failed
over), so iteration starts with it. A failure after the first chunk cannot be failed over
without repeating text the caller has seen: it is raised as a ``ProviderError``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

from .. import errors
from .litellm import response_from_chunks
from .._process.loop import LoopThread
from .provider_errors import classify
from .responses import build_response
from .._observability.records import LLMResponse

if TYPE_CHECKING:
    from .pricing import Pricing
    from .walk import Outcome

__all__ = ["ReplayStream", "ResponseStream", "close_stream", "first_chunk"]

OnEnd = Callable[[LLMResponse | None, "errors.LLMAdapterError | None"], None]


class ResponseStream:
    """Iterate (sync or async) for text chunks; ``response`` is set once the stream is done.

    It holds what answered and what it needs to price and report it (``pricing``, and the
    config's ``secrets`` to redact from a mid-stream error), never the routing that chose it.
    """

    def __init__(self, outcome: Outcome | None, *, started: float, call_id: str,
                 on_end: OnEnd, pricing: Pricing | None = None, secrets: tuple[str, ...] = (),
                 loop: LoopThread | None = None, model: str | None = None) -> None:
        self._outcome = outcome
        self._model = model             # the group asked for (the outcome's answered)
        self._started = started
        self._call_id = call_id
        self._on_end = on_end
        self._pricing = pricing
        self._secrets = secrets
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
            raise errors.UsageError("this stream came from agenerate(); iterate it with "
                                    "`async for`")
        agen = self.__aiter__()
        while True:
            try:
                yield self._loop.run(_next(agen))
            except StopAsyncIteration:
                return

    async def _texts(self) -> AsyncIterator[str]:
        outcome = self._outcome
        assert outcome is not None
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
            failure = classify(exc, self._secrets)
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
        assert self._outcome is not None
        raw = response_from_chunks(self._chunks) if self._chunks else None
        now = time.monotonic()
        ttft = None
        if self._outcome.first_chunk_at is not None:
            ttft = (self._outcome.first_chunk_at - self._started) * 1000
        dep = self._outcome.deployment
        latency_ms = (now - self._started) * 1000
        response = build_response(
            raw, model=self._model or self._outcome.group, group=self._outcome.group,
            deployment_id=dep.id, provider=dep.provider,
            pricing=self._pricing, attempts=self._outcome.attempts,
            latency_ms=latency_ms, call_id=self._call_id, ttft_ms=ttft)
        # The answering attempt's latency ends at its first chunk: so does the overhead.
        response.overhead_ms = self._outcome.overhead_ms(latency_ms if ttft is None else ttft)
        return response


class ReplayStream(ResponseStream):
    """A cached answer played back as a stream: same chunks interface, no provider call."""

    def __init__(self, response: LLMResponse, *, on_end: OnEnd, words_per_chunk: int = 3) -> None:
        super().__init__(None, started=0.0, call_id=response.call_id, on_end=on_end)
        self._cached = response
        self._words = words_per_chunk

    async def _texts(self) -> AsyncIterator[str]:
        words = self._cached.content.split(" ")
        for i in range(0, len(words), self._words):
            yield (" " if i else "") + " ".join(words[i:i + self._words])
        self.response = self._cached
        self._on_end(self.response, None)


async def first_chunk(stream: Any) -> Any:
    """The first chunk of a litellm stream: a stream that fails before it fails the attempt."""
    iterator: AsyncIterator[Any] = stream.__aiter__()
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return None


async def close_stream(stream: Any) -> None:
    """Close a stream given up on (no first chunk in time), so its connection does not linger."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


async def _next(agen: AsyncIterator[str]) -> str:
    return await agen.__anext__()


def _delta_text(chunk: Any) -> str:
    choices = getattr(chunk, "choices", None) or []
    if not choices:
        return ""
    delta = getattr(choices[0], "delta", None)
    return str(getattr(delta, "content", None) or "")
