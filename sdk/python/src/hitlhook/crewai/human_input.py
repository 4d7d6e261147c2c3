"""A CrewAI ``HumanInputProvider`` that sends ``Task(human_input=True)`` reviews to hitlhook.

When an agent reaches its final answer on a task with ``human_input=True``, CrewAI calls
:meth:`HitlHumanInputProvider.handle_feedback`. It creates a checkpoint with the answer and
waits (long-poll, reconnecting across network errors and server restarts) for a human:

* ``continue`` - the answer is accepted;
* ``skip`` - the answer is accepted as is; the server records the review as skipped;
* ``revise`` - the feedback is added to the agent's conversation (CrewAI's own
  "User feedback: ..." message), the agent runs again, and the new answer is reviewed again;
* ``stop`` - :class:`CrewStopped` is raised. It subclasses ``crewai.hooks.HookAborted``, so the
  agent does not retry, the task and crew fail cleanly, and ``crew.kickoff()`` raises it; it
  is also a :class:`hitlhook.CheckpointStopped` for the caller to catch.

This is blocking and in-process: the review lasts as long as the Python process does.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from crewai.core.providers.human_input import SyncHumanInputProvider, get_provider, set_provider
from crewai.hooks import HookAborted

from ..client import HitlClient
from ..errors import CheckpointStopped, HitlError
from ..models import Decision
from .envelopes import KickoffIds, truncate

__all__ = ["HitlHumanInputProvider", "CrewStopped", "ReviewAborted", "ReviewRecord"]

log = logging.getLogger("hitlhook.crewai")


class CrewStopped(HookAborted, CheckpointStopped):
    """A reviewer chose ``stop``. ``crew.kickoff()`` raises this; ``decision`` says who and why.

    Catch it as :class:`hitlhook.CheckpointStopped` (or ``crewai.hooks.HookAborted``).
    """

    def __init__(self, decision: Decision) -> None:
        CheckpointStopped.__init__(self, decision)
        self.reason = str(self)
        self.source = "hitlhook"


class ReviewAborted(HookAborted, HitlError):
    """The review could not finish (no decision before the timeout, the checkpoint closed,
    hitlhook refused the request). The original error is ``error`` (and ``__cause__``).
    A ``HookAborted``, so the agent does not retry and ask again."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        HitlError.__init__(self, f"human review failed: {error}")
        self.reason = str(self)
        self.source = "hitlhook"


@dataclass(frozen=True)
class ReviewRecord:
    """One review round: what was asked and what was decided."""

    checkpoint_id: str
    kickoff_id: str | None
    task_name: str | None
    iteration: int
    action: str
    feedback: str | None
    decision: Decision = field(repr=False)


class HitlHumanInputProvider(SyncHumanInputProvider):
    """Reviews of ``Task(human_input=True)`` answers through hitlhook.

    Args:
        client: the :class:`~hitlhook.HitlClient` (needs an API key to wait for decisions).
        ids: how a crew maps to a hitlhook kickoff id (shared with the event listener).
        before_checkpoint: called before each checkpoint is created (``enable()`` passes the
            listener's flush so the server sees the events before the checkpoint).
        timeout: seconds to wait for each decision (``None``: forever).
        expires_in / on_timeout: let the server close the checkpoint and record
            ``on_timeout`` (e.g. ``"continue"``) after ``expires_in`` seconds.
        allowed_actions: offered actions (default all four).
        checkpoint_name: the checkpoint name, or a function ``task -> name``
            (default ``"review:<task name>"``).
        max_revisions: after this many ``revise`` rounds the next answer is accepted.
        max_text: the answer and task texts are cut to this many characters.
    """

    def __init__(
        self,
        client: HitlClient,
        *,
        ids: KickoffIds | None = None,
        before_checkpoint: Callable[[], Any] | None = None,
        timeout: float | None = None,
        expires_in: float | None = None,
        on_timeout: str | None = None,
        allowed_actions: Iterable[str] | None = None,
        checkpoint_name: str | Callable[[Any], str] | None = None,
        max_revisions: int = 10,
        max_text: int = 20_000,
    ) -> None:
        self.client = client
        self.ids = ids or KickoffIds()
        self.before_checkpoint = before_checkpoint
        self.timeout = timeout
        self.expires_in = expires_in
        self.on_timeout = on_timeout
        self.allowed_actions = list(allowed_actions) if allowed_actions is not None else None
        self.checkpoint_name = checkpoint_name
        self.max_revisions = max_revisions
        self.max_text = max_text
        self._lock = threading.Lock()
        self.history: list[ReviewRecord] = []

    def __repr__(self) -> str:
        return f"HitlHumanInputProvider(client={self.client!r}, timeout={self.timeout!r})"

    # -- install -----------------------------------------------------------------------

    def install(self) -> Any:
        """Make this the provider for the current context (call before ``kickoff()``);
        returns the token for :func:`crewai.core.providers.human_input.reset_provider`."""
        return set_provider(self)

    @staticmethod
    def current() -> Any:
        return get_provider()

    # -- CrewAI hooks ------------------------------------------------------------------

    def handle_feedback(self, formatted_answer: Any, context: Any) -> Any:
        """Review loop (sync executors)."""
        answer = formatted_answer
        iteration = 0
        while True:
            decision = self._ask(answer, context, iteration)
            done = self._apply(decision, context)
            if done:
                return answer
            context.messages.append(context._format_feedback_message(decision.feedback or ""))
            answer = context._invoke_loop()
            iteration += 1

    async def handle_feedback_async(self, formatted_answer: Any, context: Any) -> Any:
        """Review loop (async executors, ``akickoff``): waits in a worker thread."""
        answer = formatted_answer
        iteration = 0
        while True:
            decision = await asyncio.to_thread(self._ask, answer, context, iteration)
            if self._apply(decision, context):
                return answer
            context.messages.append(context._format_feedback_message(decision.feedback or ""))
            answer = await context._ainvoke_loop()
            iteration += 1

    # -- internals ---------------------------------------------------------------------

    def _apply(self, decision: Decision, context: Any) -> bool:
        """True when the answer stands (continue/skip); False to revise; raises for stop."""
        if decision.action == "stop":
            context.ask_for_human_input = False
            raise CrewStopped(decision)
        if decision.action == "revise":
            if not (decision.feedback or "").strip():
                log.warning("revise without feedback on %s; accepting the answer", decision.checkpoint_id)
                context.ask_for_human_input = False
                return True
            return False
        context.ask_for_human_input = False
        return True

    def _name(self, task: Any) -> str:
        if callable(self.checkpoint_name):
            return str(self.checkpoint_name(task))
        if self.checkpoint_name:
            return self.checkpoint_name
        tname = getattr(task, "name", None) or "task"
        return f"review:{tname}"

    def _review_context(self, answer: Any, context: Any, iteration: int) -> dict[str, Any]:
        task = getattr(context, "task", None)
        crew = getattr(context, "crew", None)
        agent = getattr(context, "agent", None)
        output = self._get_output_string(answer)
        doc: dict[str, Any] = {
            "kind": "crewai.task_review",
            "output": truncate(output, self.max_text),
            "iteration": iteration,
            "crew_id": str(crew.id) if crew is not None and getattr(crew, "id", None) else None,
            "crew_name": getattr(crew, "name", None),
            "task_id": str(task.id) if task is not None and getattr(task, "id", None) else None,
            "task_name": getattr(task, "name", None),
            "task_description": truncate(getattr(task, "description", None), self.max_text),
            "expected_output": truncate(getattr(task, "expected_output", None), self.max_text),
            "agent_role": getattr(agent, "role", None),
            "previous_feedback": [r.feedback for r in self.history if r.task_name == getattr(task, "name", None) and r.action == "revise"][-5:],
        }
        return {k: v for k, v in doc.items() if v is not None}

    def _ask(self, answer: Any, context: Any, iteration: int) -> Decision:
        task = getattr(context, "task", None)
        crew = getattr(context, "crew", None)
        kickoff_id = self.ids.for_crew(crew)
        actions = self.allowed_actions
        if iteration >= self.max_revisions:
            actions = [a for a in (actions or ["continue", "stop", "revise", "skip"]) if a != "revise"]
        if self.before_checkpoint is not None:
            try:
                self.before_checkpoint()
            except Exception:  # noqa: BLE001
                log.debug("before_checkpoint failed", exc_info=True)
        checkpoint_id = str(uuid.uuid4())
        try:
            decision = self.client.request_decision(
                self._name(task),
                self._review_context(answer, context, iteration),
                kickoff_id,
                checkpoint_id=checkpoint_id,
                allowed_actions=actions,
                timeout=self.timeout,
                expires_in=self.expires_in,
                on_timeout=self.on_timeout,
                raise_on_stop=False,
            )
        except HitlError as exc:
            raise ReviewAborted(exc) from exc
        record = ReviewRecord(
            checkpoint_id=decision.checkpoint_id,
            kickoff_id=kickoff_id,
            task_name=getattr(task, "name", None),
            iteration=iteration,
            action=decision.action,
            feedback=decision.feedback,
            decision=decision,
        )
        with self._lock:
            self.history.append(record)
        log.info("review %s of %s: %s", decision.checkpoint_id, record.task_name, decision.action)
        return decision


def review_context_keys() -> Mapping[str, str]:
    """What the checkpoint ``context`` of a task review holds (for UIs and docs)."""
    return {
        "kind": '"crewai.task_review"',
        "output": "the agent's answer under review",
        "iteration": "0 for the first answer, +1 after each revise",
        "crew_id / crew_name": "the crew",
        "task_id / task_name / task_description / expected_output": "the task",
        "agent_role": "the agent",
        "previous_feedback": "earlier revise feedback for this task",
    }
