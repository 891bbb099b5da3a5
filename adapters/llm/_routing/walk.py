"""What one call's walk through its groups carries: the request, what answered, what failed.

Shared by the gateway, the hedge race and the stream, so none of them imports another for its
types.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import errors
from .._config.loader import Deployment
from .._observability.records import Attempt
from .attempts import Tries
from .provider_errors import Failure

__all__ = ["CallSpec", "GroupFailed", "Outcome", "Walk"]


@dataclass(frozen=True, slots=True)
class CallSpec:
    """One request as the walk needs it."""

    group: str
    messages: list[dict[str, Any]]
    params: Mapping[str, Any]           # temperature, max_tokens, tools, ... (passed to litellm)
    deadline: float                     # time.monotonic() by which the whole call must end
    stream: bool = False
    start_at: int = 0                   # skip the chain's first groups (no rate-limit capacity)
    stream_ttft_timeout: float | None = None    # this call's cut-off (else router_settings')
    # Asked before a hedge is sent to a group (and deployment, when one is chosen): may the
    # call take its capacity and budget?
    admit_hedge: Callable[[str, str | None], Awaitable[bool]] | None = None


@dataclass(slots=True)
class Outcome:
    """What answered: the litellm response (or stream and its first chunk) and the attempts."""

    response: Any
    deployment: Deployment
    group: str
    attempts: list[Attempt]
    first_chunk: Any = None
    started: float = 0.0                # monotonic time the answering attempt started
    first_chunk_at: float | None = None
    hedged: bool = False
    exchange_ms: float | None = None    # a race's: provider exchanges in flight, end to end

    def overhead_ms(self, total_ms: float) -> float:
        """``total_ms`` minus the time a provider HTTP exchange was in flight (failed ones
        included): what the adapter itself added. Sequential attempts add up; a hedge race's
        legs overlap, so the race measures its own span."""
        exchange = self.exchange_ms if self.exchange_ms is not None else \
            sum(a.latency_ms or 0.0 for a in self.attempts if a.outcome != "skipped")
        return max(total_ms - exchange, 0.0)


@dataclass(slots=True)
class Walk:
    """What a walk (or one leg of a hedge race) tried: attempts, errors, Retry-After waits."""

    attempts: list[Attempt] = field(default_factory=list)
    failures: list[errors.ProviderError] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    live: Tries | None = None       # the router call in flight: which deployment it is on

    def in_flight(self) -> str | None:
        """The deployment the router call in flight was sent to, once litellm sent it."""
        tries = self.live.tries if self.live is not None else ()
        return tries[-1][0] if tries and tries[-1][2] is None else None


class GroupFailed(Exception):
    """A group's router call failed; ``tried``: groups a hedge race tried along with it."""

    def __init__(self, failure: Failure, error: errors.ProviderError, group: str) -> None:
        super().__init__(str(error))
        self.failure = failure
        self.error = error
        self.group = group
        self.tried: tuple[str, ...] = ()
