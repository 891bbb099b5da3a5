"""A loopback HTTP server that plays LLM providers in their real wire formats, with faults.

Point a deployment's ``api_base`` at ``Simulator.base("<scenario>")`` and the
provider client talks to it as it would to the real service::

    openai/<model>        POST /s/<scenario>/chat/completions   (also responses, embeddings,
                          GET models)
    anthropic/<model>     POST /s/<scenario>/v1/messages        (also messages/count_tokens,
                          GET v1/models)
    gemini/<model>        POST /s/<scenario>/models/<model>:generateContent | :streamGenerateContent
                          (also :countTokens, :embedContent, :batchEmbedContents, GET models)
    ollama_chat/<model>   POST /s/<scenario>/api/chat           (also generate, embed, embeddings,
                          show, GET tags)

The vendors' official SDKs work against it too: structured output follows the request's
JSON schema, ids are fresh, headers carry request ids and rate limits, and what the
vendor refuses is refused in its shape (unless the scenario says ``validate: false``).
The scenario decides latency, content and injected faults (see ``BUILTIN_SCENARIOS``);
any unknown scenario name is a healthy ``ok`` copy, so each deployment can get its
own and be broken independently at run time via ``Simulator.set_scenario`` or
``PUT /control/scenarios/<name>``. Stats are at ``GET /control/stats``.
"""

from .runner import Simulator, serve
from .scenarios import BUILTIN_SCENARIOS, Fault, Scenario

__all__ = ["BUILTIN_SCENARIOS", "Fault", "Scenario", "Simulator", "serve"]
