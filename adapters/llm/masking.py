"""Masking: secrets always, patient data (PII/PHI) when configured, before data leaves the process.

Configured by the ``masking:`` section (top level, overridable per environment)::

    masking:
      enabled: true                 # default: true in production, false elsewhere
      detectors: [email, phone, ssn, dob, mrn]      # default: all of them
      patterns:                     # your own, applied after the detectors
        - {name: patient_id, regex: "PT-\\d{6}", replacement: "[PATIENT_ID]"}
      function: mypackage.privacy:redact            # optional callable(text) -> text
      store: true                   # mask the local store too (default true)

API keys and bearer tokens are masked whatever the setting: the config's key values by value,
anything key-shaped by pattern.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._redact import redact
from .errors import ConfigError

__all__ = ["DETECTORS", "Masker", "masker_from_config"]

# (name, pattern, replacement); order matters: SSNs before phone numbers, labelled ids first.
_DETECTORS: tuple[tuple[str, str, str], ...] = (
    ("ssn", r"\b\d{3}-\d{2}-\d{4}\b", "[SSN]"),
    ("mrn", r"(?i)\b(?:MRN|medical record (?:number|no\.?|#))\s*[:#]?\s*[A-Z0-9][A-Z0-9-]{3,}\b"
            r"|\bMRN-?\d{4,}\b", "[MRN]"),
    ("dob", r"(?i)\b(?:DOB|D\.O\.B\.|date of birth|born(?: on)?)\s*[:#]?\s*"
            r"(?:\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}|\d{4}-\d{2}-\d{2}|[A-Z][a-z]+\.? \d{1,2},? \d{4})",
     "[DOB]"),
    ("email", r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b", "[EMAIL]"),
    ("phone", r"(?<![\w-])(?:\+?1[\s.-]?)?(?:\(\d{3}\)|\d{3})[\s.-]?\d{3}[\s.-]?\d{4}(?![\w-])",
     "[PHONE]"),
)
DETECTORS: tuple[str, ...] = tuple(name for name, _, _ in _DETECTORS)


@dataclass(frozen=True)
class Masker:
    """Masks text and JSON-like values (dicts, lists, strings) recursively."""

    rules: tuple[tuple[re.Pattern[str], str], ...] = ()
    function: Callable[[str], str] | None = None
    secrets: tuple[str, ...] = ()
    mask_store: bool = True
    enabled: bool = False

    def text(self, value: str) -> str:
        out = redact(value, self.secrets)
        if not self.enabled:
            return out
        for pattern, replacement in self.rules:
            out = pattern.sub(replacement, out)
        if self.function is not None:
            out = self.function(out)
        return out

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self(v) for v in value]
        return value


def masker_from_config(settings: Mapping[str, Any] | None, *, environment: str,
                       secrets: Iterable[str] = (), source: str | None = None) -> Masker:
    """The masker for an environment's ``masking`` settings (see the module docstring)."""
    settings = dict(settings or {})
    where = "masking"
    unknown = set(settings) - {"enabled", "detectors", "patterns", "function", "store"}
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(sorted(unknown))}", path=source, key=where,
                          fix="use enabled, detectors, patterns, function, store")
    enabled = settings.get("enabled", environment == "production")
    if not isinstance(enabled, bool):
        raise ConfigError(f"enabled must be true or false, not {enabled!r}", path=source,
                          key=f"{where}.enabled")
    wanted = settings.get("detectors", list(DETECTORS))
    if not isinstance(wanted, list) or any(d not in DETECTORS for d in wanted):
        raise ConfigError(f"detectors must be a list drawn from {', '.join(DETECTORS)}; got "
                          f"{wanted!r}", path=source, key=f"{where}.detectors")
    rules = [(re.compile(p), r) for name, p, r in _DETECTORS if name in wanted]
    for i, entry in enumerate(settings.get("patterns") or []):
        key = f"{where}.patterns[{i}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("regex"), str):
            raise ConfigError("each pattern needs a 'regex' string", path=source, key=key,
                              fix='e.g. {name: patient_id, regex: "PT-\\\\d{6}", replacement: "[PATIENT_ID]"}')
        try:
            compiled = re.compile(entry["regex"])
        except re.error as exc:
            raise ConfigError(f"invalid regular expression: {exc}", path=source, key=key) from None
        label = str(entry.get("name") or "redacted").upper()
        rules.append((compiled, str(entry.get("replacement", f"[{label}]"))))
    return Masker(rules=tuple(rules), function=_load_function(settings.get("function"), source),
                  secrets=tuple(s for s in secrets if s), mask_store=bool(settings.get("store", True)),
                  enabled=enabled)


def _load_function(spec: Any, source: str | None) -> Callable[[str], str] | None:
    if spec is None:
        return None
    if not isinstance(spec, str) or ":" not in spec:
        raise ConfigError(f"function must be 'module:callable', not {spec!r}", path=source,
                          key="masking.function")
    module_name, _, attr = spec.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load {spec!r}: {exc}", path=source, key="masking.function",
                          fix="check the module is importable and defines that callable") from None
    if not callable(function):
        raise ConfigError(f"{spec!r} is not callable", path=source, key="masking.function")
    return function  # type: ignore[no-any-return]
