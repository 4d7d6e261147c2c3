"""A crew whose task is reviewed by a human through hitlhook.

    python examples/crew_review.py [topic]

The writer agent drafts a note; the task has human_input=True, so the crew pauses and
prints a checkpoint id. Decide with curl (see examples/README.md): continue, skip, revise
(with feedback: the agent rewrites and asks again) or stop (the crew ends).
"""

from __future__ import annotations

import sys

import _common  # noqa: F401  (sets the offline CrewAI environment first)
from crewai import Agent, Crew, Process, Task

import hitlhook
import hitlhook.crewai


def main() -> int:
    topic = sys.argv[1] if len(sys.argv) > 1 else "rivers"
    client = _common.hitl_client()
    hitl = hitlhook.crewai.enable(client)  # events + Task(human_input=True) reviews
    writer = Agent(role="Writer", goal="Write short, accurate notes", backstory="An editor's favourite.", llm=_common.make_llm(topic))
    task = Task(
        description=f"Write a two-sentence note about {topic}.",
        expected_output="Two sentences.",
        agent=writer,
        human_input=True,
        name="note",
    )
    crew = Crew(agents=[writer], tasks=[task], process=Process.sequential)
    print(f"kickoff_id={crew.id}")
    print(f'waiting for a review; list it with:\n  curl -s -H "Authorization: Bearer $HITLHOOK_API_KEY" "{client.base_url}/v1/checkpoints?status=pending&kickoff_id={crew.id}"', flush=True)
    try:
        result = crew.kickoff()
    except hitlhook.CheckpointStopped as stopped:
        print(f"stopped by a reviewer: {stopped}")
        return 2
    finally:
        hitl.flush()
    print("final:", result.raw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
