"""A ``HumanFeedbackProvider`` for CrewAI Flows' ``@human_feedback``.

Two modes:

* ``"pending"`` (default, durable): create a hitlhook checkpoint and raise
  ``HumanFeedbackPending``. ``flow.kickoff()`` returns that object, CrewAI saves the flow's
  state, and the process may exit. When the decision arrives, :mod:`hitlhook.resume`
  (``python -m hitlhook.resume`` or :func:`hitlhook.resume.resume_flow`) restores the flow
  with ``from_pending(...)`` and resumes it.
* ``"blocking"``: create the checkpoint and wait in process for the decision, then return
  the feedback text. Use ``llm=ExactLabelLLM()`` on the decorator so routing is local.

The checkpoint id is derived from the flow id, method and request time, so the resume
worker finds it again from CrewAI's own persisted context, in any process.
"""

from __future__ import annotations

import logging
import uuid
from datetime import date, datetime
from typing import Any, Iterable, Literal, Mapping

from crewai.flow.async_feedback import HumanFeedbackPending, PendingFeedbackContext

from ..client import HitlClient
from ..errors import CheckpointStopped
from .envelopes import truncate
from .labels import remember_outcome
from .routing import route_decision

__all__ = ["HitlFeedbackProvider", "checkpoint_id_for"]

log = logging.getLogger("hitlhook.crewai")

_NAMESPACE = uuid.UUID("5b0c6a57-4c1e-4f0e-9a51-7d1e0c3f7a11")


def checkpoint_id_for(context: Any) -> str:
    """The hitlhook checkpoint id of a paused ``@human_feedback`` request (stable across
    processes: built from ``flow_id``, ``method_name`` and ``requested_at``)."""
    requested: Any = getattr(context, "requested_at", None)
    stamp = requested.isoformat() if isinstance(requested, (datetime, date)) else str(requested)
    return str(uuid.uuid5(_NAMESPACE, f"{context.flow_id}|{context.method_name}|{stamp}"))


class HitlFeedbackProvider:
    """Sends ``@human_feedback`` requests to hitlhook.

    Args:
        client: the :class:`~hitlhook.HitlClient`.
        mode: ``"pending"`` (pause; resume later with :mod:`hitlhook.resume`) or
            ``"blocking"`` (wait in process).
        outcomes: ``{"continue": label, "stop": label, "revise": label, "skip": label}``
            for ``emit`` routing; missing entries are guessed (see
            :mod:`hitlhook.crewai.routing`).
        allowed_actions: actions offered to the reviewer (default all four).
        timeout: blocking mode: seconds to wait for the decision (``None``: forever).
        expires_in / on_timeout: let the server close the checkpoint and record
            ``on_timeout`` after ``expires_in`` seconds.
        checkpoint_name: default ``"<FlowClass>.<method>"``.
        state_fields: include these flow-state fields in the checkpoint context.
    """

    def __init__(
        self,
        client: HitlClient,
        *,
        mode: Literal["pending", "blocking"] = "pending",
        outcomes: Mapping[str, str] | None = None,
        allowed_actions: Iterable[str] | None = None,
        timeout: float | None = None,
        expires_in: float | None = None,
        on_timeout: str | None = None,
        checkpoint_name: str | None = None,
        state_fields: Iterable[str] | None = None,
        max_text: int = 20_000,
    ) -> None:
        if mode not in ("pending", "blocking"):
            raise ValueError("mode must be 'pending' or 'blocking'")
        self.client = client
        self.mode = mode
        self.outcomes = dict(outcomes or {})
        self.allowed_actions = list(allowed_actions) if allowed_actions is not None else None
        self.timeout = timeout
        self.expires_in = expires_in
        self.on_timeout = on_timeout
        self.checkpoint_name = checkpoint_name
        self.state_fields = list(state_fields or [])
        self.max_text = max_text

    def __repr__(self) -> str:
        return f"HitlFeedbackProvider(mode={self.mode!r}, client={self.client!r})"

    def _context_doc(self, context: PendingFeedbackContext, flow: Any) -> dict[str, Any]:
        doc = {
            "kind": "crewai.flow_feedback",
            "flow_id": context.flow_id,
            "flow_class": context.flow_class,
            "method_name": context.method_name,
            "message": context.message,
            "output": truncate(context.method_output if isinstance(context.method_output, (str, dict, list, int, float, bool)) or context.method_output is None else str(context.method_output), self.max_text),
            "emit": context.emit,
            "default_outcome": context.default_outcome,
            "metadata": context.metadata or {},
            "requested_at": context.requested_at.isoformat() if context.requested_at else None,
        }
        if self.state_fields:
            state = getattr(flow, "state", None)
            picked: dict[str, Any] = {}
            for name in self.state_fields:
                value = state.get(name) if isinstance(state, dict) else getattr(state, name, None)
                picked[name] = value if isinstance(value, (str, int, float, bool, list, dict)) or value is None else str(value)
            doc["state"] = picked
        return doc

    def create_checkpoint(self, context: PendingFeedbackContext, flow: Any) -> str:
        """Create (idempotently) the checkpoint for ``context``; returns its id."""
        checkpoint_id = checkpoint_id_for(context)
        name = self.checkpoint_name or f"{context.flow_class.rsplit('.', 1)[-1]}.{context.method_name}"
        self.client.create_checkpoint(
            name,
            self._context_doc(context, flow),
            context.flow_id,
            checkpoint_id=checkpoint_id,
            allowed_actions=self.allowed_actions,
            expires_in=self.expires_in,
            on_timeout=self.on_timeout,
            retry_for=self.timeout if self.timeout is not None else 60.0,
        )
        return checkpoint_id

    def request_feedback(self, context: PendingFeedbackContext, flow: Any) -> str:
        """CrewAI's hook: pause (raise ``HumanFeedbackPending``) or wait and return text."""
        checkpoint_id = self.create_checkpoint(context, flow)
        if self.mode == "pending":
            log.info("flow %s paused at %s for checkpoint %s", context.flow_id, context.method_name, checkpoint_id)
            raise HumanFeedbackPending(
                context=context,
                callback_info={"checkpoint_id": checkpoint_id, "hitlhook_url": self.client.base_url},
                message=f"waiting for hitlhook checkpoint {checkpoint_id}",
            )
        decision = self.client.wait_for_decision(checkpoint_id, timeout=self.timeout, raise_on_stop=False)
        route = route_decision(decision, context.emit, context.default_outcome, self.outcomes)
        if not route.resume:
            raise CheckpointStopped(decision)
        if route.outcome is not None and route.feedback.strip():
            remember_outcome(route.feedback, route.outcome)
        return route.feedback
