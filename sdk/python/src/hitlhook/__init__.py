"""hitlhook: a Python client and CrewAI integration for the hitlhook human-in-the-loop server.

Quick start::

    from hitlhook import HitlClient

    with HitlClient("http://127.0.0.1:8001", api_key="...", secret="...") as hitl:
        decision = hitl.request_decision("approve_plan", {"plan": plan}, kickoff_id=run_id)
        if decision.revise:
            ...  # decision.feedback says what to change

CrewAI integration lives in :mod:`hitlhook.crewai` (install ``hitlhook[crewai]``); importing
:mod:`hitlhook` never imports CrewAI.
"""

from __future__ import annotations

from .aio import AsyncHitlClient
from .backoff import Backoff
from .client import HitlClient
from .errors import (
    ActionNotAllowed,
    AlreadyDecided,
    ApiError,
    BadRequest,
    CheckpointClosed,
    CheckpointStopped,
    Conflict,
    DecisionTimeout,
    FeedbackRequired,
    Forbidden,
    HitlConnectionError,
    HitlError,
    InvalidEvent,
    MalformedJson,
    NotFound,
    PayloadTooLarge,
    ServerError,
    SignatureRejected,
    Unauthorized,
    UnsupportedMediaType,
)
from .forwarder import EventForwarder
from .models import ALL_ACTIONS, Action, Checkpoint, Decision, EventReceipt, ExecutionStatus, Page
from .seed import configure_crew_webhooks, send_checkpoint_webhook

__version__ = "0.1.0"

__all__ = [
    "HitlClient",
    "AsyncHitlClient",
    "EventForwarder",
    "Backoff",
    "configure_crew_webhooks",
    "send_checkpoint_webhook",
    "Action",
    "ALL_ACTIONS",
    "Decision",
    "Checkpoint",
    "EventReceipt",
    "ExecutionStatus",
    "Page",
    "HitlError",
    "HitlConnectionError",
    "ApiError",
    "BadRequest",
    "MalformedJson",
    "InvalidEvent",
    "ActionNotAllowed",
    "FeedbackRequired",
    "SignatureRejected",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "AlreadyDecided",
    "CheckpointClosed",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "ServerError",
    "CheckpointStopped",
    "DecisionTimeout",
    "__version__",
]
