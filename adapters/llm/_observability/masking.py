"""Masking: secrets always, patient data (PII/PHI) when configured, before data leaves the process.

Configured by the ``masking:`` section (top level, overridable per environment)::

    masking:
      enabled: true                 # default: true in production, false elsewhere
      detectors: [email, phone, ssn, dob, mrn]      # default: all of them
      patterns:                     # your own, applied after the detectors
        - {name: patient_id, regex: "PT-\\d{6}", replacement: "[PATIENT_ID]"}
      function: mypackage.privacy:redact            # optional callable(text) -> text
      store: true                   # mask the local store too (default true)
      pseudonym_key: ${LLM_ADAPTER_PSEUDONYM_KEY}   # see _pseudonyms.py for the default

API keys and bearer tokens are masked whatever the setting: the config's key values by value,
anything key-shaped by pattern. Identifiers (user, session, tags, agent, stage, trace name) are
not rewritten in part: one that a detector (or pattern, or function) would change becomes a stable
pseudonym, so what is grouped by it still groups.
"""

from __future__ import annotations

import pkgutil
import re
import secrets as secrets_module
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .pseudonyms import pseudonym
from .redact import ordered_secrets, redact_ordered
from ..errors import ConfigError

if TYPE_CHECKING:
    from .._config.settings import MaskingSettings

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
_IDENTIFIERS_KEPT = 4096        # identifiers a masker remembers the masked form of


@dataclass(frozen=True)
class Masker:
    """Masks text and JSON-like values (dicts, lists, strings) recursively, and identifiers."""

    rules: tuple[tuple[str, re.Pattern[str], str], ...] = ()     # (kind, pattern, replacement)
    function: Callable[[str], str] | None = None
    secrets: tuple[str, ...] = field(default=(), repr=False)
    mask_store: bool = True
    enabled: bool = False
    pseudonym_key: bytes = field(default=b"", repr=False)
    # Worked out once per masker, not per string: the secrets in the order ``redact`` wants,
    # and the identifiers seen lately (users, sessions, tags recur on every call; each costs
    # the detectors and, for a pseudonym, an HMAC).
    _ordered: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)
    _identifiers: Callable[[str], str] = field(default=str, init=False, repr=False,
                                               compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ordered", ordered_secrets(self.secrets))
        object.__setattr__(self, "_identifiers",
                           lru_cache(maxsize=_IDENTIFIERS_KEPT)(self._identifier))

    def text(self, value: str) -> str:
        out = redact_ordered(value, self._ordered)
        if not self.enabled:
            return out
        for _, pattern, replacement in self.rules:
            out = pattern.sub(replacement, out)
        if self.function is not None:
            out = self.function(out)
        return out

    def identifier(self, value: str) -> str:
        """``value`` if nothing in it needs masking, else its pseudonym (when masking is on;
        off, only secrets are taken out)."""
        return self._identifiers(value)

    def _identifier(self, value: str) -> str:
        if not self.enabled:
            return redact_ordered(value, self._ordered)
        kind = self._finding(value)
        return value if kind is None else pseudonym(self.pseudonym_key, kind, value)

    def _finding(self, value: str) -> str | None:
        """What kind of thing masking would take out of ``value``, if anything."""
        if redact_ordered(value, self._ordered) != value:
            return "secret"
        for kind, pattern, _ in self.rules:
            if pattern.search(value):
                return kind
        if self.function is not None and self.function(value) != value:
            return "masked"
        return None

    def __call__(self, value: Any) -> Any:
        """``value`` masked; a dict or list in which nothing changed is returned itself (most
        records have nothing to mask: copying them per call was most of masking's cost)."""
        if isinstance(value, str):
            return self.text(value)
        if type(value) is dict:
            changed: dict[Any, Any] | None = None
            for key, item in value.items():
                masked = self(item)
                if masked is not item:
                    if changed is None:
                        changed = dict(value)
                    changed[key] = masked
            return value if changed is None else changed
        if type(value) is list:
            items = [self(v) for v in value]
            return value if all(m is v for m, v in zip(items, value)) else items
        if isinstance(value, Mapping):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self(v) for v in value]
        return value


def masker_from_config(settings: MaskingSettings | None, *, environment: str,
                       secrets: Iterable[str] = (), source: str | None = None,
                       pseudonym_key: Callable[[], bytes] | None = None) -> Masker:
    """The masker for an environment's ``masking`` settings (checked at load; see the module
    docstring). ``pseudonym_key`` is asked for the key only when masking is on."""
    from .._config.settings import MaskingSettings

    settings = settings or MaskingSettings()
    enabled = settings.enabled if settings.enabled is not None else environment == "production"
    wanted = settings.detectors if settings.detectors is not None else DETECTORS
    rules = [(name, re.compile(p), r) for name, p, r in _DETECTORS if name in wanted]
    for entry in settings.patterns:
        name = entry.name or "redacted"
        rules.append((_kind(name), re.compile(entry.regex),
                      entry.replacement if entry.replacement is not None
                      else f"[{name.upper()}]"))
    hmac_key = b""
    if enabled:     # a caller that names no key source gets one for this process only
        hmac_key = pseudonym_key() if pseudonym_key is not None else \
            secrets_module.token_bytes(32)
    return Masker(rules=tuple(rules), function=_load_function(settings.function, source),
                  secrets=tuple(s for s in secrets if s), mask_store=settings.store,
                  enabled=enabled, pseudonym_key=hmac_key)


def _kind(name: str) -> str:
    """A pattern's name as a pseudonym's prefix: lower case, letters, digits and ``_``."""
    return re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_") or "redacted"


def _load_function(spec: Any, source: str | None) -> Callable[[str], str] | None:
    if spec is None:
        return None
    if not isinstance(spec, str) or ":" not in spec:
        raise ConfigError(f"function must be 'module:callable', not {spec!r}", path=source,
                          key="masking.function")
    try:
        function = pkgutil.resolve_name(spec)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"cannot load {spec!r}: {exc}", path=source, key="masking.function",
                          fix="check the module is importable and defines that callable") from None
    if not callable(function):
        raise ConfigError(f"{spec!r} is not callable", path=source, key="masking.function")
    return function  # type: ignore[no-any-return]
