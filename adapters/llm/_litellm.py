"""The one place litellm is imported.

``import litellm`` takes seconds, so nothing imports it at module level: callers ask for it when a
call needs it. Before the first import the offline price map is chosen (litellm otherwise fetches
its price list over the network at import and stalls), unless the user decided otherwise.
"""

from __future__ import annotations

import logging
import os
from functools import cache
from types import ModuleType


@cache
def litellm() -> ModuleType:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm as _litellm

    # litellm prints a "Give Feedback / Get Help" banner for every exception it maps.
    _litellm.suppress_debug_info = True
    if not os.environ.get("LITELLM_LOG"):
        # Its warnings repeat what the adapter reports itself (e.g. unknown prices).
        logging.getLogger("LiteLLM").setLevel(logging.ERROR)
    return _litellm
