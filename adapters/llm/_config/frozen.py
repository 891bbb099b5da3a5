"""Read-only mappings for the frozen configuration objects."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, NoReturn

__all__ = ["FrozenDict", "empty", "freeze"]


class FrozenDict(dict[str, Any]):
    """A read-only dict: frozen dataclasses should not be changeable through their mappings.

    A dict subclass (not ``MappingProxyType``) so LiteLLM's ``isinstance(x, dict)`` checks,
    ``json.dumps`` and ``copy.deepcopy`` (which yields a plain, mutable dict) all work.
    """

    def _readonly(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("configuration mappings are read-only; copy with dict(...) to change")

    __setitem__ = __delitem__ = __ior__ = _readonly
    clear = pop = popitem = setdefault = update = _readonly

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v, memo) for k, v in self.items()}

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(self),))


def freeze(value: Any) -> Any:
    """``value`` with every mapping inside it made a FrozenDict."""
    if isinstance(value, Mapping):
        return FrozenDict({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return [freeze(v) for v in value]
    return value


def empty() -> FrozenDict:
    return FrozenDict()
