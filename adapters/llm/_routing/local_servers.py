"""Model servers on this machine (Ollama), and what to say when one is not running.

A deployment served on this machine that refuses connections is simply not started. litellm
retries a connection error with backoff (about 2 s per call with one deployment, invisible in
the attempts) and never cools it down; for a local server neither helps. Such a group gets one
attempt per call, the refusal rests the deployment like any other failure, and the error says
how to start the server or go without it.
"""

from __future__ import annotations

from urllib.parse import urlparse

from .._config.loader import Deployment

__all__ = ["LOCAL_PROVIDERS", "is_local_server", "not_running_hint"]

LOCAL_PROVIDERS = frozenset({"ollama", "ollama_chat"})
_DEFAULT_BASE = "http://localhost:11434"        # litellm's, when api_base is not set
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})


def is_local_server(deployment: Deployment) -> bool:
    """An Ollama deployment whose server runs on this machine."""
    if deployment.provider not in LOCAL_PROVIDERS:
        return False
    host = urlparse(_api_base(deployment)).hostname or ""
    return host in _LOOPBACK or host.startswith("127.")


def not_running_hint(deployment: Deployment) -> str:
    return (f"{deployment.id}: nothing answers at {_api_base(deployment)}; start Ollama "
            "(`ollama serve`, then `ollama pull` the model) or run without it: "
            "ENVIRONMENT=simulation")


def _api_base(deployment: Deployment) -> str:
    return str(deployment.litellm_params.get("api_base") or _DEFAULT_BASE)
