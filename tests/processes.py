"""Processes a test (or a benchmark) started and those they started in turn."""

from __future__ import annotations

import time
from pathlib import Path

__all__ = ["children_of", "wait_ended"]


def children_of(pid: int) -> list[int]:
    """The processes ``pid`` started and that still run (its recording process among them)."""
    return [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()]


def wait_ended(pids: list[int], timeout: float = 60) -> None:
    """Until every process of ``pids`` has ended (a killed caller's recording process commits
    what it holds first)."""
    def running(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + timeout
    while any(running(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise AssertionError(f"processes {pids} still run after {timeout} s")
        time.sleep(0.02)
