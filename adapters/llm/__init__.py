"""llm-adapter: reliable, observable, cost-controlled LLM calls through LiteLLM and Langfuse.

    from adapters.llm import LiteLLMAdapter
    llm = LiteLLMAdapter(model="claude-sonnet")
    print(llm.generate(prompt="Hello").content)

Importing this package is cheap: litellm is imported on the first call.
"""

from .config import Config, load_config
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
from .prompts import Prompt
from .records import Attempt, LLMResponse, ToolCall, Usage
from .streaming import ResponseStream

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
