"""The one place the adapter reaches into the Langfuse SDK beyond its documented client.

The prompt registry talks to Langfuse's public REST API through the SDK's generated client
(``langfuse.api``), and the span builder borrows the SDK's own span logic so generations look
exactly as the SDK would make them. Both are internals that move between minor versions: they
are reached only from here, and ``tests/test_langfuse_contract.py`` checks each against the
installed SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .credentials import Credentials

__all__ = ["api_client", "api_error", "prompt_request", "sdk_version"]


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
