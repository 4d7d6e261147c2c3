"""``ExactLabelLLM``: a local, deterministic stand-in for the LLM that ``@human_feedback``
uses to collapse feedback text into an ``emit`` label. No network, no model.

It answers, in this order:

1. ``fixed`` if set (the resume worker sets it: the decision already says the outcome);
2. a label equal to the whole feedback text (case-insensitive, trimmed);
3. an outcome registered for that exact text with :func:`remember_outcome` (the blocking
   provider does this for ``revise``, whose text is free-form);
4. ``fallback`` if set;

and otherwise raises, which CrewAI turns into ``HumanFeedbackCollapseError`` - never a guess.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from crewai.llms.base_llm import BaseLLM

__all__ = ["ExactLabelLLM", "remember_outcome", "parse_collapse_prompt"]

_REMEMBERED: "OrderedDict[str, str]" = OrderedDict()
_LOCK = threading.Lock()
_MAX_REMEMBERED = 1000


def remember_outcome(feedback: str, outcome: str) -> None:
    """Route this exact feedback text to ``outcome`` (bounded, most recent wins)."""
    with _LOCK:
        _REMEMBERED[feedback.strip()] = outcome
        _REMEMBERED.move_to_end(feedback.strip())
        while len(_REMEMBERED) > _MAX_REMEMBERED:
            _REMEMBERED.popitem(last=False)


def _remembered(feedback: str) -> str | None:
    with _LOCK:
        return _REMEMBERED.get(feedback.strip())


def parse_collapse_prompt(prompt: str) -> tuple[str, list[str]] | None:
    """Feedback and outcomes from CrewAI's ``human_feedback_collapse`` prompt
    (``...Feedback: {feedback}\\n\\nPossible outcomes: {a, b}\\n\\n...``)."""
    start = prompt.find("Feedback: ")
    mid = prompt.rfind("\n\nPossible outcomes: ")
    if start < 0 or mid < start:
        return None
    feedback = prompt[start + len("Feedback: ") : mid]
    rest = prompt[mid + len("\n\nPossible outcomes: ") :]
    line = rest.split("\n", 1)[0]
    return feedback, [o.strip() for o in line.split(",") if o.strip()]


def _prompt_text(messages: Any) -> str:
    if isinstance(messages, str):
        return messages
    parts = []
    for m in messages or []:
        content = m.get("content") if isinstance(m, dict) else getattr(m, "content", None)
        if isinstance(content, str):
            parts.append(content)
    return "\n".join(parts)


class ExactLabelLLM(BaseLLM):
    """Collapses human feedback to an ``emit`` label by exact match (see module docstring).

    Use it on the decorator - ``@human_feedback(..., emit=[...], llm=ExactLabelLLM())`` - so
    button-style answers ("approved") never need a real model.
    """

    fixed: str | None = None
    fallback: str | None = None
    calls: int = 0

    def __init__(self, model: str = "hitlhook/exact-label", **kwargs: Any) -> None:
        super().__init__(model=model, **kwargs)

    def supports_function_calling(self) -> bool:
        return False

    def choose(self, feedback: str, outcomes: list[str]) -> str:
        """The label for ``feedback`` among ``outcomes``, or ``ValueError``."""
        if self.fixed is not None:
            if outcomes and self.fixed not in outcomes:
                raise ValueError(f"fixed outcome {self.fixed!r} is not one of {outcomes}")
            return self.fixed
        text = feedback.strip()
        for label in outcomes:
            if label.strip().lower() == text.lower():
                return label
        remembered = _remembered(text)
        if remembered is not None and (not outcomes or remembered in outcomes):
            return remembered
        if self.fallback is not None and (not outcomes or self.fallback in outcomes):
            return self.fallback
        raise ValueError(f"feedback {text[:80]!r} is not exactly one of {outcomes}")

    def call(
        self,
        messages: Any,
        tools: Any = None,
        callbacks: Any = None,
        available_functions: Any = None,
        from_task: Any = None,
        from_agent: Any = None,
        response_model: Any = None,
        **kwargs: Any,
    ) -> str:
        self.calls += 1
        parsed = parse_collapse_prompt(_prompt_text(messages))
        if parsed is None:
            if self.fixed is not None:
                label = self.fixed
            else:
                raise ValueError("ExactLabelLLM only answers @human_feedback collapse prompts")
        else:
            label = self.choose(*parsed)
        return json.dumps({"outcome": label}) if response_model is not None else label

    async def acall(self, messages: Any, *args: Any, **kwargs: Any) -> str:
        return self.call(messages, *args, **kwargs)
