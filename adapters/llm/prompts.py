"""Prompts: the local registry under ``prompts/`` and ``{{variable}}`` compilation.

One YAML file per prompt holds its versions; labels point at versions (``production`` is what
an unqualified lookup returns, ``latest`` is always the newest version), as in Langfuse, so a
local prompt can be pushed there unchanged.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, UsageError

__all__ = ["LocalRegistry", "Prompt"]

_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass(frozen=True)
class Prompt:
    name: str
    version: int
    type: str                                   # "text" | "chat"
    template: str | tuple[Mapping[str, Any], ...]
    labels: tuple[str, ...] = ()
    config: Mapping[str, Any] = field(default_factory=dict)
    source: str = "local"

    @property
    def variables(self) -> tuple[str, ...]:
        texts = [self.template] if isinstance(self.template, str) else \
            [str(m.get("content", "")) for m in self.template]
        seen: dict[str, None] = {}
        for text in texts:
            for match in _VARIABLE.finditer(text):
                seen.setdefault(match.group(1), None)
        return tuple(seen)

    def compile(self, **variables: Any) -> str | list[dict[str, Any]]:
        """The template with every ``{{var}}`` filled; a missing variable is a ``UsageError``."""
        missing = [v for v in self.variables if v not in variables]
        if missing:
            raise UsageError(
                f"prompt {self.name!r} (version {self.version}) needs "
                f"{', '.join(repr(m) for m in missing)}; pass variables={{{missing[0]!r}: ...}}")

        def fill(text: str) -> str:
            return _VARIABLE.sub(lambda m: _text(variables[m.group(1)]), text)

        if isinstance(self.template, str):
            return fill(self.template)
        return [{**m, "content": fill(str(m.get("content", "")))} for m in self.template]


def _text(value: Any) -> str:
    return "" if value is None else str(value)


class LocalRegistry:
    """Prompts read from ``<directory>/<name>.yaml``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.yaml"))

    def get(self, name: str, *, version: int | None = None, label: str | None = None) -> Prompt:
        if version is not None and label is not None:
            raise UsageError("give either version= or label=, not both")
        path = self.directory / f"{name}.yaml"
        if not path.is_file():
            names = self.names()
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else \
                f"; known prompts: {', '.join(names) or 'none'} in {self.directory}"
            raise UsageError(f"no prompt named {name!r}{hint}")
        versions = _load_versions(path, name)
        if version is not None:
            chosen = next((v for v in versions if v.version == version), None)
            what = f"version {version}"
        elif label in (None, "production") and not any("production" in v.labels for v in versions):
            chosen, what = max(versions, key=lambda v: v.version), "latest"
        elif label == "latest":
            chosen, what = max(versions, key=lambda v: v.version), "latest"
        else:
            wanted = label or "production"
            chosen = next((v for v in versions if wanted in v.labels), None)
            what = f"label {wanted!r}"
        if chosen is None:
            have = ", ".join(f"v{v.version} {list(v.labels)}" for v in versions)
            raise UsageError(f"prompt {name!r} has no {what} (it has {have})")
        return chosen


def _load_versions(path: Path, name: str) -> list[Prompt]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", path=str(path)) from None
    kind = data.get("type", "text")
    if kind not in ("text", "chat"):
        raise ConfigError(f"type must be 'text' or 'chat', not {kind!r}", path=str(path), key="type")
    entries = data.get("versions")
    if not isinstance(entries, list) or not entries:
        raise ConfigError("needs a non-empty 'versions' list", path=str(path), key="versions",
                          fix="add versions: [{version: 1, labels: [production], prompt: ...}]")
    out = []
    for i, entry in enumerate(entries):
        template = entry.get("prompt") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or (kind == "text") != isinstance(template, str) or \
                kind == "chat" and not isinstance(template, list):
            raise ConfigError(f"prompt must be a {'string' if kind == 'text' else 'list of messages'}",
                              path=str(path), key=f"versions[{i}].prompt")
        out.append(Prompt(
            name=name, version=int(entry.get("version", i + 1)), type=kind,
            template=template if isinstance(template, str) else tuple(template or ()),
            labels=tuple(entry.get("labels") or ()), config=dict(entry.get("config") or {})))
    return out
