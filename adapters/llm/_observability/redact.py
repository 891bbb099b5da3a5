"""Keeping secrets out of messages: every text the adapter shows passes through ``redact``, and
every excerpt of provider text through ``clip`` (redact, then cut).

The order matters: cutting first can leave all but the last characters of a key, which neither
its value nor its shape matches any more.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from .._config.schema import is_secret_key

if TYPE_CHECKING:
    from .._config.loader import Config

__all__ = ["MESSAGE_LIMIT", "clip", "config_secrets", "ordered_secrets", "redact", "redact_ordered"]

MESSAGE_LIMIT = 300                 # characters of provider error text kept in a message

# Shapes of provider and Langfuse keys and bearer tokens, for secrets the config did not name.
_SECRET_SHAPES = re.compile(
    r"(?:sk|pk|rk)-[A-Za-z0-9_\-]{8,}"          # OpenAI, Anthropic (sk-ant-), Langfuse (sk-lf-)
    r"|AIza[0-9A-Za-z_\-]{20,}"                  # Google API keys
    r"|(?i:bearer)\s+[A-Za-z0-9._\-]{8,}"        # Authorization: Bearer ...
    r"|(?i:(?:api[_-]?key|x-api-key|x-goog-api-key|key)=)[^&\s\"']+"
)
_URL_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s]*@", re.I)

# Environment variables holding secrets the adapter itself uses.
_SECRET_ENV = ("LANGFUSE_SECRET_KEY", "REDIS_PASSWORD", "LLM_ADAPTER_PSEUDONYM_KEY")
_URL_ENV = ("REDIS_URL",)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret value and every key-shaped token replaced by ``***``."""
    return redact_ordered(text, ordered_secrets(secrets))


def ordered_secrets(secrets: Iterable[str]) -> tuple[str, ...]:
    """``secrets`` as ``redact_ordered`` takes them: once each, long enough to be one, longest
    first (a longer one may hold a shorter)."""
    return tuple(sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True))


def redact_ordered(text: str, ordered: tuple[str, ...]) -> str:
    """``redact`` for secrets already put in order (``ordered_secrets``): what a masker that
    redacts every string of every record does, without sorting them per string."""
    for secret in ordered:
        if secret in text:
            text = text.replace(secret, "***")
    return _SECRET_SHAPES.sub("***", text) if _may_hold_shape(text) else text


def _may_hold_shape(text: str) -> bool:
    """Whether ``text`` holds what every match of ``_SECRET_SHAPES`` holds (``k-``, ``AIza``,
    ``bearer``, ``key=``): a few substring tests instead of the pattern tried at every
    character, 3 us for a line of text, paid for every string of every record."""
    if "k-" in text or "AIza" in text:
        return True
    lowered = text.lower()
    return "bearer" in lowered or "key=" in lowered


def clip(text: str, secrets: Iterable[str] = (), limit: int = MESSAGE_LIMIT) -> str:
    """``text`` redacted, then cut to ``limit`` characters (never the other way round)."""
    safe = redact(text, secrets)
    return safe if len(safe) <= limit else safe[:limit - 1] + "…"


def config_secrets(config: Config, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Every secret a config and the environment give the adapter, by value: provider keys
    (after interpolation), passwords and tokens anywhere in the settings, passwords in URLs
    (``REDIS_URL``, ``router_settings.redis_url``), the Langfuse secret key, the pseudonym key."""
    env = os.environ if env is None else env
    found: list[str] = []
    for d in config.deployments:
        _collect(d.litellm_params, None, found)
    _collect(config.router_settings.as_dict(), None, found)
    _collect(config.sections, None, found)
    _collect(config.profile.extra, None, found)
    for name in _SECRET_ENV:
        found.append(env.get(name) or "")
    for name in _URL_ENV:
        found.extend(_url_passwords(env.get(name) or ""))
    return tuple(dict.fromkeys(s for s in found if s))


def _collect(value: Any, name: object, found: list[str]) -> None:
    if isinstance(value, Mapping):
        for key, child in value.items():
            _collect(child, key, found)
    elif isinstance(value, (list, tuple)):
        for child in value:
            _collect(child, name, found)
    elif isinstance(value, str):
        if name is not None and is_secret_key(name):
            found.append(value)
        found.extend(_url_passwords(value))


def _url_passwords(text: str) -> list[str]:
    """The passwords of the URLs in ``text``, as written and decoded."""
    out: list[str] = []
    for match in _URL_PASSWORD.finditer(text):
        try:
            password = urlsplit(match.group(0)).password
        except ValueError:
            continue
        if password:
            out.extend((password, unquote(password)))
    return out
