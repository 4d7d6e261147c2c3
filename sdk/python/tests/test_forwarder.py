"""EventForwarder: order restored, bounded when hitlhook is down, never raising."""

from __future__ import annotations

import time
import uuid

import hitlhook
from hitlhook import Backoff, EventForwarder, HitlClient


def test_out_of_order_submissions_arrive_in_order(server, client: HitlClient) -> None:
    kid = f"fwd-{uuid.uuid4().hex[:10]}"
    fwd = EventForwarder(client, settle=0.2)
    try:
        # Handlers in a thread pool may submit late events first; `order` puts them back.
        for n in reversed(range(20)):
            assert fwd.submit("step.started", {"n": n}, kickoff_id=kid, order=n)
        assert fwd.flush(10)
        assert fwd.stats.sent == 20 and fwd.stats.dropped_rejected == 0
    finally:
        fwd.close()
    items = client.list_events(kid, limit=100).items
    assert [e["payload"]["n"] for e in items] == list(range(20))


def test_refused_events_are_dropped_not_retried(server) -> None:
    with HitlClient(server.url, secret="wrong-secret") as bad:
        fwd = EventForwarder(bad, settle=0.0)
        fwd.submit("task.started", {"x": 1}, kickoff_id="refused")
        assert fwd.flush(5)
        assert fwd.stats.dropped_rejected == 1 and fwd.stats.sent == 0
        fwd.close()


def test_a_down_server_costs_bounded_memory_and_never_raises() -> None:
    with HitlClient("http://127.0.0.1:9", secret="s", backoff=Backoff(initial=0.05, maximum=0.1)) as down:
        fwd = EventForwarder(down, max_queue=5, settle=0.0)
        started = time.monotonic()
        accepted = [fwd.submit("task.started", {"i": i}) for i in range(50)]
        assert time.monotonic() - started < 0.5  # submit never waits for the network
        assert sum(accepted) == 5 and fwd.stats.dropped_full == 45
        assert fwd.flush(0.3) is False
        assert fwd.close(timeout=0.1) is False
        assert fwd.submit("task.started") is False  # closed


def test_unencodable_fields_do_not_raise() -> None:
    with HitlClient("http://127.0.0.1:9", secret="s") as down:
        fwd = EventForwarder(down, settle=0.0)
        circular: dict = {}
        circular["self"] = circular
        assert fwd.submit("task.started", {"bad": circular}) is False
        fwd.close(timeout=0.1)
    assert isinstance(hitlhook.EventForwarder, type)
