"""CrewAI events reach hitlhook in order, with seed types and the CrewAI type kept; a crew is
neither slowed nor broken when hitlhook is down."""

from __future__ import annotations

import threading
import time
from typing import Iterator

import pytest

pytest.importorskip("crewai")

import hitlhook  # noqa: E402
import hitlhook.crewai as hc  # noqa: E402
from hitlhook.crewai.testing import final_answer, tool_call  # noqa: E402

from crews import lookup, make_crew  # noqa: E402

EXPECTED = [
    ("crew.started", "crew_kickoff_started"),
    ("task.started", "task_started"),
    ("step.started", "agent_execution_started"),
    ("step.started", "tool_usage_started"),
    ("step.completed", "tool_usage_finished"),
    ("step.completed", "agent_execution_completed"),
    ("task.completed", "task_completed"),
    ("crew.completed", "crew_kickoff_completed"),
]


@pytest.fixture(scope="module")
def hitl(server) -> Iterator[hc.Hitl]:
    client = hitlhook.HitlClient(server.url, api_key=server.api_key, secret=server.secret, poll_wait=10)
    h = hc.enable(client, timeout=60)
    yield h
    h.disable()
    client.close()


def test_events_arrive_in_order_with_seed_types(hitl, server) -> None:
    crew, llm = make_crew([tool_call("lookup", '{"q": "rivers"}'), final_answer("Rivers remember")], tools=[lookup])
    kid = str(crew.id)

    def review() -> None:
        cp = server.wait_for_pending(kid, timeout=30)
        server.decide(cp["checkpoint_id"], "continue")

    threading.Thread(target=review, daemon=True).start()
    hitl.provider.install()
    assert crew.kickoff().raw == "Rivers remember"
    assert hitl.flush(10)

    items = hitl.client.list_events(kid, limit=200).items
    seqs = [e["seq"] for e in items]
    assert seqs == sorted(seqs)
    forwarded = [(e["event_type"], e["payload"]["crewai_type"]) for e in items if "crewai_type" in e["payload"]]
    assert forwarded == EXPECTED

    # The review checkpoint sits between the tool call and the end of the agent's work.
    types = [e["event_type"] for e in items]
    assert types.count("checkpoint.required") == 1
    at = types.index("checkpoint.required")
    assert types.index("step.completed") < at < max(i for i, e in enumerate(items) if e["payload"].get("crewai_type") == "agent_execution_completed")

    by_type = {e["payload"]["crewai_type"]: e["payload"] for e in items if "crewai_type" in e["payload"]}
    assert by_type["crew_kickoff_started"]["crew_id"] == kid
    assert by_type["task_started"]["task_name"] == "haiku" and by_type["task_started"]["human_input"] is True
    assert by_type["tool_usage_started"]["tool_name"] == "lookup"
    assert "facts about rivers" in by_type["tool_usage_finished"]["output"]
    assert by_type["task_completed"]["output"] == "Rivers remember"
    assert by_type["crew_kickoff_completed"]["output"] == "Rivers remember"
    # Compact envelopes, not CrewAI's whole Task/Agent dumps.
    assert all("task" not in p and "agent" not in p and len(p) < 25 for p in by_type.values())
    assert hitl.client.status(kid).status == "completed"


def test_a_crew_runs_normally_when_hitlhook_is_down() -> None:
    client = hitlhook.HitlClient("http://127.0.0.1:9", api_key="k", secret="s", backoff=hitlhook.Backoff(initial=0.05, maximum=0.2))
    h = hc.enable(client, human_input=False)
    try:
        crew, llm = make_crew([final_answer("Offline haiku")], human_input=False)
        started = time.monotonic()
        assert crew.kickoff().raw == "Offline haiku"
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, f"crew took {elapsed:.2f}s with hitlhook down"
        assert h.flush(0.5) is False  # nothing could be delivered, and flush says so without raising
        assert h.forwarder is not None and h.forwarder.stats.sent == 0 and h.forwarder.pending >= 6
    finally:
        h.disable(timeout=0.2)
        client.close()
