"""A small real CrewAI Flow with a @human_feedback review, used by the flow tests (also
loaded by path from a separate process by ``python -m hitlhook.resume``)."""

from __future__ import annotations

from crewai.flow import Flow, human_feedback, listen, start

from hitlhook.crewai import ExactLabelLLM


class ReviewFlow(Flow):
    """Writes a draft, asks a human, then publishes, discards or revises."""

    @start()
    @human_feedback(
        message="Approve the draft?",
        emit=["approved", "rejected", "needs_changes"],
        llm=ExactLabelLLM(),
        default_outcome="approved",
    )
    def write_draft(self) -> str:
        return f"Draft about {self.state.get('topic', 'rivers')}"

    @listen("approved")
    def publish(self) -> str:
        fb = self.last_human_feedback
        return f"published: {fb.output if fb else '?'}"

    @listen("rejected")
    def discard(self) -> str:
        return "discarded"

    @listen("needs_changes")
    def revise(self) -> str:
        fb = self.last_human_feedback
        return f"revising with: {fb.feedback if fb else ''}"


class PlainFlow(Flow):
    """A review without emit labels: the flow receives the text."""

    @start()
    @human_feedback(message="Any notes?")
    def draft(self) -> str:
        return "plain draft"

    @listen(draft)
    def finish(self, result) -> str:
        return f"notes: {result.feedback!r}"
