"""The wire protocol shared by the sync and async clients: paths, bodies, headers and how
answers are read. No I/O happens here."""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone
from enum import Enum
from typing import Any, Iterable, Mapping
from urllib.parse import quote

from . import signing
from .errors import ApiError, CheckpointClosed, CheckpointStopped, ServerError, error_from_response
from .models import Checkpoint, Decision, EventReceipt, normalize_actions

USER_AGENT = "hitlhook-python/0.1.0"
INGEST_PATH = "/webhook/crewai"
FEEDBACK_PATH = "/webhook/feedback"
MAX_SERVER_WAIT = 300

_SAFE_ID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")


def utc_now_rfc3339() -> str:
    """Now as RFC 3339 UTC with a ``Z`` and millisecond precision."""
    return to_rfc3339(datetime.now(timezone.utc))


def to_rfc3339(value: datetime) -> str:
    """An aware or naive (taken as UTC) datetime as ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def json_default(value: Any) -> Any:
    """``json.dumps`` fallback: datetimes, UUIDs, enums, sets, pydantic models, else ``str``."""
    if isinstance(value, datetime):
        return to_rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json")
        except Exception:  # noqa: BLE001 - fall back to str for exotic models
            pass
    return str(value)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, the exact bytes that get signed and sent."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=json_default).encode("utf-8")


def webhook_id_for(event_id: str) -> str:
    """A Standard Webhooks id derived from an event id, stable across retries."""
    if _SAFE_ID.match(event_id):
        return event_id
    return "msg_" + hashlib.sha256(event_id.encode("utf-8")).hexdigest()[:32]


def event_body(
    event_type: str,
    fields: Mapping[str, Any] | None = None,
    *,
    kickoff_id: str | None = None,
    event_id: str | None = None,
    timestamp: str | datetime | None = None,
) -> tuple[dict[str, Any], str]:
    """An event document and its event id (generated when absent)."""
    if not event_type:
        raise ValueError("event_type is required")
    body: dict[str, Any] = {"event_type": event_type}
    eid = event_id or str(uuid.uuid4())
    body["event_id"] = eid
    if kickoff_id is not None:
        body["kickoff_id"] = str(kickoff_id)
    if isinstance(timestamp, datetime):
        body["timestamp"] = to_rfc3339(timestamp)
    else:
        body["timestamp"] = timestamp or utc_now_rfc3339()
    for key, value in (fields or {}).items():
        if key in body and key != "kickoff_id":
            continue
        if key == "kickoff_id" and kickoff_id is not None:
            continue
        body[key] = value
    return body, eid


def checkpoint_fields(
    checkpoint_name: str,
    context: Any = None,
    *,
    checkpoint_id: str | None = None,
    allowed_actions: Iterable[str] | None = None,
    expires_in: int | float | None = None,
    expires_at: str | datetime | None = None,
    on_timeout: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``checkpoint.required`` fields, validated locally so mistakes fail before sending."""
    if not checkpoint_name:
        raise ValueError("checkpoint_name is required")
    if context is not None and not isinstance(context, (Mapping, list, tuple)):
        raise ValueError("context must be a JSON object or array")
    actions = normalize_actions(allowed_actions)
    if on_timeout is not None:
        if on_timeout == "revise":
            raise ValueError("on_timeout cannot be 'revise' (it needs feedback text)")
        if actions is not None and on_timeout not in actions:
            raise ValueError(f"on_timeout {on_timeout!r} is not among allowed_actions {actions}")
        normalize_actions([on_timeout])
    if expires_in is not None and expires_at is not None:
        raise ValueError("give expires_in or expires_at, not both")
    fields: dict[str, Any] = dict(extra or {})
    fields["checkpoint_id"] = checkpoint_id or str(uuid.uuid4())
    fields["checkpoint_name"] = checkpoint_name
    fields["context"] = dict(context) if isinstance(context, Mapping) else list(context) if context is not None else {}
    if actions is not None:
        fields["allowed_actions"] = actions
    if expires_in is not None:
        fields["expires_in"] = max(1, int(math.ceil(expires_in)))
    if expires_at is not None:
        fields["expires_at"] = to_rfc3339(expires_at) if isinstance(expires_at, datetime) else expires_at
    if on_timeout is not None:
        fields["on_timeout"] = on_timeout
    return fields


def decision_body(
    action: str,
    feedback: str | None,
    decided_by: str | None,
    channel: str | None,
    checkpoint_id: str | None = None,
) -> dict[str, Any]:
    """A decision document for ``/webhook/feedback`` (with ``checkpoint_id``) or
    ``/v1/checkpoints/{id}/decision`` (without)."""
    action = normalize_actions([action])[0]  # type: ignore[index]
    if action == "revise" and not (feedback or "").strip():
        raise ValueError("revise needs non-empty feedback")
    body: dict[str, Any] = {}
    if checkpoint_id is not None:
        body["checkpoint_id"] = checkpoint_id
    body["action"] = action
    if feedback is not None:
        body["feedback"] = feedback
    if decided_by is not None:
        body["decided_by"] = decided_by
    if channel is not None:
        body["channel"] = channel
    return body


@dataclass(frozen=True)
class Credentials:
    """What the client authenticates with. ``repr`` never shows the values."""

    api_key: str | None = None
    secret: str | None = None
    seed_timestamp: bool = True

    def __repr__(self) -> str:
        return (
            f"Credentials(api_key={'***' if self.api_key else None}, "
            f"secret={'***' if self.secret else None})"
        )

    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def require_api_key(self, what: str) -> None:
        if not self.api_key:
            raise ValueError(f"{what} needs an API key (api_key= or HITLHOOK_API_KEY)")

    def ingest_headers(self, body: bytes, webhook_id: str) -> dict[str, str]:
        """Headers for one delivery attempt: signatures if a secret is set, plus the bearer
        key if one is set. Called again on each retry so timestamps stay fresh."""
        if not self.secret and not self.api_key:
            raise ValueError("sending events needs a webhook secret or an API key")
        headers = {"Content-Type": "application/json"}
        if self.secret:
            headers.update(signing.sign_headers(self.secret, body, webhook_id=webhook_id, seed_timestamp=self.seed_timestamp))
        else:
            headers["webhook-id"] = webhook_id
        headers.update(self.bearer())
        return headers


def checkpoint_path(checkpoint_id: str) -> str:
    return f"/webhook/checkpoint/{quote(checkpoint_id, safe='')}"


def decision_path(checkpoint_id: str) -> str:
    return f"/v1/checkpoints/{quote(checkpoint_id, safe='')}/decision"


def status_path(kickoff_id: str) -> str:
    return f"/webhook/status/{quote(kickoff_id, safe='')}"


def events_path(kickoff_id: str) -> str:
    return f"/v1/executions/{quote(kickoff_id, safe='')}/events"


def wait_seconds(remaining: float | None, poll_wait: float) -> int:
    """Whole seconds to ask the server to hold a long-poll, within its 300 s limit."""
    chunk = poll_wait if remaining is None else min(poll_wait, remaining)
    return int(max(0, min(MAX_SERVER_WAIT, math.ceil(chunk))))


def raise_for_status(status: int, content: bytes, method: str, path: str) -> None:
    """Raise the mapped :class:`~hitlhook.errors.ApiError` for any 4xx/5xx answer."""
    if status >= 400:
        raise error_from_response(status, content, method=method, path=path)


def is_retryable_status(status: int) -> bool:
    """Answers worth retrying: the server or a proxy in front of it is busy or restarting."""
    return status in (408, 425, 429) or status >= 500


def is_retryable_error(exc: BaseException) -> bool:
    return isinstance(exc, ServerError) or (isinstance(exc, ApiError) and is_retryable_status(exc.status))


def receipt(status_json: Any, replayed_header: str | None) -> EventReceipt:
    replayed = (replayed_header or "").strip().lower() == "true"
    return EventReceipt.from_json(status_json if isinstance(status_json, Mapping) else {}, replayed=replayed)


def settled_decision(cp: Checkpoint, *, raise_on_stop: bool) -> Decision | None:
    """The decision if ``cp`` is settled, ``None`` while it is pending.

    Raises:
        CheckpointStopped: the decision is ``stop`` and ``raise_on_stop`` is set.
        CheckpointClosed: the checkpoint was closed (expired or cancelled) with no decision.
    """
    if cp.status == "pending" and cp.decision is None:
        return None
    decision = cp.decision
    if decision is None and cp.status == "expired" and cp.on_timeout:
        decision = Decision(checkpoint_id=cp.checkpoint_id, action=cp.on_timeout, decided_by="hitlhook:timeout", checkpoint=cp)
    if decision is None:
        reason = cp.closed_reason or cp.status
        raise CheckpointClosed(
            409,
            "checkpoint_closed",
            "Checkpoint closed",
            f"checkpoint {cp.checkpoint_id} is {cp.status} ({reason}) without a decision",
            {"checkpoint": cp.raw},
            checkpoint=cp,
        )
    if raise_on_stop and decision.action == "stop":
        raise CheckpointStopped(decision)
    return decision
