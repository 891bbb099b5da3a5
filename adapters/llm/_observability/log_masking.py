"""Masking litellm's own log records, which at DEBUG print whole requests and provider errors.

litellm's own redaction is by shape only and sits on its handler, so a key without a known
prefix, patient data, and every record that reaches the application's handlers through
propagation pass it untouched. This filter sits on the loggers themselves (a logger's filters
run before any handler, whoever owns it) and applies the maskers of the configs in use: their
secrets always, patient data where their masking is on. It is attached once per process, when
the first telemetry is built (importing the package changes no logger).
"""

from __future__ import annotations

import logging
import threading
from functools import cache

from .masking import Masker

__all__ = ["LOGGERS", "LogMasking", "log_masking"]

# litellm's loggers (litellm/_logging.py: verbose_logger, verbose_router_logger,
# verbose_proxy_logger and its "stdout" child) and this package's own.
LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "LiteLLM Proxy.stdout", "adapters.llm")

# Attributes every LogRecord has: the rest came from ``extra=`` and are masked too.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}


class LogMasking(logging.Filter):
    """Rewrites a record's message, exception text, stack and extra strings through the maskers."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._maskers: tuple[Masker, ...] = ()
        self._formatter = logging.Formatter()

    def add(self, masker: Masker) -> None:
        """Apply ``masker`` too (each distinct one once)."""
        with self._lock:
            if masker not in self._maskers:
                self._maskers = (*self._maskers, masker)

    def filter(self, record: logging.LogRecord) -> bool:
        maskers = self._maskers
        if not maskers:
            return True

        def mask(text: str) -> str:
            for masker in maskers:
                text = masker.text(text)
            return text

        try:
            message = record.getMessage()
        except (TypeError, ValueError):     # arguments that do not fit: shown as given
            message = str(record.msg)
        record.msg, record.args = mask(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        for name, value in list(record.__dict__.items()):
            if name not in _STANDARD and isinstance(value, str):
                setattr(record, name, mask(value))
        return True


@cache
def log_masking() -> LogMasking:
    """The process's filter, attached to ``LOGGERS`` the first time it is asked for."""
    masking = LogMasking()
    for name in LOGGERS:
        logging.getLogger(name).addFilter(masking)
    return masking
