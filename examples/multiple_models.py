"""Several models per task (Pattern 2 of the guide): a strong model plans, a cheap one formats,
and a tool-using model books. Adapters built from one config share one router.

    ENVIRONMENT=simulation python examples/multiple_models.py
"""

import json

from adapters.llm import LiteLLMAdapter

planner = LiteLLMAdapter(model="claude-sonnet")
formatter = LiteLLMAdapter(model="gemini-fallback")
booker = LiteLLMAdapter(model="gpt-4-fallback")

BOOK = {
    "type": "function",
    "function": {
        "name": "book_appointment",
        "description": "Book an appointment slot for a patient with a therapist",
        "parameters": {
            "type": "object",
            "properties": {
                "patient_id": {"type": "string"},
                "therapist_id": {"type": "string"},
                "slot": {"type": "string", "description": "ISO 8601 start time"},
            },
            "required": ["patient_id", "therapist_id", "slot"],
        },
    },
}

plan = planner.generate(prompt="Patient 7 needs two sessions this week with an orthopedic PT.")
print("plan:", plan.content)

booking = booker.generate(prompt=f"Book the first session of this plan: {plan.content}",
                          tools=[BOOK], tool_choice="auto")
for call in booking.tool_calls:
    arguments = call.parsed_arguments()
    print(f"tool call: {call.name}({json.dumps(arguments)})")
    result = {"status": "booked", "confirmation": "C-1042", **arguments}
    final = booker.generate(tools=[BOOK], messages=[
        {"role": "user", "content": "Book the first session."},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function",
             "function": {"name": call.name, "arguments": call.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)},
    ])
    print("after the tool:", final.content)

summary = formatter.generate(prompt=f"Format for an SMS: {plan.content}", max_tokens=60)
print("sms:", summary.content)
total = sum(r.cost or 0 for r in (plan, booking, summary))
print(f"three models, total ${total:.6f}")
