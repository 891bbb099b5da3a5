"""A/B tests of prompt versions: which labelled variant a caller gets, sticky per user or session.

Langfuse has no traffic splitting of its own (its recipe is ``random.choice`` between labels), so
the split is done here: the variant is a weighted choice from a bucket in [0, 1) that is the
sha256 of the experiment's name and the sticky key. The same user (or session) therefore always
gets the same variant, in every process, with no state to share; without a key the choice is
random. Weights are relative (50/50, 90/10, 1/1/2).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._config.settings import STICKY_BY
from ..errors import ConfigError

if TYPE_CHECKING:
    from .._config.settings import ExperimentSettings

__all__ = ["STICKY_BY", "Experiment", "bucket", "experiments_of", "parse_experiments"]



@dataclass(frozen=True)
class Experiment:
    """One prompt's split: ``variants`` maps a Langfuse label to its relative weight."""

    prompt: str
    variants: tuple[tuple[str, float], ...]
    sticky_by: str = "user_id"
    _bounds: tuple[tuple[float, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        total = sum(w for _, w in self.variants)
        bounds, running = [], 0.0
        for label, weight in self.variants:
            running += weight / total
            bounds.append((running, label))
        object.__setattr__(self, "_bounds", tuple(bounds))   # derived once: assign() is hot

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(label for label, _ in self.variants)

    @property
    def shares(self) -> dict[str, float]:
        """Each variant's expected share of traffic, 0..1."""
        total = sum(w for _, w in self.variants)
        return {label: w / total for label, w in self.variants}

    def assign(self, key: str | None) -> str:
        """The variant for ``key`` (always the same one), or a random one when key is None."""
        point = random.random() if key is None else bucket(self.prompt, key)
        for bound, label in self._bounds:
            if point < bound:
                return label
        return self._bounds[-1][1]                 # rounding: the sum of shares may be 0.999...


def bucket(experiment: str, key: str) -> float:
    """A point in [0, 1) fixed by the experiment and the key, uniform over keys."""
    digest = hashlib.sha256(f"{experiment}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def parse_experiments(raw: Any, *, path: str | None = None,
                      key: str = "prompts.experiments") -> dict[str, Experiment]:
    """``{prompt: {variants: {label: weight}, sticky_by: user_id|session_id}}``, validated."""
    from .._config.settings import ExperimentSettings, check_section

    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError("must map prompt names to experiments", path=path, key=key,
                          fix="e.g. experiments: {my-prompt: {variants: {prod-a: 50, "
                          "prod-b: 50}}}")
    return experiments_of({str(name): check_section(ExperimentSettings, spec,
                                                    key=f"{key}.{name}", file=path)
                           for name, spec in raw.items()})


def experiments_of(settings: Mapping[str, ExperimentSettings]) -> dict[str, Experiment]:
    """The experiments of checked settings (``prompts.experiments``, resolved at load)."""
    return {name: Experiment(prompt=name, variants=s.variants, sticky_by=s.sticky_by)
            for name, s in settings.items()}
