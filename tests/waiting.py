"""Waiting for what a test can observe (a row, a request counted, a span, a server up),
bounded, failing with what was awaited: never a guessed sleep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest


def wait_until(predicate: Callable[[], object], *, timeout: float, what: str,
               interval: float = 0.02) -> None:
    """Poll ``predicate`` until it is true; fail naming ``what`` was awaited after ``timeout``
    seconds (an observable event, never a guessed sleep)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not seen within {timeout} s")
        time.sleep(interval)


async def await_until(predicate: Callable[[], object], *, timeout: float, what: str,
                      interval: float = 0.02) -> None:
    """``wait_until`` for a test on an event loop: the loop keeps running between polls."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not seen within {timeout} s")
        await asyncio.sleep(interval)
