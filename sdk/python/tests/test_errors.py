"""Problem+json answers become specific, readable exceptions."""

from __future__ import annotations

import json

import pytest

import hitlhook
from hitlhook.errors import error_from_response


def problem(status: int, code: str, **extra: object) -> bytes:
    return json.dumps({"type": "about:blank", "title": "T", "status": status, "code": code, "detail": f"d-{code}", **extra}).encode()


@pytest.mark.parametrize(
    "status, code, cls",
    [
        (401, "invalid_signature", hitlhook.SignatureRejected),
        (401, "stale_timestamp", hitlhook.SignatureRejected),
        (401, "missing_signature", hitlhook.SignatureRejected),
        (401, "malformed_signature", hitlhook.SignatureRejected),
        (401, "future_timestamp", hitlhook.SignatureRejected),
        (401, "unauthorized", hitlhook.Unauthorized),
        (401, "invalid_api_key", hitlhook.Unauthorized),
        (403, "forbidden", hitlhook.Forbidden),
        (404, "not_found", hitlhook.NotFound),
        (409, "already_decided", hitlhook.AlreadyDecided),
        (409, "checkpoint_closed", hitlhook.CheckpointClosed),
        (422, "action_not_allowed", hitlhook.ActionNotAllowed),
        (422, "feedback_required", hitlhook.FeedbackRequired),
        (400, "malformed_json", hitlhook.MalformedJson),
        (422, "invalid_event", hitlhook.InvalidEvent),
        (413, "payload_too_large", hitlhook.PayloadTooLarge),
        (415, "unsupported_media_type", hitlhook.UnsupportedMediaType),
        (500, "internal_error", hitlhook.ServerError),
        (400, "invalid_query", hitlhook.BadRequest),
        (503, "unavailable", hitlhook.ServerError),
        (418, "teapot", hitlhook.ApiError),
    ],
)
def test_codes_map_to_classes(status: int, code: str, cls: type) -> None:
    err = error_from_response(status, problem(status, code), method="POST", path="/x")
    assert type(err) is cls
    assert isinstance(err, hitlhook.HitlError)
    assert err.status == status and err.code == code and err.detail == f"d-{code}"
    assert str(err) == f"POST /x: {status} T [{code}]: d-{code}"


def test_unknown_code_falls_back_to_status() -> None:
    assert type(error_from_response(404, problem(404, "no_such_thing"))) is hitlhook.NotFound
    assert type(error_from_response(422, problem(422, "something_new"))) is hitlhook.BadRequest


def test_non_json_body_keeps_a_snippet() -> None:
    err = error_from_response(502, b"<html>Bad Gateway</html>")
    assert isinstance(err, hitlhook.ServerError)
    assert err.code is None and err.problem == {}
    assert err.detail == "<html>Bad Gateway</html>"


def test_already_decided_exposes_the_winning_decision() -> None:
    err = error_from_response(409, problem(409, "already_decided", decision={"action": "stop", "decided_by": "ann"}))
    assert isinstance(err, hitlhook.AlreadyDecided)
    assert err.existing == {"action": "stop", "decided_by": "ann"}


def test_stop_and_timeout_messages_are_clear() -> None:
    d = hitlhook.Decision(checkpoint_id="cp1", action="stop", feedback="too risky", decided_by="ann")
    assert str(hitlhook.CheckpointStopped(d)) == "checkpoint cp1 was stopped by ann: too risky"
    assert "cp1" in str(hitlhook.DecisionTimeout("cp1", 2.5)) and "2.5" in str(hitlhook.DecisionTimeout("cp1", 2.5))


def test_client_repr_hides_secrets() -> None:
    c = hitlhook.HitlClient("http://127.0.0.1:1", api_key="very-secret-key", secret="very-secret-secret")
    try:
        assert "very-secret" not in repr(c)
        assert "***" in repr(c)
    finally:
        c.close()
