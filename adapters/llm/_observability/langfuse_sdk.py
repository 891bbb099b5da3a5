"""The one place the adapter reaches into the Langfuse SDK beyond its documented client.

The prompt registry talks to Langfuse's public REST API through the SDK's generated client
(``langfuse.api``), and the span builder borrows the SDK's own span logic so generations look
exactly as the SDK would make them. Both are internals that move between minor versions: they
are reached only from here, and ``tests/test_langfuse_contract.py`` checks each against the
installed SDK.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .credentials import Credentials

__all__ = ["SdkInternals", "api_client", "api_error", "internals", "prompt_request",
           "sdk_version"]


def sdk_version() -> str:
    """The installed SDK's version, as its own requests announce it."""
    import langfuse

    return str(langfuse.__version__)


def api_client(credentials: Credentials, *, timeout: float) -> Any:
    """The SDK's generated REST client for ``credentials``, with its own HTTP client."""
    import httpx
    from langfuse.api.client import LangfuseAPI

    c = credentials
    return LangfuseAPI(base_url=c.base_url, username=c.public_key, password=c.secret_key,
                       x_langfuse_sdk_name="python", x_langfuse_sdk_version=sdk_version(),
                       x_langfuse_public_key=c.public_key,
                       httpx_client=httpx.Client(timeout=timeout))


def prompt_request(kind: str, prompt: Any, **common: Any) -> Any:
    """The body creating a prompt version: a chat prompt (``kind == "chat"``) or a text one."""
    from langfuse.api.prompts.types import (CreateChatPromptRequest, CreateChatPromptType,
                                            CreateTextPromptRequest)

    if kind == "chat":
        return CreateChatPromptRequest(prompt=prompt, type=CreateChatPromptType.CHAT, **common)
    return CreateTextPromptRequest(prompt=prompt, **common)


def api_error() -> Any:
    """The class the generated client raises for an HTTP error status (``status_code``,
    ``body``)."""
    from langfuse.api.core.api_error import ApiError

    return ApiError


@dataclass(frozen=True)
class SdkInternals:
    """The SDK's span logic the span builder borrows, so a generation is what the SDK makes."""

    attributes: ModuleType              # langfuse._client.attributes: the attribute functions
    propagation: ModuleType             # langfuse._client.propagation: propagated attributes
    span_processor: type                # LangfuseSpanProcessor: its on_start/on_end logic
    is_default_export_span: Any         # the processor's default export filter
    reserved_observation_keys: Any      # attribute keys the SDK keeps room for on a span
    tracer_name: str                    # the instrumentation scope's name


@cache
def internals() -> SdkInternals:
    """The installed SDK's internals (imported on first use)."""
    from langfuse._client import attributes, propagation
    from langfuse._client.constants import LANGFUSE_TRACER_NAME
    from langfuse._client.span import _RESERVED_OBSERVATION_ATTRIBUTE_KEYS
    from langfuse._client.span_filter import is_default_export_span
    from langfuse._client.span_processor import LangfuseSpanProcessor

    return SdkInternals(attributes=attributes, propagation=propagation,
                        span_processor=LangfuseSpanProcessor,
                        is_default_export_span=is_default_export_span,
                        reserved_observation_keys=_RESERVED_OBSERVATION_ATTRIBUTE_KEYS,
                        tracer_name=LANGFUSE_TRACER_NAME)
