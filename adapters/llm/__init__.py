"""llm-adapter: reliable, observable, cost-controlled LLM calls through LiteLLM and Langfuse.

    from adapters.llm import LiteLLMAdapter
    llm = LiteLLMAdapter(model="claude-sonnet")
    print(llm.generate(prompt="Hello").content)

Importing this package is cheap and starts nothing: the first adapter starts importing
litellm in the background, and the first call waits for it within its deadline.
"""

from ._config.loader import Config, load_config
from .errors import (
    AllProvidersFailed,
    AuthenticationError,
    BackendUnavailable,
    BudgetExceeded,
    ConfigError,
    ContextWindowExceeded,
    DeadlineExceeded,
    LLMAdapterError,
    ProviderError,
    RateLimited,
    UsageError,
)
from .litellm_adapter import LiteLLMAdapter
from ._prompts.registry import Prompt
from ._observability.records import Attempt, LLMResponse, ToolCall, Usage
from ._routing.streaming import ResponseStream

__version__ = "0.1.0"

__all__ = [
    "AllProvidersFailed",
    "Attempt",
    "AuthenticationError",
    "BackendUnavailable",
    "BudgetExceeded",
    "Config",
    "ConfigError",
    "ContextWindowExceeded",
    "DeadlineExceeded",
    "LLMAdapterError",
    "LLMResponse",
    "LiteLLMAdapter",
    "Prompt",
    "ProviderError",
    "RateLimited",
    "ResponseStream",
    "ToolCall",
    "Usage",
    "UsageError",
    "load_config",
]

# Public objects carry the public path, as in tracebacks and reprs users see
# ("adapters.llm.ConfigError", not the private module that defines it).
for _name in __all__:
    globals()[_name].__module__ = "adapters.llm"
del _name
