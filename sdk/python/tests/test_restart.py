"""A crew keeps waiting for its review across a server restart, then resumes; and how long a
decision takes to reach a waiting crew."""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import pytest

pytest.importorskip("crewai")

import hitlhook  # noqa: E402
import hitlhook.crewai as hc  # noqa: E402
from hitlhook.crewai.testing import final_answer  # noqa: E402

from conftest import LATENCIES  # noqa: E402
from crews import make_crew  # noqa: E402


def kickoff_in_thread(hitl: hc.Hitl, crew: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        hitl.provider.install()  # the provider is per context: install it in this thread
        try:
            out["result"] = crew.kickoff()
        except BaseException as exc:  # noqa: BLE001
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


@pytest.fixture()
def hitl(server):
    client = hitlhook.HitlClient(server.url, api_key=server.api_key, secret=server.secret, poll_wait=20, backoff=hitlhook.Backoff(initial=0.05, maximum=0.5))
    h = hc.enable(client, timeout=120)
    yield h
    h.disable()
    client.close()


def test_crew_keeps_waiting_across_a_server_restart(hitl, server) -> None:
    crew, llm = make_crew([final_answer("Before the restart")])
    t, out = kickoff_in_thread(hitl, crew)
    cp = server.wait_for_pending(str(crew.id), timeout=30)
    time.sleep(0.5)  # the crew is parked in a long-poll now

    server.restart(down_for=1.5, kill=True)  # SIGKILL; refused connections for 1.5 s
    assert t.is_alive() and "error" not in out, out.get("error")

    resp = server.decide(cp["checkpoint_id"], "continue", decided_by="after-restart")
    assert resp.status_code == 200, resp.text
    t.join(30)
    assert not t.is_alive(), "the crew did not resume after the decision"
    assert "error" not in out, out.get("error")
    assert out["result"].raw == "Before the restart"
    assert hitl.provider.history[-1].decision.decided_by == "after-restart"
    # Events queued while the server was down are delivered once each after it is back.
    assert hitl.flush(15)
    items = hitl.client.list_events(str(crew.id), limit=200).items
    crewai_types = [e["payload"]["crewai_type"] for e in items if "crewai_type" in e["payload"]]
    assert len(crewai_types) == len(set(crewai_types))
    assert crewai_types[0] == "crew_kickoff_started" and crewai_types[-1] == "crew_kickoff_completed"


def test_decision_to_crew_latency(hitl, server) -> None:
    """Time from POST /webhook/feedback (revise) to the agent's next LLM call."""
    figures = []
    for _ in range(5):
        crew, llm = make_crew([final_answer("One"), final_answer("Two")])
        t, out = kickoff_in_thread(hitl, crew)
        first = server.wait_for_pending(str(crew.id), timeout=30)
        time.sleep(0.3)  # let the long-poll park
        sent = time.perf_counter()
        assert server.decide(first["checkpoint_id"], "revise", "again").status_code == 200
        second = server.wait_for_pending(str(crew.id), timeout=30, exclude={first["checkpoint_id"]})
        figures.append(llm.call_times[1] - sent)
        server.decide(second["checkpoint_id"], "continue")
        t.join(30)
        assert out["result"].raw == "Two"
    LATENCIES.extend(figures)
    assert max(figures) < 1.0, figures
    print(f"\ndecision -> crew latency: median {statistics.median(figures) * 1000:.1f} ms, max {max(figures) * 1000:.1f} ms")
