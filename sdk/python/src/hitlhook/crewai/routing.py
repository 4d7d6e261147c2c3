"""How a hitlhook decision becomes ``@human_feedback`` input: the feedback text and the
``emit`` outcome it must route to. Pure logic, no CrewAI import.

With ``emit`` labels:

* ``continue`` -> the "approve" label (``outcomes["continue"]``, else a label such as
  ``approved``/``approve``/``continue``, else ``emit[0]``);
* ``stop`` -> the "reject" label (``outcomes["stop"]``, else ``rejected``/``stop``/...); if
  the flow has none, the flow is not resumed at all (the pending review is dropped);
* ``skip`` -> ``outcomes["skip"]`` or a ``skip``/``skipped`` label, else empty feedback,
  which CrewAI routes to ``default_outcome`` (or ``emit[0]``) without any LLM;
* ``revise`` -> ``outcomes["revise"]``, else ``revise``/``needs_changes``/..., else the
  "reject" label; the reviewer's text is the feedback the flow sees.

The feedback text is the reviewer's own text when there is one, else the label itself.
Without ``emit`` the flow gets the text (``""`` for ``skip`` and a bare ``continue``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from ..models import Decision

__all__ = ["Route", "route_decision", "guess_outcome", "SYNONYMS"]

SYNONYMS: dict[str, tuple[str, ...]] = {
    "continue": ("continue", "approved", "approve", "accept", "accepted", "proceed", "publish", "yes", "ok", "go"),
    "stop": ("stop", "stopped", "rejected", "reject", "cancel", "cancelled", "canceled", "abort", "denied", "deny", "no"),
    "revise": (
        "revise", "revised", "revision", "needs_revision", "needs_changes", "request_changes",
        "changes_requested", "changes", "rework", "redo", "retry", "edit",
    ),
    "skip": ("skip", "skipped"),
}


def guess_outcome(action: str, emit: Sequence[str], outcomes: Mapping[str, str] | None = None) -> str | None:
    """The ``emit`` label for ``action``: the explicit mapping, else a known synonym
    (case-insensitive), else ``None``."""
    if outcomes and outcomes.get(action):
        label = outcomes[action]
        if label not in emit:
            raise ValueError(f"outcomes[{action!r}] = {label!r} is not one of emit {list(emit)}")
        return label
    lowered = {label.lower(): label for label in emit}
    for word in SYNONYMS.get(action, ()):
        if word in lowered:
            return lowered[word]
    return None


@dataclass(frozen=True)
class Route:
    """Where a decision sends a paused ``@human_feedback`` method."""

    action: str
    feedback: str
    """The text to pass to ``resume()`` (or return from the provider)."""
    outcome: str | None
    """The ``emit`` label it must route to (``None`` without ``emit``, or when empty
    feedback lets CrewAI pick ``default_outcome``)."""
    resume: bool = True
    """False for ``stop`` on a flow with no stop label: end it instead of resuming."""


def route_decision(
    decision: Decision,
    emit: Sequence[str] | None,
    default_outcome: str | None = None,
    outcomes: Mapping[str, str] | None = None,
) -> Route:
    """Map a decision to feedback text and outcome. See the module docstring for the rules."""
    action = decision.action
    text = (decision.feedback or "").strip()
    if not emit:
        if action == "stop":
            return Route(action, text, None, resume=False)
        if action == "skip":
            return Route(action, "", None)
        return Route(action, text, None)
    labels = list(emit)
    label: str | None
    if action == "continue":
        label = guess_outcome("continue", labels, outcomes) or labels[0]
        return Route(action, text or label, label)
    if action == "stop":
        label = guess_outcome("stop", labels, outcomes)
        if label is None:
            return Route(action, text, None, resume=False)
        return Route(action, text or label, label)
    if action == "skip":
        label = guess_outcome("skip", labels, outcomes)
        if label is None:
            return Route(action, "", default_outcome or labels[0])
        return Route(action, label, label)
    if action == "revise":
        label = guess_outcome("revise", labels, outcomes) or guess_outcome("stop", labels, outcomes)
        if label is None:
            raise ValueError(
                f"cannot route 'revise' into emit {labels}: pass outcomes={{'revise': '<label>'}}"
            )
        return Route(action, text or label, label)
    raise ValueError(f"unknown action {action!r}")
