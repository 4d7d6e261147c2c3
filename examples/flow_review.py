"""A flow paused for a human by hitlhook, resumed later by another process.

    python examples/flow_review.py start [topic]    # runs until the review, prints the flow id, exits
    python -m hitlhook.resume examples/flow_review.py:ArticleFlow --flow-id <id>   # waits, then resumes
    python examples/flow_review.py wait [topic]     # same flow, but waits in process (blocking mode)

Decisions route to the emit labels without any LLM: continue -> approved, stop -> rejected,
revise -> needs_changes (the flow receives the reviewer's text), skip -> default (approved).
"""

from __future__ import annotations

import sys
import uuid

import _common  # noqa: F401  (sets the offline CrewAI environment first)
from crewai.flow import Flow, human_feedback, listen, start
from crewai.flow.flow_config import flow_config

from hitlhook.crewai import ExactLabelLLM, HitlFeedbackProvider


class ArticleFlow(Flow):
    """Draft -> human review -> publish, discard or revise."""

    @start()
    @human_feedback(
        message="Publish this draft?",
        emit=["approved", "rejected", "needs_changes"],
        llm=ExactLabelLLM(),
        default_outcome="approved",
    )
    def draft(self) -> str:
        topic = self.state.get("topic", "rivers")
        reply = _common.make_llm(topic).call([{"role": "user", "content": f"Write two sentences about {topic}."}])
        return str(reply).split("Final Answer:", 1)[-1].strip()

    @listen("approved")
    def publish(self) -> str:
        return f"PUBLISHED: {self.last_human_feedback.output}"

    @listen("rejected")
    def discard(self) -> str:
        return "DISCARDED"

    @listen("needs_changes")
    def revise(self) -> str:
        return f"TO REVISE ({self.last_human_feedback.feedback}): {self.last_human_feedback.output}"


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else "start"
    topic = sys.argv[2] if len(sys.argv) > 2 else "rivers"
    client = _common.hitl_client()
    flow_config.hitl_provider = HitlFeedbackProvider(client, mode="blocking" if mode == "wait" else "pending")
    flow_id = str(uuid.uuid4())
    result = ArticleFlow().kickoff(inputs={"id": flow_id, "topic": topic})
    if mode == "wait":
        print("final:", result)
        return 0
    cp = result.callback_info["checkpoint_id"]
    print(f"\nflow {flow_id} is paused at checkpoint {cp}")
    print(f"resume it later with:\n  python -m hitlhook.resume examples/flow_review.py:ArticleFlow --flow-id {flow_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
