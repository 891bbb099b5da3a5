"""A call record as plain values and back: what the recording process's pipe and the store's
journal carry.

Plain values (lists of field values, the usage and attempts as theirs) are what the C pickler
writes without calling back into Python for each object: pickle's default for a slotted
dataclass names every field and builds its state in Python, ~2.5 times the cost on the calling
path. ``SHAPE`` names the fields in the order the values hold them; values written by a version
whose fields differ are read back by name (``record_of(values, shape)``).
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any

from .records import Attempt, CallRecord, Usage

__all__ = ["SHAPE", "plain_values", "record_of"]


def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


SHAPE = (_names(CallRecord), _names(Usage), _names(Attempt))
_RECORD = operator.attrgetter(*SHAPE[0])
_USAGE = operator.attrgetter(*SHAPE[1])
_ATTEMPT = operator.attrgetter(*SHAPE[2])
_AT_USAGE = SHAPE[0].index("usage")
_AT_ATTEMPTS = SHAPE[0].index("attempts")


def plain_values(record: CallRecord) -> list[Any]:
    """``record``'s field values in ``SHAPE``'s order, its usage and attempts as theirs."""
    values = list(_RECORD(record))
    values[_AT_USAGE] = _USAGE(values[_AT_USAGE])
    values[_AT_ATTEMPTS] = [_ATTEMPT(a) for a in values[_AT_ATTEMPTS]]
    return values


def record_of(values: list[Any], shape: Any = SHAPE) -> CallRecord:
    """The record ``plain_values`` gave ``values`` for, written with fields ``shape``; a field
    this version does not know is left out, one the writer did not know takes its default."""
    if shape == SHAPE:
        values[_AT_USAGE] = Usage(*values[_AT_USAGE])
        values[_AT_ATTEMPTS] = [Attempt(*a) for a in values[_AT_ATTEMPTS]]
        return CallRecord(*values)
    record_names, usage_names, attempt_names = shape
    fields = _known(CallRecord, record_names, values)
    fields["usage"] = Usage(**_known(Usage, usage_names, fields.get("usage") or ()))
    fields["attempts"] = [Attempt(**_known(Attempt, attempt_names, a))
                          for a in fields.get("attempts") or ()]
    fields["tags"] = tuple(fields.get("tags") or ())
    return CallRecord(**fields)


def _known(cls: type, names: Any, values: Any) -> dict[str, Any]:
    known = set(_names(cls))
    return {name: value for name, value in zip(names, values) if name in known}
