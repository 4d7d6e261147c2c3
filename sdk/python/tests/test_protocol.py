"""Request bodies, local validation and how checkpoint answers are read (no I/O)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

import hitlhook
from hitlhook import _protocol as p
from hitlhook.models import Checkpoint


def test_event_body_has_type_id_kickoff_and_rfc3339_timestamp() -> None:
    body, eid = p.event_body("task.started", {"task_name": "t", "kickoff_id": "ignored"}, kickoff_id="k1")
    assert body["event_type"] == "task.started" and body["event_id"] == eid and body["kickoff_id"] == "k1"
    assert body["task_name"] == "t"
    assert body["timestamp"].endswith("Z") and datetime.fromisoformat(body["timestamp"][:-1])
    body2, _ = p.event_body("x", {}, timestamp=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc))
    assert body2["timestamp"] == "2026-01-02T03:04:05.678Z"


def test_dumps_is_compact_and_handles_odd_values() -> None:
    import uuid

    raw = p.dumps({"u": uuid.UUID(int=1), "d": datetime(2026, 1, 1, tzinfo=timezone.utc), "s": {1}, "x": object()})
    data = json.loads(raw)
    assert data["u"] == "00000000-0000-0000-0000-000000000001"
    assert data["d"] == "2026-01-01T00:00:00.000Z" and data["s"] == [1] and data["x"].startswith("<object")
    assert b": " not in raw


def test_webhook_id_for_keeps_safe_ids_and_hashes_others() -> None:
    assert p.webhook_id_for("0b8e-uuid_like") == "0b8e-uuid_like"
    hashed = p.webhook_id_for("has.dots/and slashes")
    assert hashed.startswith("msg_") and "." not in hashed and hashed == p.webhook_id_for("has.dots/and slashes")


def test_checkpoint_fields_validate_locally() -> None:
    f = p.checkpoint_fields("approve", {"a": 1}, allowed_actions=["continue", "stop", "continue"], expires_in=1.2, on_timeout="stop")
    assert f["checkpoint_name"] == "approve" and f["context"] == {"a": 1}
    assert f["allowed_actions"] == ["continue", "stop"] and f["expires_in"] == 2 and f["on_timeout"] == "stop"
    assert f["checkpoint_id"]
    for bad in (
        dict(allowed_actions=["approve"]),
        dict(allowed_actions=[]),
        dict(on_timeout="revise"),
        dict(allowed_actions=["continue"], on_timeout="stop"),
        dict(expires_in=5, expires_at="2030-01-01T00:00:00Z"),
    ):
        with pytest.raises(ValueError):
            p.checkpoint_fields("n", {}, **bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        p.checkpoint_fields("n", "not an object")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        p.checkpoint_fields("", {})


def test_decision_body_requires_feedback_for_revise() -> None:
    assert p.decision_body("continue", None, "ann", "slack", "cp") == {"checkpoint_id": "cp", "action": "continue", "decided_by": "ann", "channel": "slack"}
    with pytest.raises(ValueError):
        p.decision_body("revise", "  ", None, None)
    with pytest.raises(ValueError):
        p.decision_body("approve", None, None, None)


def cp(status: str, decision: dict | None = None, on_timeout: str | None = None) -> Checkpoint:
    return Checkpoint.from_json(
        {"checkpoint_id": "c1", "checkpoint_name": "n", "kickoff_id": "k", "status": status, "context": {},
         "allowed_actions": ["continue", "stop"], "created_at": "2026-01-01T00:00:00Z", "expires_at": None,
         "on_timeout": on_timeout, "decision": decision, "closed_reason": None}
    )


def test_settled_decision_reads_each_state() -> None:
    assert p.settled_decision(cp("pending"), raise_on_stop=True) is None
    d = p.settled_decision(cp("decided", {"action": "revise", "feedback": "more", "decided_by": "ann", "channel": "api", "decided_at": "2026-01-01T00:00:01Z"}), raise_on_stop=True)
    assert d is not None and d.action == "revise" and d.feedback == "more" and d.revise and d.checkpoint_id == "c1"
    assert d.decided_at == datetime(2026, 1, 1, 0, 0, 1, tzinfo=timezone.utc)
    with pytest.raises(hitlhook.CheckpointStopped) as info:
        p.settled_decision(cp("decided", {"action": "stop"}), raise_on_stop=True)
    assert info.value.decision.action == "stop"
    assert p.settled_decision(cp("decided", {"action": "stop"}), raise_on_stop=False).stopped  # type: ignore[union-attr]
    expired = p.settled_decision(cp("expired", None, on_timeout="continue"), raise_on_stop=True)
    assert expired is not None and expired.action == "continue"
    with pytest.raises(hitlhook.CheckpointClosed):
        p.settled_decision(cp("cancelled"), raise_on_stop=True)


def test_wait_seconds_respects_server_limit() -> None:
    assert p.wait_seconds(None, 30) == 30
    assert p.wait_seconds(0.2, 30) == 1
    assert p.wait_seconds(1000, 1000) == 300
    assert p.wait_seconds(0, 30) == 0
