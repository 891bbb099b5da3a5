"""Keeping secrets out of messages: every text the adapter shows passes through ``redact``."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Shapes of provider and Langfuse keys and bearer tokens, for secrets the config did not name.
_SECRET_SHAPES = re.compile(
    r"(?:sk|pk|rk)-[A-Za-z0-9_\-]{8,}"          # OpenAI, Anthropic (sk-ant-...), Langfuse (sk-lf-/pk-lf-)
    r"|AIza[0-9A-Za-z_\-]{20,}"                  # Google API keys
    r"|(?i:bearer)\s+[A-Za-z0-9._\-]{8,}"        # Authorization: Bearer ...
    r"|(?i:(?:api[_-]?key|x-api-key|x-goog-api-key|key)=)[^&\s\"']+"
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret value and every key-shaped token replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return _SECRET_SHAPES.sub("***", text)
