"""@human_feedback flows through hitlhook: pause, decide, resume in another process; the
blocking mode; deterministic routing of each action."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Iterator

import pytest

pytest.importorskip("crewai")

from crewai.flow import HumanFeedbackPending  # noqa: E402
from crewai.flow.flow_config import flow_config  # noqa: E402

import hitlhook  # noqa: E402
from hitlhook.crewai import HitlFeedbackProvider, checkpoint_id_for  # noqa: E402
from hitlhook.resume import pending_flow_ids, resume_flow, resume_ready  # noqa: E402

from flow_app import PlainFlow, ReviewFlow  # noqa: E402

HERE = Path(__file__).parent


@pytest.fixture()
def hitl_client(server) -> Iterator[hitlhook.HitlClient]:
    with hitlhook.HitlClient(server.url, api_key=server.api_key, secret=server.secret, poll_wait=10) as c:
        yield c


@pytest.fixture()
def pending_provider(hitl_client) -> Iterator[HitlFeedbackProvider]:
    previous = flow_config.hitl_provider
    flow_config.hitl_provider = HitlFeedbackProvider(hitl_client, mode="pending")
    yield flow_config.hitl_provider
    flow_config.hitl_provider = previous


def pause(flow_cls=ReviewFlow, topic: str = "rivers") -> tuple[str, str, HumanFeedbackPending]:
    """Start a flow until it pauses; returns its id, checkpoint id and the pending marker."""
    flow_id = str(uuid.uuid4())
    result = flow_cls().kickoff(inputs={"id": flow_id, "topic": topic})
    assert isinstance(result, HumanFeedbackPending), result
    return flow_id, checkpoint_id_for(result.context), result


def test_paused_flow_resumes_from_another_process(server, hitl_client, pending_provider) -> None:
    flow_id, cid, pending = pause(topic="lakes")
    assert pending.callback_info["checkpoint_id"] == cid
    cp = hitl_client.get_checkpoint(cid)
    assert (cp.status, cp.kickoff_id, cp.checkpoint_name) == ("pending", flow_id, "ReviewFlow.write_draft")
    assert cp.context["output"] == "Draft about lakes" and cp.context["emit"] == ["approved", "rejected", "needs_changes"]
    assert flow_id in pending_flow_ids(os.path.join(os.environ["CREWAI_STORAGE_DIR"], "flow_states.db"))

    assert server.decide(cid, "continue", decided_by="ann").status_code == 200
    env = dict(os.environ, HITLHOOK_API_KEY=server.api_key, HITLHOOK_URL=server.url, PYTHONPATH=str(HERE))
    proc = subprocess.run(
        [sys.executable, "-m", "hitlhook.resume", f"{HERE / 'flow_app.py'}:ReviewFlow", "--flow-id", flow_id, "--timeout", "60"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    assert line["status"] == "resumed" and line["action"] == "continue" and line["outcome"] == "approved"
    assert line["result"] == "published: Draft about lakes"
    assert flow_id not in pending_flow_ids(os.path.join(os.environ["CREWAI_STORAGE_DIR"], "flow_states.db"))


def test_revise_carries_the_text_across_processes(server, pending_provider) -> None:
    flow_id, cid, _ = pause()
    assert server.decide(cid, "revise", "Add a haiku").status_code == 200
    env = dict(os.environ, HITLHOOK_API_KEY=server.api_key, PYTHONPATH=str(HERE))
    proc = subprocess.run(
        [sys.executable, "-m", "hitlhook.resume", f"{HERE / 'flow_app.py'}:ReviewFlow", "--all", "--url", server.url],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(x) for x in proc.stdout.strip().splitlines()]
    mine = [x for x in lines if x["flow_id"] == flow_id]
    assert len(mine) == 1
    assert (mine[0]["outcome"], mine[0]["feedback"], mine[0]["result"]) == ("needs_changes", "Add a haiku", "revising with: Add a haiku")


@pytest.mark.parametrize(
    "action, feedback, status, result",
    [
        ("stop", "No", "resumed", "discarded"),
        ("skip", None, "resumed", "published: Draft about rivers"),
    ],
)
def test_stop_and_skip_route_in_process(server, hitl_client, pending_provider, action, feedback, status, result) -> None:
    flow_id, cid, _ = pause()
    assert server.decide(cid, action, feedback).status_code == 200
    res = resume_flow(ReviewFlow, flow_id, client=hitl_client, timeout=30)
    assert (res.status, res.action, res.result) == (status, action, result)


def test_stop_without_a_stop_label_ends_the_flow(server, hitl_client, pending_provider) -> None:
    flow_id, cid, _ = pause(PlainFlow)
    assert server.decide(cid, "stop").status_code == 200
    res = resume_flow(PlainFlow, flow_id, client=hitl_client, timeout=30)
    assert res.status == "stopped" and res.result is None
    with pytest.raises(ValueError):
        PlainFlow.from_pending(flow_id)  # nothing left to resume


def test_undecided_flows_are_left_pending(server, hitl_client, pending_provider) -> None:
    flow_id, cid, _ = pause()
    res = resume_flow(ReviewFlow, flow_id, client=hitl_client, wait=False)
    assert res.status == "pending"
    assert all(r.flow_id != flow_id for r in resume_ready(ReviewFlow, client=hitl_client))
    server.decide(cid, "continue")
    done = [r for r in resume_ready(ReviewFlow, client=hitl_client) if r.flow_id == flow_id]
    assert len(done) == 1 and done[0].result == "published: Draft about rivers"


@pytest.mark.parametrize(
    "action, feedback, expected",
    [
        ("continue", None, "published: Draft about rivers"),
        ("revise", "Shorter please", "revising with: Shorter please"),
        ("stop", None, "discarded"),
    ],
)
def test_blocking_mode_waits_in_process(server, hitl_client, action, feedback, expected) -> None:
    previous = flow_config.hitl_provider
    flow_config.hitl_provider = HitlFeedbackProvider(hitl_client, mode="blocking", timeout=60)
    flow_id = str(uuid.uuid4())

    def decide() -> None:
        cp = server.wait_for_pending(flow_id, timeout=30)
        server.decide(cp["checkpoint_id"], action, feedback)

    threading.Thread(target=decide, daemon=True).start()
    try:
        assert ReviewFlow().kickoff(inputs={"id": flow_id}) == expected
    finally:
        flow_config.hitl_provider = previous
