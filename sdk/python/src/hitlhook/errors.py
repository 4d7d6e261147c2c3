"""Exceptions raised by the hitlhook client.

Every error the server answers is ``application/problem+json`` with a stable snake_case
``code``; :func:`error_from_response` turns such a body into the most specific exception
below, keeping the whole problem document on ``.problem``. Nothing here ever holds a
secret: request headers are never stored on an exception.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # pragma: no cover
    from .models import Checkpoint, Decision

__all__ = [
    "HitlError",
    "HitlConnectionError",
    "ApiError",
    "BadRequest",
    "InvalidEvent",
    "MalformedJson",
    "ActionNotAllowed",
    "FeedbackRequired",
    "SignatureRejected",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "AlreadyDecided",
    "CheckpointClosed",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "ServerError",
    "CheckpointStopped",
    "DecisionTimeout",
    "error_from_response",
]


class HitlError(Exception):
    """Base class of every exception raised by :mod:`hitlhook`."""


class HitlConnectionError(HitlError):
    """hitlhook could not be reached (connection refused, reset, DNS, timeout) and the
    operation gave up retrying."""


class ApiError(HitlError):
    """The server answered with an error status.

    Attributes:
        status: the HTTP status code.
        code: the problem's stable snake_case ``code`` (``None`` if the body was not
            problem+json, e.g. from a proxy).
        title: the problem's short title.
        detail: the problem's human-readable explanation.
        problem: the whole decoded problem document (empty if the body was not JSON).
    """

    default_status: int | None = None

    def __init__(
        self,
        status: int,
        code: str | None = None,
        title: str | None = None,
        detail: str | None = None,
        problem: Mapping[str, Any] | None = None,
        *,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.problem: dict[str, Any] = dict(problem or {})
        self.method = method
        self.path = path
        super().__init__(self._message())

    def _message(self) -> str:
        where = f"{self.method} {self.path}: " if self.method and self.path else ""
        what = self.title or "HTTP error"
        code = f" [{self.code}]" if self.code else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{where}{self.status} {what}{code}{detail}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, detail={self.detail!r})"


class BadRequest(ApiError):
    """400/422: the request was refused as invalid."""


class MalformedJson(BadRequest):
    """The body was not valid JSON (``malformed_json``)."""


class InvalidEvent(BadRequest):
    """The event did not match the schema (``invalid_event``)."""


class ActionNotAllowed(BadRequest):
    """The action is not among the checkpoint's ``allowed_actions`` (``action_not_allowed``)."""


class FeedbackRequired(BadRequest):
    """``revise`` needs non-empty feedback (``feedback_required``)."""


class SignatureRejected(ApiError):
    """401: the webhook signature was missing, wrong, malformed or outside the time window
    (``invalid_signature``, ``missing_signature``, ``malformed_signature``,
    ``stale_timestamp``, ``future_timestamp``). Check ``WEBHOOK_SECRET`` and the clock."""


class Unauthorized(ApiError):
    """401: the API key was missing (``unauthorized``) or unknown/revoked (``invalid_api_key``)."""


class Forbidden(ApiError):
    """403: the API key is valid but lacks the scope for this call (``forbidden``)."""


class NotFound(ApiError):
    """404: no such checkpoint, execution or route (``not_found``)."""


class Conflict(ApiError):
    """409: the request conflicts with the current state."""


class AlreadyDecided(Conflict):
    """409 ``already_decided``: another decision won first.

    ``existing`` holds the winning decision as sent by the server (a dict).
    """

    @property
    def existing(self) -> dict[str, Any] | None:
        decision = self.problem.get("decision")
        return decision if isinstance(decision, dict) else None


class CheckpointClosed(Conflict):
    """The checkpoint can no longer be decided: it expired or was cancelled
    (``checkpoint_closed``), or a wait found it closed without a usable decision."""

    def __init__(self, *args: Any, checkpoint: Checkpoint | None = None, **kwargs: Any) -> None:
        self.checkpoint = checkpoint
        super().__init__(*args, **kwargs)


class PayloadTooLarge(ApiError):
    """413 ``payload_too_large``: the event body is over the server's limit."""


class UnsupportedMediaType(ApiError):
    """415 ``unsupported_media_type``: the body must be ``application/json``."""


class ServerError(ApiError):
    """5xx: the server failed. Waiting calls retry these; one-shot calls raise them."""


class CheckpointStopped(HitlError):
    """A human decided ``stop``. ``decision`` holds who and why."""

    def __init__(self, decision: Decision, message: str | None = None) -> None:
        self.decision = decision
        who = f" by {decision.decided_by}" if decision.decided_by else ""
        why = f": {decision.feedback}" if decision.feedback else ""
        super().__init__(message or f"checkpoint {decision.checkpoint_id} was stopped{who}{why}")


class DecisionTimeout(HitlError):
    """No decision arrived within the caller's timeout. The checkpoint stays pending on the
    server; ``checkpoint_id`` lets you wait again later."""

    def __init__(self, checkpoint_id: str, waited: float) -> None:
        self.checkpoint_id = checkpoint_id
        self.waited = waited
        super().__init__(f"no decision for checkpoint {checkpoint_id} after {waited:.1f}s")


_BY_CODE: dict[str, type[ApiError]] = {
    "invalid_signature": SignatureRejected,
    "stale_timestamp": SignatureRejected,
    "missing_signature": SignatureRejected,
    "malformed_signature": SignatureRejected,
    "future_timestamp": SignatureRejected,
    "unauthorized": Unauthorized,
    "invalid_api_key": Unauthorized,
    "forbidden": Forbidden,
    "not_found": NotFound,
    "already_decided": AlreadyDecided,
    "checkpoint_closed": CheckpointClosed,
    "action_not_allowed": ActionNotAllowed,
    "feedback_required": FeedbackRequired,
    "malformed_json": MalformedJson,
    "invalid_event": InvalidEvent,
    "payload_too_large": PayloadTooLarge,
    "unsupported_media_type": UnsupportedMediaType,
}

_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: BadRequest,
}


def error_class_for(status: int, code: str | None) -> type[ApiError]:
    """The exception class for a status and problem code: the code wins, then the status."""
    if code and code in _BY_CODE:
        return _BY_CODE[code]
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, ApiError)


def error_from_response(
    status: int,
    body: bytes | str,
    *,
    method: str | None = None,
    path: str | None = None,
) -> ApiError:
    """Build the exception for an error response from its status and raw body.

    A problem+json body gives ``code``, ``title`` and ``detail``; any other body (an HTML
    page from a proxy, say) gives a generic error whose detail is the first 200 characters.
    """
    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else body
    problem: dict[str, Any] = {}
    try:
        decoded = json.loads(text) if text else {}
        if isinstance(decoded, dict):
            problem = decoded
    except ValueError:
        pass
    code = problem.get("code") if isinstance(problem.get("code"), str) else None
    title = problem.get("title") if isinstance(problem.get("title"), str) else None
    detail = problem.get("detail") if isinstance(problem.get("detail"), str) else None
    if not problem and text:
        detail = text.strip()[:200]
    cls = error_class_for(status, code)
    return cls(status, code, title, detail, problem, method=method, path=path)
