"""``ScriptedLLM``: a real CrewAI ``BaseLLM`` that answers from a script, for running crews
and flows offline (tests, demos, CI). It records every message list it receives, so a test
can check what the agent was told (e.g. that a reviewer's feedback reached the prompt)."""

from __future__ import annotations

import threading
import time
from typing import Any

from crewai.llms.base_llm import BaseLLM

__all__ = ["ScriptedLLM", "final_answer", "tool_call"]


def final_answer(text: str) -> str:
    """A ReAct-style final answer line CrewAI parses."""
    return f"Thought: I now know the final answer\nFinal Answer: {text}"


def tool_call(tool: str, args_json: str) -> str:
    """A ReAct-style tool call CrewAI parses (``args_json`` is a JSON object)."""
    return f"Thought: I should use a tool\nAction: {tool}\nAction Input: {args_json}"


class ScriptedLLM(BaseLLM):
    """Returns ``responses`` in order (the last one repeats) and records each call's messages.

    Example::

        llm = ScriptedLLM(responses=[final_answer("Draft v1"), final_answer("Draft v2")])
        agent = Agent(role="Writer", goal="...", backstory="...", llm=llm)
    """

    responses: list[str] = []
    calls: int = 0
    received: list[list[dict[str, Any]]] = []
    call_times: list[float] = []
    """``time.perf_counter()`` at the start of each call."""

    def __init__(self, model: str = "scripted", **kwargs: Any) -> None:
        super().__init__(model=model, **kwargs)
        object.__setattr__(self, "_lock", threading.Lock())

    def supports_function_calling(self) -> bool:
        return False  # the ReAct text protocol

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
        snapshot = [dict(m) for m in messages] if isinstance(messages, list) else [{"role": "user", "content": str(messages)}]
        with self._lock:  # type: ignore[attr-defined]
            self.call_times.append(time.perf_counter())
            self.received.append(snapshot)
            if not self.responses:
                raise RuntimeError("ScriptedLLM has no responses")
            reply = self.responses[min(self.calls, len(self.responses) - 1)]
            self.calls += 1
        return reply

    async def acall(self, messages: Any, *args: Any, **kwargs: Any) -> str:
        return self.call(messages, *args, **kwargs)

    def prompt_text(self, call_index: int) -> str:
        """All message contents of one recorded call, joined."""
        return "\n".join(str(m.get("content", "")) for m in self.received[call_index])
