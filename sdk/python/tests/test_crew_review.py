"""Task(human_input=True) reviews through hitlhook on real crews: each action has its effect."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterator

import pytest

pytest.importorskip("crewai")

import hitlhook  # noqa: E402
import hitlhook.crewai as hc  # noqa: E402
from hitlhook.crewai.testing import final_answer  # noqa: E402

from crews import make_crew  # noqa: E402


@pytest.fixture(scope="module")
def hitl(server) -> Iterator[hc.Hitl]:
    client = hitlhook.HitlClient(server.url, api_key=server.api_key, secret=server.secret, poll_wait=10, backoff=hitlhook.Backoff(initial=0.05, maximum=0.5))
    h = hc.enable(client, timeout=60)
    yield h
    h.disable()
    client.close()


def reviewer(server, kickoff_id: str, answers: list[tuple[str, str | None]], seen: list[dict],
             before_deciding: Callable[[], None] | None = None) -> threading.Thread:
    """Decide the crew's checkpoints in order, like a person would, over plain HTTP."""

    def run() -> None:
        done: set[str] = set()
        for action, feedback in answers:
            cp = server.wait_for_pending(kickoff_id, timeout=30, exclude=done)
            seen.append(cp)
            done.add(cp["checkpoint_id"])
            if before_deciding:
                before_deciding()
            resp = server.decide(cp["checkpoint_id"], action, feedback, decided_by="tester")
            assert resp.status_code == 200, resp.text

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def run_crew(hitl: hc.Hitl, server, responses: list[str], answers: list[tuple[str, str | None]]) -> tuple[Callable[[], Any], Any, list[dict], threading.Thread, Any]:
    """A crew plus a reviewer thread that will answer its checkpoints."""
    crew, llm = make_crew(responses)
    seen: list[dict] = []
    hitl.provider.install()
    t = reviewer(server, str(crew.id), answers, seen)
    return crew.kickoff, llm, seen, t, crew


def test_continue_accepts_the_answer(hitl, server) -> None:
    kickoff, llm, seen, t, crew = run_crew(hitl, server, [final_answer("Water finds its way")], [("continue", None)])
    result = kickoff()
    t.join(5)
    assert result.raw == "Water finds its way"
    assert llm.calls == 1
    assert seen[0]["context"]["output"] == "Water finds its way"
    assert seen[0]["context"]["task_name"] == "haiku" and seen[0]["context"]["agent_role"] == "Writer"
    assert seen[0]["checkpoint_name"] == "review:haiku" and seen[0]["kickoff_id"] == str(crew.id)
    assert hitl.provider.history[-1].action == "continue"


def test_skip_accepts_as_is_and_is_recorded(hitl, server) -> None:
    kickoff, llm, seen, t, crew = run_crew(hitl, server, [final_answer("Stones under water")], [("skip", None)])
    result = kickoff()
    t.join(5)
    assert result.raw == "Stones under water" and llm.calls == 1
    cp = hitl.client.get_checkpoint(seen[0]["checkpoint_id"])
    assert cp.decision is not None and cp.decision.action == "skip"
    assert hitl.provider.history[-1].action == "skip"


def test_revise_reruns_the_task_with_the_feedback_in_the_prompt(hitl, server) -> None:
    kickoff, llm, seen, t, crew = run_crew(
        hitl,
        server,
        [final_answer("River runs"), final_answer("River runs to the sea")],
        [("revise", "Mention the sea"), ("continue", None)],
    )
    result = kickoff()
    t.join(5)
    assert result.raw == "River runs to the sea"
    assert llm.calls == 2
    assert "Mention the sea" not in llm.prompt_text(0)
    assert "User feedback: Mention the sea" in llm.prompt_text(1)
    assert [c["context"]["iteration"] for c in seen] == [0, 1]
    assert [c["context"]["output"] for c in seen] == ["River runs", "River runs to the sea"]
    assert seen[1]["context"]["previous_feedback"] == ["Mention the sea"]
    assert [r.action for r in hitl.provider.history[-2:]] == ["revise", "continue"]


def test_stop_ends_the_crew_without_agent_retries(hitl, server) -> None:
    kickoff, llm, seen, t, crew = run_crew(hitl, server, [final_answer("Bad haiku")], [("stop", "Not publishable")])
    with pytest.raises(hitlhook.CheckpointStopped) as info:
        kickoff()
    t.join(5)
    assert isinstance(info.value, hc.CrewStopped)
    from crewai.hooks import HookAborted

    assert isinstance(info.value, HookAborted)
    assert info.value.decision.feedback == "Not publishable" and info.value.decision.decided_by == "tester"
    assert llm.calls == 1  # the agent did not retry the task
    checkpoints = hitl.client.list_checkpoints(kickoff_id=str(crew.id)).items
    assert len(checkpoints) == 1  # and the provider was asked once
    assert hitl.flush(10)
    types = [e["payload"].get("crewai_type") for e in hitl.client.list_events(str(crew.id), limit=100).items]
    assert "task_failed" in types and types[-1] == "crew_kickoff_failed"
    assert hitl.client.status(str(crew.id)).status == "stopped"


def test_review_timeout_aborts_cleanly(server) -> None:
    client = hitlhook.HitlClient(server.url, api_key=server.api_key, secret=server.secret)
    provider = hc.HitlHumanInputProvider(client, timeout=1.0)
    crew, llm = make_crew([final_answer("Unreviewed")])
    token = provider.install()
    try:
        with pytest.raises(hc.ReviewAborted) as info:
            crew.kickoff()
    finally:
        from crewai.core.providers.human_input import reset_provider

        reset_provider(token)
        client.close()
    assert isinstance(info.value.error, hitlhook.DecisionTimeout)
    assert llm.calls == 1


async def test_async_kickoff_revises_without_blocking_the_loop(hitl, server) -> None:
    import asyncio

    crew, llm = make_crew([final_answer("Async one"), final_answer("Async two")])
    seen: list[dict] = []
    hitl.provider.install()
    ticks = 0

    def once_the_loop_ticked() -> None:
        # Each decision waits until the event loop has run twice while the crew waits for it: a
        # blocked loop never ticks (the wait ends after 10 s and the assertion below fails),
        # however fast the server answers.
        start, deadline = ticks, time.monotonic() + 10
        while ticks < start + 2 and time.monotonic() < deadline:
            time.sleep(0.01)

    t = reviewer(server, str(crew.id), [("revise", "Be brief"), ("continue", None)], seen,
                 before_deciding=once_the_loop_ticked)

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    try:
        result = await crew.akickoff()
    finally:
        tick_task.cancel()
    t.join(5)
    assert result.raw == "Async two"
    assert "User feedback: Be brief" in llm.prompt_text(1)
    assert ticks >= 4  # the event loop kept running while the crew waited for the reviewer
