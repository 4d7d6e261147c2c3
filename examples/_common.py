"""Shared bits of the examples: offline CrewAI settings, the hitlhook client, and an LLM that
is scripted (offline) unless OPENAI_API_KEY is set."""

from __future__ import annotations

import os

# Before CrewAI is imported: no telemetry, no tracing.
for _name, _value in (("CREWAI_DISABLE_TELEMETRY", "true"), ("OTEL_SDK_DISABLED", "true"), ("CREWAI_TRACING_ENABLED", "false")):
    os.environ.setdefault(_name, _value)

from typing import Any  # noqa: E402

from crewai.llms.base_llm import BaseLLM  # noqa: E402

import hitlhook  # noqa: E402


def hitl_client() -> hitlhook.HitlClient:
    """A client from HITLHOOK_URL / HITLHOOK_API_KEY / HITLHOOK_SECRET (or the seed's
    WEBHOOK_BASE_URL / WEBHOOK_API_KEY / WEBHOOK_SECRET)."""
    client = hitlhook.HitlClient()
    if not client.ready():
        raise SystemExit(f"hitlhook is not answering at {client.base_url} (start it first, see examples/README.md)")
    return client


class DemoLLM(BaseLLM):
    """An offline stand-in for a model: writes a draft, and when the conversation holds
    reviewer feedback ("User feedback: ..."), a revision that mentions it."""

    topic: str = "rivers"

    def supports_function_calling(self) -> bool:
        return False

    def call(self, messages: Any, *args: Any, **kwargs: Any) -> str:
        texts = [m.get("content", "") for m in messages] if isinstance(messages, list) else [str(messages)]
        feedback = [t.split("User feedback:", 1)[1].split("\n", 1)[0].strip() for t in texts if "User feedback:" in t]
        draft = f"A short note on {self.topic}: they carve valleys and carry silt to the sea."
        if feedback:
            draft += " Revised for: " + "; ".join(feedback) + "."
        return f"Thought: I now know the final answer\nFinal Answer: {draft}"


def make_llm(topic: str) -> Any:
    """A real LLM when OPENAI_API_KEY is set (model from OPENAI_MODEL_NAME, default
    gpt-4o-mini), else the offline DemoLLM."""
    if os.environ.get("OPENAI_API_KEY"):
        from crewai import LLM

        return LLM(model=os.environ.get("OPENAI_MODEL_NAME", "gpt-4o-mini"))
    return DemoLLM(model="demo-offline", topic=topic)
