"""Small real CrewAI crews driven by a ScriptedLLM, for the integration tests."""

from __future__ import annotations

from typing import Any, Sequence

from crewai import Agent, Crew, Process, Task
from crewai.tools import tool

from hitlhook.crewai.testing import ScriptedLLM


@tool("lookup")
def lookup(q: str) -> str:
    """Look something up."""
    return f"facts about {q}"


def make_crew(responses: Sequence[str], *, human_input: bool = True, tools: Sequence[Any] = (), name: str = "haiku") -> tuple[Crew, ScriptedLLM]:
    """One agent, one task; the agent's LLM answers from ``responses``."""
    llm = ScriptedLLM(responses=list(responses))
    agent = Agent(role="Writer", goal="Write short texts", backstory="A careful writer.", llm=llm, tools=list(tools), max_retry_limit=2, verbose=False)
    task = Task(
        description="Write a haiku about rivers",
        expected_output="A haiku",
        agent=agent,
        human_input=human_input,
        name=name,
    )
    crew = Crew(agents=[agent], tasks=[task], process=Process.sequential, verbose=False)
    return crew, llm
