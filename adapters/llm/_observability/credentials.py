"""Langfuse's keys and base URL, read from the environment, and the headers they make."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["DEFAULT_BASE_URL", "Credentials", "langfuse_credentials"]

DEFAULT_BASE_URL = "https://cloud.langfuse.com"


@dataclass(frozen=True)
class Credentials:
    public_key: str
    secret_key: str
    base_url: str

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/api/public/otel/v1/traces"

    def headers(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.public_key}:{self.secret_key}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}", "x-langfuse-public-key": self.public_key,
                "x-langfuse-sdk-name": "python", "x-langfuse-ingestion-version": "4"}


def langfuse_credentials(env: Mapping[str, str] | None = None) -> Credentials | None:
    """Keys and base URL from the environment (``LANGFUSE_BASE_URL``, ``LANGFUSE_HOST`` too)."""
    env = os.environ if env is None else env
    public, secret = env.get("LANGFUSE_PUBLIC_KEY"), env.get("LANGFUSE_SECRET_KEY")
    if not public or not secret:
        return None
    base = env.get("LANGFUSE_BASE_URL") or env.get("LANGFUSE_HOST") or DEFAULT_BASE_URL
    return Credentials(public, secret, base.rstrip("/"))
