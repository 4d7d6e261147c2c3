"""CrewAI integration (``pip install "hitlhook[crewai]"``).

One call wires everything for crews::

    import hitlhook.crewai

    hitl = hitlhook.crewai.enable()          # reads HITLHOOK_URL / _API_KEY / _SECRET
    crew.kickoff()                           # tasks with human_input=True ask hitlhook
    hitl.flush()

* :class:`HitlEventListener` forwards crew, task, agent, tool and flow events (background);
* :class:`HitlHumanInputProvider` turns ``Task(human_input=True)`` reviews into checkpoints;
* :class:`HitlFeedbackProvider` does the same for flows' ``@human_feedback`` (pause and
  resume later with :mod:`hitlhook.resume`, or block in process);
* :class:`ExactLabelLLM` routes decisions to ``emit`` labels without a network LLM.

Names are imported lazily: ``import hitlhook.crewai`` itself does not import CrewAI.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..backoff import Backoff
from ..client import HitlClient
from ..forwarder import EventForwarder
from .envelopes import KickoffIds

if TYPE_CHECKING:  # pragma: no cover
    from .flows import HitlFeedbackProvider, checkpoint_id_for
    from .human_input import CrewStopped, HitlHumanInputProvider, ReviewAborted, ReviewRecord
    from .labels import ExactLabelLLM, remember_outcome
    from .listener import HitlEventListener

__all__ = [
    "enable",
    "Hitl",
    "KickoffIds",
    "HitlEventListener",
    "HitlHumanInputProvider",
    "HitlFeedbackProvider",
    "ExactLabelLLM",
    "CrewStopped",
    "ReviewAborted",
    "ReviewRecord",
    "checkpoint_id_for",
    "remember_outcome",
]

_LAZY = {
    "HitlEventListener": ".listener",
    "HitlHumanInputProvider": ".human_input",
    "CrewStopped": ".human_input",
    "ReviewAborted": ".human_input",
    "ReviewRecord": ".human_input",
    "HitlFeedbackProvider": ".flows",
    "checkpoint_id_for": ".flows",
    "ExactLabelLLM": ".labels",
    "remember_outcome": ".labels",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hitlhook.crewai' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


@dataclass
class Hitl:
    """What :func:`enable` wired; keep it to flush or undo."""

    client: HitlClient
    forwarder: EventForwarder | None
    listener: "HitlEventListener | None"
    provider: "HitlHumanInputProvider | None"
    flow_provider: "HitlFeedbackProvider | None"
    _token: Any = None
    _previous_flow_provider: Any = None

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Deliver all forwarded events so far; True if everything was sent in time."""
        if self.listener is not None:
            return self.listener.flush(timeout)
        return self.forwarder.flush(timeout) if self.forwarder is not None else True

    def disable(self, timeout: float = 5.0) -> None:
        """Unregister the listener, restore the previous providers, flush (up to
        ``timeout`` seconds) and close."""
        if self.listener is not None:
            self.listener.close(timeout)
        if self._token is not None:
            from crewai.core.providers.human_input import reset_provider

            try:
                reset_provider(self._token)
            except ValueError:  # set in another context
                from crewai.core.providers.human_input import SyncHumanInputProvider, set_provider

                set_provider(SyncHumanInputProvider())
            self._token = None
        if self.flow_provider is not None:
            from crewai.flow.flow_config import flow_config

            if flow_config.hitl_provider is self.flow_provider:
                flow_config.hitl_provider = self._previous_flow_provider
        if self.forwarder is not None:
            self.forwarder.close(timeout)


def enable(
    client: HitlClient | None = None,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    secret: str | None = None,
    kickoff_id: str | Callable[[Any], str | None] | None = None,
    events: bool = True,
    human_input: bool = True,
    flows: bool | str = False,
    timeout: float | None = None,
    expires_in: float | None = None,
    on_timeout: str | None = None,
    allowed_actions: Iterable[str] | None = None,
    outcomes: dict[str, str] | None = None,
    backoff: Backoff | None = None,
    settle: float = 0.05,
) -> Hitl:
    """Connect CrewAI to hitlhook in one call.

    Args:
        client: a ready :class:`~hitlhook.HitlClient`; else one is built from ``base_url``,
            ``api_key`` and ``secret`` (or ``HITLHOOK_URL``, ``HITLHOOK_API_KEY``,
            ``HITLHOOK_SECRET``, or the seed's ``WEBHOOK_*`` names).
        kickoff_id: report every crew under this execution id (or ``crew -> id``); default
            each crew's ``crew.id``.
        events: forward CrewAI events in the background.
        human_input: review ``Task(human_input=True)`` answers through hitlhook. The provider
            is set for the *current context*: call ``enable()`` where you call ``kickoff()``.
        flows: also make hitlhook the global ``@human_feedback`` provider: ``"pending"``
            (or ``True``) pauses flows for :mod:`hitlhook.resume`; ``"blocking"`` waits.
        timeout: seconds a review waits for its decision (``None``: forever).
        expires_in / on_timeout: server-side expiry of review checkpoints.
        allowed_actions: actions offered to reviewers (default all four).
        outcomes: action -> ``emit`` label mapping for flows.
        backoff: retry delays (reconnects while the server restarts).
        settle: seconds the forwarder holds events to restore their order.
    """
    if client is None:
        client = HitlClient(base_url, api_key=api_key, secret=secret, backoff=backoff)
    ids = KickoffIds(kickoff_id)
    forwarder = listener = provider = flow_provider = None
    token = previous = None
    if events:
        from .listener import HitlEventListener

        forwarder = EventForwarder(client, settle=settle)
        listener = HitlEventListener(forwarder, ids=ids)
    if human_input:
        from .human_input import HitlHumanInputProvider

        provider = HitlHumanInputProvider(
            client,
            ids=ids,
            before_checkpoint=(lambda: listener.flush(5.0)) if listener is not None else None,
            timeout=timeout,
            expires_in=expires_in,
            on_timeout=on_timeout,
            allowed_actions=allowed_actions,
        )
        token = provider.install()
    if flows:
        from crewai.flow.flow_config import flow_config

        from .flows import HitlFeedbackProvider

        mode = "blocking" if flows == "blocking" else "pending"
        flow_provider = HitlFeedbackProvider(
            client,
            mode=mode,  # type: ignore[arg-type]
            outcomes=outcomes,
            allowed_actions=allowed_actions,
            timeout=timeout,
            expires_in=expires_in,
            on_timeout=on_timeout,
        )
        previous = flow_config.hitl_provider
        flow_config.hitl_provider = flow_provider
    return Hitl(client, forwarder, listener, provider, flow_provider, token, previous)
