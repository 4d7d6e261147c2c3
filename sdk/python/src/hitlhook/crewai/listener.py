"""A CrewAI event-bus listener that forwards crew, task, agent, tool and flow events to
hitlhook through an :class:`~hitlhook.EventForwarder` (background, ordered, never blocking)."""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

from crewai.events import BaseEventListener, crewai_event_bus
from crewai.events.types import agent_events, crew_events, flow_events, task_events, tool_usage_events

from ..forwarder import EventForwarder
from .envelopes import SEED_TYPES, KickoffIds, build_envelope

__all__ = ["HitlEventListener", "DEFAULT_EVENT_CLASSES"]

log = logging.getLogger("hitlhook.crewai")

DEFAULT_EVENT_CLASSES: tuple[type, ...] = (
    crew_events.CrewKickoffStartedEvent,
    crew_events.CrewKickoffCompletedEvent,
    crew_events.CrewKickoffFailedEvent,
    task_events.TaskStartedEvent,
    task_events.TaskCompletedEvent,
    task_events.TaskFailedEvent,
    agent_events.AgentExecutionStartedEvent,
    agent_events.AgentExecutionCompletedEvent,
    agent_events.AgentExecutionErrorEvent,
    tool_usage_events.ToolUsageStartedEvent,
    tool_usage_events.ToolUsageFinishedEvent,
    tool_usage_events.ToolUsageErrorEvent,
    flow_events.FlowStartedEvent,
    flow_events.FlowFinishedEvent,
    flow_events.FlowFailedEvent,
    flow_events.FlowPausedEvent,
    flow_events.MethodExecutionStartedEvent,
    flow_events.MethodExecutionFinishedEvent,
    flow_events.MethodExecutionFailedEvent,
)
"""The CrewAI events forwarded by default (see :data:`~hitlhook.crewai.envelopes.SEED_TYPES`)."""


class HitlEventListener(BaseEventListener):
    """Forwards CrewAI events to hitlhook as compact envelopes.

    Handlers only build a small dict and queue it, so a crew is never slowed down or broken
    by hitlhook being slow or down. Call :meth:`flush` at the end of a run (``enable()``
    does it at interpreter exit too) and :meth:`close` to unregister.

    Args:
        forwarder: the background sender.
        ids: how crews and flows map to hitlhook kickoff ids.
        event_classes: which CrewAI event classes to forward.
        max_text: long strings (outputs, descriptions) are cut to this many characters.
    """

    def __init__(
        self,
        forwarder: EventForwarder,
        *,
        ids: KickoffIds | None = None,
        event_classes: Iterable[type] | None = None,
        max_text: int = 2000,
    ) -> None:
        self.forwarder = forwarder
        self.ids = ids or KickoffIds()
        self.max_text = max_text
        self._classes = tuple(event_classes or DEFAULT_EVENT_CLASSES)
        self._registered: list[tuple[type, Callable[..., Any]]] = []
        super().__init__()  # calls setup_listeners(crewai_event_bus)

    def __repr__(self) -> str:
        return f"HitlEventListener(events={len(self._classes)}, forwarder={self.forwarder!r})"

    def setup_listeners(self, crewai_event_bus: Any) -> None:
        for cls in self._classes:
            handler = self._make_handler()
            crewai_event_bus.on(cls)(handler)
            self._registered.append((cls, handler))

    def _make_handler(self) -> Callable[[Any, Any], None]:
        def hitlhook_forward(source: Any, event: Any) -> None:
            self.forward(source, event)

        return hitlhook_forward

    def forward(self, source: Any, event: Any) -> None:
        """Queue one event (never raises)."""
        try:
            env = build_envelope(source, event, self.ids, max_text=self.max_text)
            self.forwarder.submit(
                env.event_type,
                env.fields,
                kickoff_id=env.kickoff_id,
                event_id=env.event_id,
                timestamp=env.timestamp,
                order=env.order,
            )
        except Exception:  # noqa: BLE001 - a listener must never break the crew
            log.debug("could not forward a %s event", type(event).__name__, exc_info=True)

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait for CrewAI's pending handlers, then send everything queued. True if all
        was delivered within ``timeout``."""
        try:
            crewai_event_bus.flush(timeout=timeout if timeout is not None else 30.0)
        except Exception:  # noqa: BLE001
            log.debug("crewai_event_bus.flush failed", exc_info=True)
        return self.forwarder.flush(timeout)

    def close(self, timeout: float | None = 5.0) -> bool:
        """Unregister the handlers and flush."""
        for cls, handler in self._registered:
            try:
                crewai_event_bus.off(cls, handler)
            except Exception:  # noqa: BLE001
                pass
        self._registered.clear()
        return self.flush(timeout)


assert set(SEED_TYPES) >= {c.model_fields["type"].default for c in DEFAULT_EVENT_CLASSES}  # type: ignore[attr-defined]  # keep the table whole
