"""HitlClient, AsyncHitlClient and the seed helpers against the real hitlhook binary."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest

import hitlhook
from hitlhook import AsyncHitlClient, Backoff, HitlClient, send_checkpoint_webhook
from hitlhook import _protocol as p

from conftest import API_KEY, SECRET


def kid() -> str:
    return f"k-{uuid.uuid4().hex[:12]}"


def test_signed_event_is_accepted_and_redelivery_is_replayed(client: HitlClient) -> None:
    k = kid()
    first = client.send_event("task.started", {"task_name": "research"}, kickoff_id=k, event_id="ev-fixed-" + k)
    assert first.event_type == "task.started" and first.kickoff_id == k and first.seq > 0
    assert first.replayed is False
    again = client.send_event("task.started", {"task_name": "research"}, kickoff_id=k, event_id="ev-fixed-" + k)
    assert again.replayed is True
    assert (again.seq, again.event_id) == (first.seq, first.event_id)
    events = client.list_events(k).items
    assert [e["event_type"] for e in events] == ["task.started"]
    assert events[0]["payload"]["task_name"] == "research"


@pytest.mark.parametrize("scheme", ["seed-only", "standard-only", "seed-with-timestamp", "bearer"])
def test_each_auth_scheme_is_accepted(server, scheme: str) -> None:
    from hitlhook import signing

    body = p.dumps({"event_type": "crew.started", "event_id": f"auth-{scheme}-{uuid.uuid4()}", "kickoff_id": kid()})
    ts = int(time.time())
    if scheme == "seed-only":
        headers = {"X-CrewAI-Signature": signing.seed_signature(SECRET, body)}
    elif scheme == "seed-with-timestamp":
        headers = {"X-CrewAI-Signature": signing.seed_signature(SECRET, body, ts), "X-CrewAI-Timestamp": str(ts)}
    elif scheme == "standard-only":
        headers = {"webhook-id": "msg_" + uuid.uuid4().hex, "webhook-timestamp": str(ts),
                   "webhook-signature": signing.standard_webhooks_signature(SECRET, "msg_x", ts, body)}
        headers["webhook-signature"] = signing.standard_webhooks_signature(SECRET, headers["webhook-id"], ts, body)
    else:
        headers = {"Authorization": f"Bearer {API_KEY}"}
    resp = httpx.post(server.url + "/webhook/crewai", content=body, headers={"Content-Type": "application/json", **headers})
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "accepted"


def test_wrong_secret_is_signature_rejected(server) -> None:
    with HitlClient(server.url, secret="not-the-secret", max_retries=1) as bad:
        with pytest.raises(hitlhook.SignatureRejected) as info:
            bad.send_event("task.started", kickoff_id=kid())
    assert info.value.status == 401
    assert info.value.code in ("invalid_signature", "missing_signature", "stale_timestamp")
    assert "not-the-secret" not in str(info.value) and "not-the-secret" not in repr(info.value)


def test_missing_or_unknown_api_key_is_unauthorized(server) -> None:
    with HitlClient(server.url, api_key="nope", max_retries=1) as bad:
        with pytest.raises(hitlhook.Unauthorized) as info:
            bad.status("whatever")
    assert info.value.status == 401 and info.value.code == "invalid_api_key" and "nope" not in str(info.value)
    resp = httpx.get(server.url + "/webhook/status/whatever")
    assert resp.status_code == 401
    err = hitlhook.errors.error_from_response(resp.status_code, resp.content)
    assert isinstance(err, hitlhook.Unauthorized) and err.code == "unauthorized"


def test_unknown_checkpoint_is_not_found(client: HitlClient) -> None:
    with pytest.raises(hitlhook.NotFound) as info:
        client.get_checkpoint("no-such-checkpoint")
    assert info.value.status == 404 and info.value.code == "not_found"


def test_invalid_event_is_reported_with_the_servers_detail(client: HitlClient) -> None:
    with pytest.raises(hitlhook.BadRequest) as info:
        client.send_event("checkpoint.required", {"context": "not an object", "checkpoint_name": "x"}, kickoff_id=kid())
    assert info.value.status in (400, 422)
    assert info.value.code == "invalid_event"
    assert "context" in (info.value.detail or "")


def test_checkpoint_lifecycle_and_first_decision_wins(client: HitlClient, server) -> None:
    k = kid()
    receipt = client.create_checkpoint("approve_plan", {"plan": "A"}, k, allowed_actions=["continue", "stop", "revise"])
    cid = receipt.checkpoint_id
    assert cid and receipt.event_type == "checkpoint.required"
    cp = client.get_checkpoint(cid)
    assert (cp.status, cp.checkpoint_name, cp.kickoff_id, cp.context) == ("pending", "approve_plan", k, {"plan": "A"})
    assert cp.allowed_actions == ["continue", "stop", "revise"] and cp.decision is None
    assert client.status(k).status == "waiting_for_human"

    with pytest.raises(hitlhook.ActionNotAllowed):
        client.decide(cid, "skip")
    resp = server.decide(cid, "revise")  # revise without feedback, straight over HTTP
    assert resp.status_code in (400, 422) and resp.json()["code"] == "feedback_required"
    assert resp.headers["content-type"].startswith("application/problem+json")

    decided = client.decide(cid, "revise", "use plan B", decided_by="ann", channel="test")
    assert decided.status == "decided" and decided.decision is not None
    assert (decided.decision.action, decided.decision.feedback, decided.decision.decided_by) == ("revise", "use plan B", "ann")
    assert client.decide(cid, "revise", "use plan B", decided_by="ann", channel="test").status == "decided"  # same again: fine
    with pytest.raises(hitlhook.AlreadyDecided) as info:
        client.decide(cid, "continue")
    assert info.value.existing is not None and info.value.existing["action"] == "revise"
    pending = client.list_checkpoints(status="pending", kickoff_id=k)
    assert pending.items == []


def test_request_decision_waits_for_a_human(client: HitlClient, server) -> None:
    k = kid()
    threading.Thread(target=lambda: server.decide(server.wait_for_pending(k)["checkpoint_id"], "continue", "ok", decided_by="bob"), daemon=True).start()
    decision = client.request_decision("go_live", {"x": 1}, kickoff_id=k, timeout=30)
    assert (decision.action, decision.feedback, decision.decided_by) == ("continue", "ok", "bob")
    assert decision.accepted and decision.checkpoint is not None and decision.checkpoint.kickoff_id == k


def test_request_decision_raises_on_stop_and_times_out(client: HitlClient, server) -> None:
    k = kid()
    threading.Thread(target=lambda: server.decide(server.wait_for_pending(k)["checkpoint_id"], "stop", "too risky"), daemon=True).start()
    with pytest.raises(hitlhook.CheckpointStopped) as info:
        client.request_decision("deploy", {}, kickoff_id=k, timeout=30)
    assert info.value.decision.feedback == "too risky"
    started = time.monotonic()
    with pytest.raises(hitlhook.DecisionTimeout) as timeout:
        client.request_decision("nobody_answers", {}, kickoff_id=kid(), timeout=1.5)
    assert 1.0 <= time.monotonic() - started < 6
    assert client.get_checkpoint(timeout.value.checkpoint_id).status == "pending"


def test_server_side_expiry_applies_on_timeout(client: HitlClient) -> None:
    decision = client.request_decision("auto", {}, kickoff_id=kid(), expires_in=1, on_timeout="skip", allowed_actions=["continue", "skip"], timeout=30)
    assert decision.action == "skip"
    # hitlhook records the on_timeout action as a decision by "system:timeout".
    assert decision.checkpoint is not None and decision.checkpoint.status in ("decided", "expired")
    assert decision.decided_by == "system:timeout"


def test_expiry_without_on_timeout_closes_the_checkpoint(client: HitlClient) -> None:
    with pytest.raises(hitlhook.CheckpointClosed) as info:
        client.request_decision("lapses", {}, kickoff_id=kid(), expires_in=1, timeout=30)
    assert info.value.checkpoint is not None and info.value.checkpoint.status == "expired"
    with pytest.raises(hitlhook.CheckpointClosed) as late:
        client.decide(info.value.checkpoint.checkpoint_id, "continue")
    assert late.value.status == 409 and late.value.code == "checkpoint_closed"


def test_seed_send_checkpoint_webhook_creates_a_checkpoint(server, client: HitlClient) -> None:
    cid = f"seed-{uuid.uuid4()}"
    k = kid()
    receipt = send_checkpoint_webhook(
        webhook_url=f"{server.url}/webhook/crewai",
        checkpoint_id=cid,
        checkpoint_name="after_planning",
        context={"result": "..."},
        kickoff_id=k,
        secret=SECRET,
    )
    assert receipt.checkpoint_id == cid and receipt.kickoff_id == k
    again = send_checkpoint_webhook(f"{server.url}/webhook/crewai", cid, "after_planning", {"result": "..."}, k, SECRET)
    assert again.replayed and again.seq == receipt.seq
    assert client.get_checkpoint(cid).checkpoint_name == "after_planning"
    with pytest.raises(hitlhook.SignatureRejected):
        send_checkpoint_webhook(f"{server.url}/webhook/crewai", f"seed-{uuid.uuid4()}", "x", {}, k, "wrong-secret", retries=0)


def test_unreachable_server_is_a_connection_error() -> None:
    with HitlClient("http://127.0.0.1:9", api_key="k", secret="s", max_retries=2, backoff=Backoff(initial=0.01, maximum=0.02)) as c:
        with pytest.raises(hitlhook.HitlConnectionError) as info:
            c.send_event("task.started")
    assert "127.0.0.1:9" in str(info.value)


async def test_async_client_round_trip(server) -> None:
    k = kid()
    async with AsyncHitlClient(server.url, api_key=API_KEY, secret=SECRET, poll_wait=10) as ac:
        threading.Thread(target=lambda: server.decide(server.wait_for_pending(k)["checkpoint_id"], "skip"), daemon=True).start()
        decision = await ac.request_decision("async_review", {"n": 1}, kickoff_id=k, timeout=30)
        assert decision.action == "skip" and decision.skipped
        status = await ac.status(k)
        assert status.kickoff_id == k and status.events_total >= 1
        assert [c.checkpoint_id for c in status.checkpoints] == [decision.checkpoint_id]
        with pytest.raises(hitlhook.NotFound):
            await ac.get_checkpoint("missing")
