"""One grammar for a duration, in the config (alert windows) and on the command line
(``--since 7d``): a number and a unit, ``ms s m h d w`` (``min`` for minutes too), so ``30s``,
``1.5h`` and ``2w`` mean the same wherever they are written."""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Final

__all__ = ["EXAMPLES", "UNITS", "parse_duration"]

UNITS: Final = MappingProxyType({"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0,
                                 "d": 86400.0, "w": 604800.0})
_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*(ms|min|[smhdw])")
EXAMPLES: Final = "500ms, 30s, 15m, 24h, 7d or 2w"


def parse_duration(text: str) -> float:
    """Seconds in ``text`` (``15m`` → 900.0); ``ValueError`` saying how to write one."""
    found = _DURATION.fullmatch(text.strip().lower()) if isinstance(text, str) else None
    if found is None:
        raise ValueError(f"{text!r} is not a duration: write a number and a unit (ms, s, m, h, "
                         f"d or w), such as {EXAMPLES}")
    return float(found[1]) * UNITS[found[2]]
