"""The guide's quick start.

    ENVIRONMENT=simulation python examples/quick_start.py     # offline
    ENVIRONMENT=production python examples/quick_start.py     # with ANTHROPIC_API_KEY etc. set
"""

from adapters.llm import LiteLLMAdapter

llm = LiteLLMAdapter(model="claude-sonnet", enable_langfuse=True)
response = llm.generate(
    prompt="Hello",
    system=llm.get_prompt("smart-scheduling-system-v1"),
    metadata={"session_id": "S1", "user_id": "admin", "agent": "matching", "tags": ["urgent"]},
)
print(response.content)
print(f"answered by {response.deployment} ({response.provider}) in {response.latency_ms:.0f} ms, "
      f"{response.usage.total_tokens} tokens, cost "
      f"{'unknown' if response.cost is None else f'${response.cost:.6f}'}")
llm.flush_langfuse()
