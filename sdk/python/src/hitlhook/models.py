"""Typed views of the server's JSON answers.

Each class keeps the decoded JSON on ``.raw`` so fields added by newer servers are never lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Generic, Iterable, Literal, Mapping, Optional, TypeVar

__all__ = [
    "Action",
    "ActionName",
    "ALL_ACTIONS",
    "Decision",
    "Checkpoint",
    "EventReceipt",
    "ExecutionStatus",
    "Page",
    "parse_time",
]

ActionName = Literal["continue", "stop", "revise", "skip"]


class Action(str, Enum):
    """What a human can decide at a checkpoint."""

    CONTINUE = "continue"
    """Accept the work and go on."""
    STOP = "stop"
    """End the execution."""
    REVISE = "revise"
    """Redo the work with the reviewer's feedback."""
    SKIP = "skip"
    """Accept as is without review; recorded as skipped."""

    def __str__(self) -> str:  # "continue", not "Action.CONTINUE"
        return self.value


ALL_ACTIONS: tuple[str, ...] = tuple(a.value for a in Action)


def normalize_actions(actions: Iterable[str | Action] | None) -> list[str] | None:
    """Validate and de-duplicate a list of actions, keeping its order."""
    if actions is None:
        return None
    out: list[str] = []
    for a in actions:
        value = Action(str(a)).value  # ValueError names the bad one
        if value not in out:
            out.append(value)
    if not out:
        raise ValueError("allowed_actions must not be empty")
    return out


def parse_time(value: Any) -> datetime | None:
    """Parse an RFC 3339 timestamp (``...Z`` or with an offset); ``None`` stays ``None``."""
    if not isinstance(value, str) or not value:
        return None
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Decision:
    """A human's decision on a checkpoint."""

    checkpoint_id: str
    action: str
    """``continue``, ``stop``, ``revise`` or ``skip``."""
    feedback: str | None = None
    decided_by: str | None = None
    channel: str | None = None
    decided_at: datetime | None = None
    checkpoint: Optional["Checkpoint"] = field(default=None, repr=False, compare=False)

    @property
    def accepted(self) -> bool:
        """True for ``continue`` and ``skip``: the work goes on unchanged."""
        return self.action in ("continue", "skip")

    @property
    def stopped(self) -> bool:
        return self.action == "stop"

    @property
    def revise(self) -> bool:
        return self.action == "revise"

    @property
    def skipped(self) -> bool:
        return self.action == "skip"

    @classmethod
    def from_json(cls, data: Mapping[str, Any], checkpoint_id: str, checkpoint: "Checkpoint | None" = None) -> "Decision":
        return cls(
            checkpoint_id=checkpoint_id,
            action=str(data.get("action", "")),
            feedback=_str(data.get("feedback")),
            decided_by=_str(data.get("decided_by")),
            channel=_str(data.get("channel")),
            decided_at=parse_time(data.get("decided_at")),
            checkpoint=checkpoint,
        )


@dataclass(frozen=True)
class Checkpoint:
    """A point where an execution waits for a human (``GET /webhook/checkpoint/{id}``)."""

    checkpoint_id: str
    checkpoint_name: str | None
    kickoff_id: str | None
    status: str
    """``pending``, ``decided``, ``expired`` or ``cancelled``."""
    context: Any = None
    allowed_actions: list[str] = field(default_factory=list)
    created_at: datetime | None = None
    expires_at: datetime | None = None
    on_timeout: str | None = None
    decision: Decision | None = None
    closed_reason: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def pending(self) -> bool:
        return self.status == "pending"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Checkpoint":
        cid = str(data.get("checkpoint_id", ""))
        cp = cls(
            checkpoint_id=cid,
            checkpoint_name=_str(data.get("checkpoint_name")),
            kickoff_id=_str(data.get("kickoff_id")),
            status=str(data.get("status", "")),
            context=data.get("context"),
            allowed_actions=[str(a) for a in data.get("allowed_actions") or []],
            created_at=parse_time(data.get("created_at")),
            expires_at=parse_time(data.get("expires_at")),
            on_timeout=_str(data.get("on_timeout")),
            closed_reason=_str(data.get("closed_reason")),
            raw=dict(data),
        )
        decision = data.get("decision")
        if isinstance(decision, Mapping):
            object.__setattr__(cp, "decision", Decision.from_json(decision, cid, cp))
        return cp


@dataclass(frozen=True)
class EventReceipt:
    """The server's answer to an ingested event."""

    event_id: str
    """The identity the server deduplicates on (prefixed, e.g. ``wh:msg_...``)."""
    seq: int
    event_type: str
    kickoff_id: str | None = None
    checkpoint_id: str | None = None
    replayed: bool = False
    """True when the server recognised a redelivery (``Idempotent-Replayed: true``)."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], replayed: bool = False) -> "EventReceipt":
        return cls(
            event_id=str(data.get("event_id", "")),
            seq=int(data.get("seq", 0) or 0),
            event_type=str(data.get("event_type", "")),
            kickoff_id=_str(data.get("kickoff_id")),
            checkpoint_id=_str(data.get("checkpoint_id")),
            replayed=replayed,
            raw=dict(data),
        )


@dataclass(frozen=True)
class ExecutionStatus:
    """``GET /webhook/status/{kickoff_id}``: an execution, its checkpoints and recent events."""

    kickoff_id: str
    status: str
    """``running``, ``waiting_for_human``, ``completed``, ``failed`` or ``stopped``."""
    events_total: int
    checkpoints: list[Checkpoint]
    recent_events: list[dict[str, Any]]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ExecutionStatus":
        execution = data.get("execution") or {}
        return cls(
            kickoff_id=str(execution.get("kickoff_id", "")),
            status=str(execution.get("status", "")),
            events_total=int(execution.get("events_total", 0) or 0),
            checkpoints=[Checkpoint.from_json(c) for c in data.get("checkpoints") or []],
            recent_events=[dict(e) for e in data.get("recent_events") or []],
            raw=dict(data),
        )


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; pass ``next_cursor`` back to get the next one."""

    items: list[T]
    next_cursor: str | None
