"""Cost-conscious development (Pattern 4 of the guide): a free local model while developing,
the real chain in staging/production, and every call's cost visible.

    ENVIRONMENT=simulation python examples/cost_conscious_development.py
    ENVIRONMENT=development python examples/cost_conscious_development.py   # needs a local Ollama
"""

from adapters.llm import LiteLLMAdapter

llm = LiteLLMAdapter()            # the environment's default_model
cheap = LiteLLMAdapter(model="ollama-local")

questions = ["Which therapists work Saturdays?", "Summarise patient 7's plan of care."]
for question in questions:
    for adapter in (llm, cheap):
        r = adapter.generate(prompt=question, max_tokens=100)
        cost = "unknown price" if r.cost is None else f"${r.cost:.6f}"
        print(f"{adapter.model:15} {r.usage.total_tokens:4d} tokens  {cost:>12}  {r.latency_ms:6.1f} ms")
