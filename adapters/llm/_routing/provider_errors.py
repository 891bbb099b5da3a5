"""Reading litellm's exceptions: what kind of failure, which status, how long to wait.

litellm maps every provider's errors onto OpenAI-style exception classes; this module turns
them into the few kinds the routing walk decides on, and into this package's error tree.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .. import errors
from .litellm import error_text_kind, exceptions, is_router_cooldown
from .._observability.redact import clip

# What the walk does after a failure of this kind.
NEXT_GROUP = "next"            # try the next group in the fallback chain
STOP = "stop"                  # the request itself is wrong: no fallback can help
CONTEXT_WINDOW = "context"     # go to context_window_fallbacks, if any
LOCAL = "local"                # litellm refused the request before sending it: a caller error

@dataclass(frozen=True, slots=True)
class Failure:
    kind: str                   # short name shown to users, e.g. "unavailable", "rate_limit"
    status: int | None
    retry_after: float | None
    action: str
    message: str                # the provider's words, secrets out, then cut to a line


def classify(exc: BaseException, secrets: Iterable[str] = ()) -> Failure:
    """The kind, status and next step for an exception raised by a litellm call; ``secrets``
    (the config's, by value) are taken out of its message before it is cut to length."""
    ex = exceptions()
    status = _status(exc)
    retry_after = _retry_after(exc)
    message = clip(_first_line(exc), secrets)
    table: tuple[tuple[type[BaseException], str, str], ...] = (
        (ex.ContextWindowExceededError, "context_window", CONTEXT_WINDOW),
        (ex.ContentPolicyViolationError, "content_policy", NEXT_GROUP),
        (ex.AuthenticationError, "authentication", NEXT_GROUP),
        (ex.PermissionDeniedError, "permission_denied", NEXT_GROUP),
        (ex.NotFoundError, "not_found", NEXT_GROUP),
        (ex.BadRequestError, "bad_request", STOP),
        (ex.UnprocessableEntityError, "bad_request", STOP),
        (ex.RateLimitError, "rate_limit", NEXT_GROUP),
        (ex.Timeout, "timeout", NEXT_GROUP),
        (ex.ServiceUnavailableError, "unavailable", NEXT_GROUP),
        (ex.BadGatewayError, "bad_gateway", NEXT_GROUP),
        (ex.InternalServerError, "server_error", NEXT_GROUP),
        (ex.APIResponseValidationError, "malformed_response", NEXT_GROUP),
    )
    said = error_text_kind(message)
    if isinstance(exc, ex.APIConnectionError) or said == "connection":
        # litellm reports a dropped connection as a 500 with an invented response.
        return Failure("connection", None, None, NEXT_GROUP, message)
    if said == "malformed_response":
        # ... and an unparseable 200 body as a 500 too.
        return Failure("malformed_response", None, None, NEXT_GROUP, message)
    if is_router_cooldown(exc):
        return Failure("cooldown", None, _cooldown_left(exc), NEXT_GROUP, message)
    for cls, kind, action in table:
        if isinstance(exc, cls):
            if kind == "server_error" and status is not None and status >= 500 and status != 500:
                kind = {502: "bad_gateway", 503: "unavailable", 504: "timeout"}.get(status, kind)
            return Failure(kind, status, retry_after, action, message)
    if isinstance(exc, ex.APIError):
        kind = "malformed_response" if status in (None, 200) else "api_error"
        return Failure(kind, status, retry_after, NEXT_GROUP, message)
    if isinstance(exc, (TimeoutError,)):
        return Failure("timeout", None, None, NEXT_GROUP, message)
    return Failure(type(exc).__name__, status, retry_after, NEXT_GROUP, message)


def raised_locally(exc: BaseException, *, responded: bool) -> bool:
    """Whether litellm failed to build or encode the request, so nothing reached the provider.

    litellm wraps such a failure (a ``TypeError`` in its request transformation, a
    ``UnicodeEncodeError`` while encoding the body) in the same classes as a provider's 500 or a
    lost connection. The cause chain tells them apart: a request that went out fails through
    the HTTP stack (an ``OSError``, an httpx, aiohttp or openai error somewhere in the chain),
    one that came back was seen by the attempt logger (``responded``). What is left, a plain
    Python error at the root of the chain, was raised in this process.
    """
    import aiohttp
    import httpx
    import openai

    if isinstance(exc, exceptions().UnsupportedParamsError):
        return True
    if responded:
        return False
    chain = _causes(exc)
    sent = (OSError, httpx.HTTPError, aiohttp.ClientError, openai.APIError)
    # litellm's own classes derive from openai's; a retry's error is chained to the first one.
    if len(chain) < 2 or any(isinstance(e, sent) and not _from_litellm(e) for e in chain):
        return False
    root = chain[-1]
    # litellm's own request validation raises a bare Exception; no HTTP library does.
    return type(root) is Exception or \
        isinstance(root, _LOCAL_ROOTS) and not isinstance(root, _RECEIVED_ROOTS)


def local_failure(exc: BaseException, secrets: Iterable[str] = ()) -> Failure:
    """A request litellm could not send: what it refused, and what to check."""
    root = _causes(exc)[-1]
    return Failure("invalid_request", None, None, LOCAL,
                   f"litellm could not build the request and sent nothing "
                   f"({type(root).__name__}: {clip(_first_line(root), secrets)}); check the "
                   "messages, response_format and extra arguments passed to generate() "
                   "(content types, parameters the provider does not take)")


def _from_litellm(exc: BaseException) -> bool:
    return type(exc).__module__.partition(".")[0] == "litellm"


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain) and len(chain) < 20:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


# Roots of a failure raised while building a request; a body that came back unparseable fails
# with the second (when the attempt logger did not see the response first).
_LOCAL_ROOTS = (TypeError, ValueError, KeyError, AttributeError, IndexError)
_RECEIVED_ROOTS = (json.JSONDecodeError,)


def to_error(failure: Failure, *, message: str, deployment: str | None, group: str | None,
             latency_ms: float | None, env_var: str | None = None) -> errors.ProviderError:
    """The package error for one failed attempt."""
    common: dict[str, Any] = dict(status=failure.status, deployment=deployment, model_group=group,
                                  latency_ms=latency_ms, kind=failure.kind)
    if failure.kind in ("authentication", "permission_denied"):
        return errors.AuthenticationError(message, env_var=env_var, **common)
    if failure.kind == "context_window":
        return errors.ContextWindowExceeded(message, **common)
    return errors.ProviderError(message, **common)


def _cooldown_left(exc: BaseException) -> float | None:
    value = getattr(exc, "cooldown_time", None)
    return float(value) if isinstance(value, (int, float)) else None


def _status(exc: BaseException) -> int | None:
    """The HTTP status the provider sent (litellm's class may carry a generic one)."""
    code = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(code, int) and code >= 400:
        return code
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _retry_after(exc: BaseException) -> float | None:
    # litellm keeps the provider's headers here for every provider; ``response`` only for OpenAI.
    headers = getattr(exc, "litellm_response_headers", None) or \
        getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        return None
    try:
        value = headers.get("retry-after")
    except AttributeError:
        return None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip() or type(exc).__name__
    return text.splitlines()[0]
