"""The cyclic garbage collector and what lives as long as the process.

Once litellm is imported, its modules and price tables are ~400,000 objects that live as long
as the process, and every full collection walked them all with the event loop stopped: 0.4 to
0.8 s on a 2-core machine, at moments nobody chose, under load. ``gc.freeze()`` moves every
object alive at that moment into a generation the collector never walks. They are still freed
when their last reference goes; only reference cycles among them are never collected, which for
module-level state is what happens anyway.
"""

from __future__ import annotations

import gc
import os

__all__ = ["ENV", "freeze_long_lived"]

ENV = "LLM_ADAPTER_GC_FREEZE"       # "0" leaves the collector alone


def freeze_long_lived() -> bool:
    """Freeze every object alive now (see the module doc), unless ``LLM_ADAPTER_GC_FREEZE=0``;
    True when it did."""
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    gc.freeze()
    return True
