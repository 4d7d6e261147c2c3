"""Compact hitlhook events built from CrewAI event-bus events.

CrewAI's own ``to_json()`` embeds whole Task and Agent dumps (40+ keys each); hitlhook
gets a small, stable envelope instead: the seed event type, the original CrewAI type in
``crewai_type``, ids, names, and the few fields a reviewer or a dashboard needs, with long
text cut to ``max_text`` characters. Pure functions, duck-typed: no CrewAI import here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

__all__ = ["SEED_TYPES", "Envelope", "build_envelope", "crew_of", "truncate", "KickoffIds"]

SEED_TYPES: dict[str, str] = {
    "crew_kickoff_started": "crew.started",
    "crew_kickoff_completed": "crew.completed",
    "crew_kickoff_failed": "crew.failed",
    "task_started": "task.started",
    "task_completed": "task.completed",
    "task_failed": "task.failed",
    "agent_execution_started": "step.started",
    "agent_execution_completed": "step.completed",
    "agent_execution_error": "step.completed",
    "tool_usage_started": "step.started",
    "tool_usage_finished": "step.completed",
    "tool_usage_error": "step.completed",
    "flow_started": "crew.started",
    "flow_finished": "crew.completed",
    "flow_failed": "crew.failed",
    "method_execution_started": "task.started",
    "method_execution_finished": "task.completed",
    "method_execution_failed": "task.failed",
    "method_execution_paused": "task.paused",
    "flow_paused": "flow.paused",
}
"""CrewAI event type -> hitlhook (seed) event type. ``*_error`` steps map to
``step.completed`` with ``status: "error"``; a paused flow has no seed equivalent and keeps
its own ``flow.paused``/``task.paused`` names (the server stores unknown types)."""


def truncate(value: Any, limit: int) -> Any:
    """Strings longer than ``limit`` are cut and marked; other values pass through."""
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + f"...[truncated {len(value) - limit} chars]"
    return value


def _text(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    raw = getattr(value, "raw", None)  # TaskOutput / CrewOutput
    if isinstance(raw, str):
        value = raw
    if not isinstance(value, str):
        value = str(value)
    return truncate(value, limit)


def _sid(value: Any) -> str | None:
    return None if value is None else str(value)


def crew_of(source: Any) -> Any:
    """The Crew behind an event's ``source``: a Crew itself, an Agent's or a ToolUsage's
    ``crew``, or a Task's ``agent.crew``."""
    if source is None:
        return None
    if type(source).__name__ == "Crew" or getattr(source, "entity_type", None) == "crew":
        return source
    crew = getattr(source, "crew", None)
    if crew is not None:
        return crew
    agent = getattr(source, "agent", None)
    return getattr(agent, "crew", None) if agent is not None else None


def flow_of(source: Any) -> Any:
    if source is not None and getattr(source, "entity_type", None) == "flow":
        return source
    return None


class KickoffIds:
    """Decides which hitlhook ``kickoff_id`` a crew or flow reports under.

    Args:
        explicit: a fixed kickoff id for every crew, or a function ``crew -> id``. By
            default a crew reports under its ``crew.id`` (one ``Crew`` object = one
            execution) and a flow under its ``flow_id`` (``state.id``).
    """

    def __init__(self, explicit: str | Callable[[Any], str | None] | None = None) -> None:
        self.explicit = explicit

    def for_crew(self, crew: Any) -> str | None:
        if callable(self.explicit):
            chosen = self.explicit(crew)
            if chosen:
                return str(chosen)
        elif self.explicit:
            return str(self.explicit)
        return _sid(getattr(crew, "id", None)) if crew is not None else None

    def for_flow(self, flow: Any) -> str | None:
        fid = getattr(flow, "flow_id", None)
        if fid is None:
            state = getattr(flow, "state", None)
            fid = getattr(state, "id", None) if state is not None else None
        return _sid(fid)

    def for_source(self, source: Any) -> str | None:
        flow = flow_of(source)
        if flow is not None:
            return self.for_flow(flow)
        return self.for_crew(crew_of(source))


@dataclass(frozen=True)
class Envelope:
    """One event ready for :meth:`hitlhook.EventForwarder.submit`."""

    event_type: str
    fields: dict[str, Any]
    kickoff_id: str | None
    event_id: str | None
    timestamp: Any
    order: int | None


def build_envelope(source: Any, event: Any, ids: KickoffIds, *, max_text: int = 2000) -> Envelope:
    """The compact envelope for one CrewAI event and the ``source`` its handler received."""
    ctype = str(getattr(event, "type", "") or type(event).__name__)
    seed_type = SEED_TYPES.get(ctype, ctype)
    crew = crew_of(source)
    flow = flow_of(source)
    f: dict[str, Any] = {"crewai_type": ctype, "source": "crewai"}
    g = lambda name: getattr(event, name, None)  # noqa: E731

    if crew is not None:
        f["crew_id"] = _sid(getattr(crew, "id", None))
        f["crew_name"] = getattr(crew, "name", None)
    if flow is not None or g("flow_name"):
        f["flow_name"] = g("flow_name")
        if flow is not None:
            f["flow_id"] = ids.for_flow(flow)
    for name in ("task_id", "task_name", "agent_id", "agent_role"):
        value = g(name)
        if value is not None:
            f[name] = _sid(value)
    task = g("task")
    if task is not None:
        f.setdefault("task_id", _sid(getattr(task, "id", None)))
        f.setdefault("task_name", getattr(task, "name", None))
    agent = g("agent")
    if agent is not None:
        f.setdefault("agent_id", _sid(getattr(agent, "id", None)))
        f.setdefault("agent_role", getattr(agent, "role", None))
    if source is not None and type(source).__name__ == "Task":
        f.setdefault("task_id", _sid(getattr(source, "id", None)))
        f.setdefault("task_name", getattr(source, "name", None))

    if ctype == "crew_kickoff_started":
        inputs = g("inputs")
        if isinstance(inputs, Mapping):
            f["inputs"] = {str(k): truncate(v if isinstance(v, (str, int, float, bool)) or v is None else str(v), max_text) for k, v in inputs.items()}
    elif ctype == "crew_kickoff_completed":
        f["output"] = _text(g("output"), max_text)
        f["total_tokens"] = g("total_tokens")
    elif ctype == "task_started":
        if task is not None:
            f["description"] = _text(getattr(task, "description", None), max_text)
            f["expected_output"] = _text(getattr(task, "expected_output", None), max_text)
            f["human_input"] = bool(getattr(task, "human_input", False))
    elif ctype == "task_completed":
        out = g("output")
        f["output"] = _text(out, max_text)
        f["summary"] = _text(getattr(out, "summary", None), max_text)
    elif ctype in ("agent_execution_completed",):
        f["output"] = _text(g("output"), max_text)
    elif ctype.startswith("tool_usage_"):
        f["tool_name"] = g("tool_name")
        f["tool_args"] = _text(g("tool_args"), max_text)
        f["run_attempts"] = g("run_attempts")
        if ctype == "tool_usage_finished":
            f["output"] = _text(g("output"), max_text)
            f["from_cache"] = g("from_cache")
    elif ctype.startswith("method_execution_") or ctype.startswith("flow_"):
        for name in ("method_name", "message", "emit"):
            value = g(name)
            if value is not None:
                f[name] = truncate(value, max_text)
        if ctype in ("flow_finished", "method_execution_finished"):
            f["result"] = _text(g("result"), max_text)
        if g("flow_id") is not None:
            f["flow_id"] = _sid(g("flow_id"))

    error = g("error")
    if error is not None and ctype.endswith(("_failed", "_error")):
        f["error"] = _text(error, max_text)
        f["status"] = "error"
        error_type = g("error_type")
        if error_type is not None:
            f["error_type"] = getattr(error_type, "__qualname__", str(error_type))

    if seed_type.endswith(".started") and "status" not in f:
        f["status"] = "started"
    elif seed_type.endswith(".completed") and "status" not in f:
        f["status"] = "completed"

    seq = g("emission_sequence")
    return Envelope(
        event_type=seed_type,
        fields={k: v for k, v in f.items() if v is not None},
        kickoff_id=ids.for_source(source) or _sid(g("flow_id")),
        event_id=_sid(g("event_id")),
        timestamp=g("timestamp"),
        order=int(seq) if isinstance(seq, int) else None,
    )
