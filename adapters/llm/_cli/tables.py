"""Tables that fit the terminal without cutting a number.

A column says what it holds: a *figure* (an amount, a count, a latency: shown whole, never
shortened or wrapped), an identifier-like *text* (shortened with an ellipsis, in the middle or
at the end) or *prose* (a detail or a fix: wrapped at word boundaries, never shortened), and
how dispensable it is. When the rows are wider than the console, text and prose columns give
way first, down to their minimum width; then the most dispensable columns are dropped and the
title names them. ``wide`` shows every column at its full width and lets the terminal wrap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import click

__all__ = ["Col", "FitTable", "print_fit", "wide_option"]

Kind = Literal["figure", "text", "prose"]
_LONG_WORD = 24         # a longer word in prose (a path, a URL) may be folded

wide_option = click.option("--wide", is_flag=True,
                           help="Every column at full width, however wide the terminal.")


@dataclass(frozen=True)
class Col:
    """One column: ``drop`` 0 is always shown; higher numbers are dropped first."""

    name: str
    kind: Kind = "text"
    justify: Literal["left", "right", "center"] = "left"
    ellipsis: Literal["middle", "end"] = "end"
    min_width: int = 12
    drop: int = 0
    style: str | None = None


@dataclass
class _Row:
    cells: list[Any]
    style: str | None = None
    section_before: bool = False


@dataclass
class FitTable:
    """Collects rows like ``rich.table.Table``; ``render(width)`` lays them out to fit."""

    columns: Sequence[Col]
    title: str | None = None
    show_header: bool = True
    boxed: bool = True
    rows: list[_Row] = field(default_factory=list)
    width: int = 0                  # of the last render: its columns, padding and borders
    _section: bool = False

    def add_row(self, *cells: Any, style: str | None = None) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(_Row([_text(c) for c in cells], style, self._section))
        self._section = False

    def add_section(self) -> None:
        self._section = True

    def render(self, width: int, *, wide: bool = False) -> Any:
        """A ``rich.table.Table`` no wider than ``width`` (when ``wide``: as wide as it needs)."""
        from rich.table import Table

        shown = list(range(len(self.columns)))
        widths = self._natural(shown)
        dropped: list[str] = []
        if not wide:
            while True:
                room = width - self._overhead(len(shown))
                widths = self._shrunk(shown, room)
                if sum(widths.values()) > room:     # long words in prose may fold, then
                    widths = self._shrunk(shown, room, fold=True)
                if sum(widths.values()) <= room:
                    break
                candidates = [i for i in shown if self.columns[i].drop > 0]
                if not candidates:
                    break           # figures stay whole; the line is longer than the console
                victim = max(candidates, key=lambda i: (self.columns[i].drop, i))
                shown.remove(victim)
                dropped.append(self.columns[victim].name)
        self.width = sum(widths[i] for i in shown) + self._overhead(len(shown))
        title = self.title
        if dropped:
            hidden = [c.name for c in self.columns if c.name in dropped]
            note = f"{', '.join(hidden)} hidden; --wide shows all"
            title = f"{title} ({note})" if title else f"({note})"
        table = Table(title=title, show_header=self.show_header) if self.boxed else \
            Table(title=title, show_header=self.show_header, box=None, padding=(0, 1))
        for i in shown:
            col = self.columns[i]
            table.add_column(col.name, justify=col.justify, style=col.style, width=widths[i],
                             no_wrap=col.kind != "prose" and not self.show_header,
                             overflow="fold")
        for row in self.rows:
            if row.section_before:
                table.add_section()
            table.add_row(*(self._cell(row.cells[i], self.columns[i], widths[i]) for i in shown),
                          style=row.style)
        return table

    def _overhead(self, n: int) -> int:
        return 3 * n + 1 if self.boxed else 2 * n

    def _floor(self, i: int, fold: bool = False) -> int:
        """The narrowest column ``i`` may get: a figure's widest cell, else its minimum (for
        prose, its longest word unless ``fold``)."""
        col = self.columns[i]
        header = max((len(w) for w in col.name.split()), default=0) if self.show_header else 0
        cells = max((r.cells[i].cell_len for r in self.rows), default=0)
        if col.kind == "figure":
            return max(header, cells, 1)
        if col.kind == "prose" and not fold:    # whole words where they are not too long
            longest = max((len(w) for r in self.rows for w in r.cells[i].plain.split()),
                          default=0)
            return max(header, min(cells, max(col.min_width, min(longest, _LONG_WORD))), 1)
        return max(header, min(col.min_width, cells), 1)

    def _natural(self, shown: list[int]) -> dict[int, int]:
        out = {}
        for i in shown:
            header = len(self.columns[i].name) if self.show_header else 0
            cells = max((r.cells[i].cell_len for r in self.rows), default=0)
            out[i] = max(header, cells, self._floor(i), 1)
        return out

    def _shrunk(self, shown: list[int], room: int, *, fold: bool = False) -> dict[int, int]:
        """Natural widths, the widest flexible columns lowered to one level until they fit."""
        natural = self._natural(shown)
        if sum(natural.values()) <= room:
            return natural
        floors = {i: self._floor(i, fold) for i in shown}
        flexible = [i for i in shown if self.columns[i].kind != "figure"]
        fixed = sum(natural[i] for i in shown if i not in flexible)

        def total(level: int) -> int:
            return fixed + sum(max(floors[i], min(natural[i], level)) for i in flexible)

        level = max((natural[i] for i in flexible), default=0)
        while level > 0 and total(level) > room:
            level -= 1
        return {i: natural[i] if i not in flexible else max(floors[i], min(natural[i], level))
                for i in shown}

    @staticmethod
    def _cell(text: Any, col: Col, width: int) -> Any:
        if col.kind != "text" or text.cell_len <= width:
            return text
        return shorten(text, width, col.ellipsis)


def shorten(text: Any, width: int, where: Literal["middle", "end"] = "end") -> Any:
    """``text`` in ``width`` cells, an ellipsis standing for what was left out."""
    if text.cell_len <= width:
        return text
    if width <= 1:
        return text[:width]
    if where == "end":
        return text[:width - 1] + "…"
    head = width // 2
    tail = width - 1 - head
    return text[:head] + "…" + (text[len(text) - tail:] if tail else "")


def _text(cell: Any) -> Any:
    from rich.text import Text

    if isinstance(cell, Text):
        return cell
    return Text.from_markup(str(cell))


def print_fit(console: Any, table: FitTable, *, wide: bool = False) -> None:
    """Print ``table`` fitted to ``console``; with ``wide`` (or a table that cannot fit), the
    lines are printed whole, longer than the console, rather than cut."""
    rendered = table.render(console.width, wide=wide)
    if table.width <= console.width:
        console.print(rendered)
        return
    narrow = console.width             # print() caps its width at the console's: widen it
    console.width = table.width
    try:
        console.print(rendered, crop=False)
    finally:
        console.width = narrow
