"""The provider simulator that serves the ``simulation`` environment in-process.

One per process, started on first use on a free loopback port: every adapter in simulation
mode shares it, so a scenario changed through its control API affects them all.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import TYPE_CHECKING

from .._process.lifecycle import SERVERS, default_lifecycle

if TYPE_CHECKING:
    from .._config.loader import Config
    from ..simulator import Simulator


class _Holder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.simulator: Simulator | None = None


@cache
def _holder() -> _Holder:
    return _Holder()


def shared_simulator(config: Config) -> Simulator:
    """The process's simulator; the profile's ``simulator.scenarios`` apply when it starts."""
    from ..simulator import Simulator

    holder = _holder()
    with holder.lock:
        if holder.simulator is None:
            simulator = holder.simulator = Simulator().start()
            # Stopped at exit after the loop whose clients talk to it (its thread joined).
            default_lifecycle().add(lambda _timeout: simulator.stop(), stage=SERVERS)
            settings = config.profile.simulator
            for name, scenario in dict(settings.get("scenarios") or {}).items():
                holder.simulator.set_scenario(name, scenario)
        return holder.simulator
