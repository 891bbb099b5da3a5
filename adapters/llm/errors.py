"""The exceptions llm-adapter raises.

Every error a caller can see is an ``LLMAdapterError``. The tree says who has to act:

    LLMAdapterError
    ├── ConfigError              the configuration is wrong: names file, key path, problem, fix
    ├── UsageError               the caller misused the API (bad argument, missing prompt
    │                            variable, 400 from the provider, a request litellm could not
    │                            build, an adapter used in a child forked after it made
    │                            calls): nothing sent, never retried, no cooldown
    ├── BudgetExceeded           a budget would be crossed: scope, spent, limit
    ├── RateLimited              no capacity now: ``retry_after`` seconds
    ├── BackendUnavailable       the shared counters (Redis) cannot be reached: start Redis, fix
    │                            REDIS_URL, or run without budgets; nothing was sent
    └── ProviderError            one provider attempt failed (status, deployment, latency)
        ├── AuthenticationError    a key is missing or refused: names its env var, never its value
        ├── ContextWindowExceeded  the input does not fit the model and no larger one is configured
        ├── DeadlineExceeded       the call's one deadline passed (retries and fallbacks included)
        └── AllProvidersFailed     every attempt failed; ``attempts`` and ``exceptions`` in order

``AllProvidersFailed`` is also an ``ExceptionGroup`` of the provider errors, so
``except* AuthenticationError`` works on it.

One warning, not an error: ``ProxyKeyWarning`` (a ``UserWarning``) when a LiteLLM proxy
``config.yaml`` holds keys only the proxy server reads; the file loads, and the warning names
them (never their values).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._observability.records import Attempt

__all__ = [
    "AllProvidersFailed",
    "AuthenticationError",
    "BackendUnavailable",
    "BudgetExceeded",
    "ConfigError",
    "ContextWindowExceeded",
    "DeadlineExceeded",
    "LLMAdapterError",
    "ProviderError",
    "ProxyKeyWarning",
    "RateLimited",
    "UsageError",
]


class LLMAdapterError(Exception):
    """Base of every error raised by llm-adapter."""


class ConfigError(LLMAdapterError):
    """The configuration cannot be used.

    The message always says where (file and key path), what is wrong and how to fix it.
    """

    def __init__(self, problem: str, *, path: str | None = None, key: str | None = None,
                 fix: str | None = None) -> None:
        self.problem = problem
        self.path = path
        self.key = key
        self.fix = fix
        where = ": ".join(p for p in (path, key) if p)
        text = f"{where}: {problem}" if where else problem
        if fix:
            text += f" ({fix})"
        super().__init__(text)


class UsageError(LLMAdapterError, ValueError):
    """The call itself is wrong; retrying it or falling back cannot help."""


class BudgetExceeded(LLMAdapterError):
    """Sending the call would cross a budget; nothing was sent."""

    def __init__(self, message: str, *, scope: str, spent: float, limit: float,
                 resets_at: str | None = None) -> None:
        super().__init__(message)
        self.scope = scope
        self.spent = spent
        self.limit = limit
        self.resets_at = resets_at


class RateLimited(LLMAdapterError):
    """No deployment has capacity now; try again after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BackendUnavailable(LLMAdapterError):
    """The shared counter store (Redis) cannot be reached; the call was not sent.

    Raised before a budgeted call when its budgets cannot be checked (budgets fail closed unless
    ``budgets.fail_open``), never after an answer: spend that could not be settled is kept and
    added when Redis answers again. ``maybe_applied``: the command timed out, so Redis may have
    run it anyway.
    """

    def __init__(self, message: str, *, maybe_applied: bool = False) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


class ProviderError(LLMAdapterError):
    """One attempt against one deployment failed."""

    def __init__(self, message: str, *, status: int | None = None, deployment: str | None = None,
                 model_group: str | None = None, latency_ms: float | None = None,
                 kind: str | None = None, attempts: Sequence[Attempt] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.deployment = deployment
        self.model_group = model_group
        self.latency_ms = latency_ms
        self.kind = kind
        self.attempts: tuple[Attempt, ...] = tuple(attempts)


class AuthenticationError(ProviderError):
    """A provider key is missing or was refused. ``env_var`` names what would fix it."""

    def __init__(self, message: str, *, env_var: str | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.env_var = env_var


class ContextWindowExceeded(ProviderError, UsageError):
    """The input is longer than the model accepts and no ``context_window_fallbacks`` applied."""


class DeadlineExceeded(ProviderError, TimeoutError):
    """The whole call, retries and fallbacks included, ran past its ``timeout``."""


class AllProvidersFailed(ProviderError, ExceptionGroup):  # type: ignore[misc]
    """Every deployment tried failed. ``attempts`` lists them in the order they ran."""

    def __new__(cls, message: str, exceptions: Sequence[Exception], **kw: object
                ) -> AllProvidersFailed:
        return super().__new__(cls, message, list(exceptions) or [ProviderError(message)])

    def __init__(self, message: str, exceptions: Sequence[Exception], **kw: object) -> None:
        ProviderError.__init__(self, message, **kw)  # type: ignore[arg-type]

    def derive(self, excs: Sequence[Exception]) -> AllProvidersFailed:  # type: ignore[override]
        return AllProvidersFailed(self.args[0], excs, attempts=self.attempts)

    def __str__(self) -> str:
        return str(self.args[0])


class ProxyKeyWarning(UserWarning):
    """The config has keys only a LiteLLM proxy server reads (``general_settings``, the
    proxy's callbacks and budgets): the file loads, and those keys are not used."""
