"""Decisions routed to @human_feedback emit labels, and the exact-label collapse LLM."""

from __future__ import annotations

import json

import pytest

from hitlhook import Decision
from hitlhook.crewai.routing import route_decision

EMIT = ["approved", "rejected", "needs_changes"]


def d(action: str, feedback: str | None = None) -> Decision:
    return Decision(checkpoint_id="c", action=action, feedback=feedback)


def test_each_action_routes_to_its_label() -> None:
    assert route_decision(d("continue"), EMIT) .outcome == "approved"
    assert route_decision(d("continue"), EMIT).feedback == "approved"
    assert route_decision(d("continue", "nice"), EMIT).feedback == "nice"
    assert route_decision(d("stop"), EMIT).outcome == "rejected"
    r = route_decision(d("revise", "add sources"), EMIT)
    assert (r.outcome, r.feedback, r.resume) == ("needs_changes", "add sources", True)
    skip = route_decision(d("skip"), EMIT, default_outcome="approved")
    assert (skip.feedback, skip.outcome) == ("", "approved")


def test_explicit_outcomes_win_and_are_checked() -> None:
    assert route_decision(d("continue"), ["ship", "hold"], outcomes={"continue": "ship", "stop": "hold"}).outcome == "ship"
    assert route_decision(d("stop"), ["ship", "hold"], outcomes={"continue": "ship", "stop": "hold"}).outcome == "hold"
    with pytest.raises(ValueError):
        route_decision(d("continue"), ["ship"], outcomes={"continue": "nope"})


def test_stop_without_a_label_ends_the_flow_and_revise_falls_back_to_reject() -> None:
    r = route_decision(d("stop", "no"), ["approved", "later"])
    assert r.resume is False
    assert route_decision(d("revise", "x"), ["approved", "rejected"]).outcome == "rejected"
    with pytest.raises(ValueError):
        route_decision(d("revise", "x"), ["approved", "later"])


def test_without_emit_the_text_is_passed() -> None:
    assert route_decision(d("revise", "shorter"), None).feedback == "shorter"
    assert route_decision(d("skip", "ignored"), None).feedback == ""
    assert route_decision(d("stop"), None).resume is False


PROMPT = (
    "Based on the following human feedback, determine which outcome best matches their intent.\n\n"
    "Feedback: {fb}\n\nPossible outcomes: approved, rejected, needs_changes\n\n"
    "Respond with ONLY one of the exact outcome values listed above, nothing else."
)


def test_exact_label_llm_matches_only_exact_labels() -> None:
    pytest.importorskip("crewai")
    from hitlhook.crewai.labels import ExactLabelLLM, remember_outcome

    llm = ExactLabelLLM()
    ask = lambda fb, **kw: llm.call([{"role": "user", "content": PROMPT.format(fb=fb)}], **kw)  # noqa: E731
    assert ask("Approved ") == "approved"
    assert json.loads(ask("rejected", response_model=object)) == {"outcome": "rejected"}
    with pytest.raises(ValueError):
        ask("I think it is fine")
    remember_outcome("please add a table\nand sources", "needs_changes")
    assert ask("please add a table\nand sources") == "needs_changes"
    assert ExactLabelLLM(fixed="rejected").call([{"role": "user", "content": PROMPT.format(fb="whatever")}]) == "rejected"
    assert ExactLabelLLM(fallback="needs_changes").call([{"role": "user", "content": PROMPT.format(fb="??")}]) == "needs_changes"
