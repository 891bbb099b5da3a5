"""An agent whose instructions come from the prompt registry (Pattern 1 of the guide).

The therapist-replacement orchestrator compiles its prompt with variables, then asks the
matching prompt for each affected appointment.

    ENVIRONMENT=simulation python examples/agent_with_registry_prompt.py
"""

from adapters.llm import LiteLLMAdapter, UsageError


class TherapistReplacementAgent:
    def __init__(self, llm: LiteLLMAdapter) -> None:
        self.llm = llm

    def plan(self, therapist: str, appointments: list[str]) -> str:
        system = self.llm.get_prompt("therapist-replacement-orchestrator-v1",
                                     variables={"max_appointments": len(appointments)})
        answer = self.llm.generate(
            prompt=f"{therapist} is out today. Appointments: {', '.join(appointments)}",
            system=system,
            metadata={"session_id": "replacement-42", "agent": "orchestrator",
                      "stage": "plan", "tags": ["replacement"]},
        )
        return answer.content

    def match(self, skills: str) -> str:
        system = self.llm.get_prompt("smart-scheduling-matching-v1",
                                     variables={"required_skills": skills})
        return self.llm.generate(prompt="Who can take the 10am slot?", system=system,
                                 metadata={"agent": "matching", "stage": "match"}).content


if __name__ == "__main__":
    agent = TherapistReplacementAgent(LiteLLMAdapter())
    print(agent.plan("Dr. Rivera", ["09:00 patient 12", "10:00 patient 7"]))
    print(agent.match("orthopedic, post-surgical"))
    try:
        agent.llm.get_prompt("smart-scheduling-matching-v1")      # variable missing
    except UsageError as exc:
        print(f"refused before sending: {exc}")
