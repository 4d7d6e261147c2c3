"""The two helpers the seed README's users already call, kept call-compatible:
:func:`configure_crew_webhooks` and :func:`send_checkpoint_webhook`."""

from __future__ import annotations

import os
import time
from typing import Any, Iterable, Mapping

import httpx

from . import _protocol as p
from . import signing
from .backoff import Backoff
from .errors import HitlConnectionError
from .models import EventReceipt

__all__ = ["configure_crew_webhooks", "send_checkpoint_webhook", "DEFAULT_STREAM_EVENTS"]

DEFAULT_STREAM_EVENTS: tuple[str, ...] = (
    "crew_kickoff_started",
    "crew_kickoff_completed",
    "crew_kickoff_failed",
    "task_started",
    "task_completed",
    "task_failed",
    "agent_execution_started",
    "agent_execution_completed",
    "agent_execution_error",
    "tool_usage_started",
    "tool_usage_finished",
    "tool_usage_error",
    "flow_started",
    "flow_finished",
    "flow_paused",
    "human_feedback_requested",
    "human_feedback_received",
)
"""CrewAI event-bus names asked for in the ``webhooks`` streaming object by default."""


def configure_crew_webhooks(
    webhook_base_url: str,
    *,
    token: str | None = None,
    events: Iterable[str] | None = None,
    realtime: bool = False,
    streaming: bool = True,
    legacy_urls: bool = True,
    human_input: bool = True,
) -> dict[str, Any]:
    """The webhook settings for a CrewAI AMP ``POST /kickoff`` body, pointing at hitlhook.

    Merge the result into the kickoff body (``{"inputs": {...}, **config}``). Send it again
    on every ``/resume``: AMP does not keep webhook settings between calls.

    Args:
        webhook_base_url: where hitlhook is reachable from AMP, e.g. ``https://hitl.example.com``.
        token: the bearer token AMP sends (a hitlhook ingest API key); default
            ``HITLHOOK_INGEST_KEY``, then ``WEBHOOK_API_KEY``. Without one the ``authentication``
            objects are left out.
        events: CrewAI event names for the streaming ``webhooks`` object
            (default :data:`DEFAULT_STREAM_EVENTS`).
        realtime: ask AMP to send each event at once instead of in batches.
        streaming: include the ``webhooks`` streaming object.
        legacy_urls: include ``taskWebhookUrl``, ``stepWebhookUrl`` and ``crewWebhookUrl``.
        human_input: include ``humanInputWebhook`` (for tasks with ``human_input=True``).

    Returns:
        A dict with the keys ``webhooks``, ``taskWebhookUrl``, ``stepWebhookUrl``,
        ``crewWebhookUrl`` and ``humanInputWebhook`` (those enabled).
    """
    if not webhook_base_url:
        raise ValueError("webhook_base_url is required")
    url = webhook_base_url.rstrip("/") + p.INGEST_PATH
    bearer = token if token is not None else os.environ.get("HITLHOOK_INGEST_KEY") or os.environ.get("WEBHOOK_API_KEY")
    auth = {"strategy": "bearer", "token": bearer} if bearer else None
    config: dict[str, Any] = {}
    if streaming:
        stream: dict[str, Any] = {
            "events": list(events if events is not None else DEFAULT_STREAM_EVENTS),
            "url": url,
            "realtime": bool(realtime),
        }
        if auth:
            stream["authentication"] = dict(auth)
        config["webhooks"] = stream
    if legacy_urls:
        config["taskWebhookUrl"] = url
        config["stepWebhookUrl"] = url
        config["crewWebhookUrl"] = url
    if human_input:
        hi: dict[str, Any] = {"url": url}
        if auth:
            hi["authentication"] = dict(auth)
        config["humanInputWebhook"] = hi
    return config


def send_checkpoint_webhook(
    webhook_url: str,
    checkpoint_id: str,
    checkpoint_name: str,
    context: Mapping[str, Any] | list[Any] | None,
    kickoff_id: str | None,
    secret: str | None,
    *,
    allowed_actions: Iterable[str] | None = None,
    expires_in: float | None = None,
    on_timeout: str | None = None,
    timeout: float = 10.0,
    retries: int = 3,
) -> EventReceipt:
    """Send a signed ``checkpoint.required`` event to ``webhook_url``, as in the seed README.

    The body is signed twice over the same bytes: ``X-CrewAI-Signature: sha256=<hex>`` over
    the raw body (exactly the seed scheme) and Standard Webhooks ``webhook-id``,
    ``webhook-timestamp`` and ``webhook-signature`` (replay-protected). Network errors and
    5xx answers are retried ``retries`` times with the same ``webhook-id``, so the server
    stores the checkpoint once.

    Args:
        webhook_url: the full ingest URL, e.g. ``http://localhost:8001/webhook/crewai``.
        checkpoint_id: your id for the checkpoint (the decision is fetched with it).
        checkpoint_name: e.g. ``"after_planning"``.
        context: what the reviewer needs to see (a JSON object or array).
        kickoff_id: the execution this checkpoint belongs to (may be ``None``).
        secret: the shared ``WEBHOOK_SECRET`` (``None`` reads the environment variable).

    Returns:
        The server's :class:`~hitlhook.EventReceipt`.

    Raises:
        SignatureRejected: the server refused the signature (wrong secret or clock).
        ApiError: any other refusal; HitlConnectionError if the server stayed unreachable.
    """
    key = secret if secret is not None else os.environ.get("WEBHOOK_SECRET") or os.environ.get("HITLHOOK_SECRET")
    if not key:
        raise ValueError("send_checkpoint_webhook needs the webhook secret (secret= or WEBHOOK_SECRET)")
    fields = p.checkpoint_fields(
        checkpoint_name,
        context,
        checkpoint_id=checkpoint_id,
        allowed_actions=allowed_actions,
        expires_in=expires_in,
        on_timeout=on_timeout,
    )
    body, event_id = p.event_body("checkpoint.required", fields, kickoff_id=kickoff_id, event_id=f"cp_{checkpoint_id}")
    raw = p.dumps(body)
    webhook_id = p.webhook_id_for(event_id)
    backoff = Backoff()
    attempts = max(1, retries + 1)
    with httpx.Client(timeout=timeout, headers={"User-Agent": p.USER_AGENT}) as http:
        for attempt in range(attempts):
            headers = {"Content-Type": "application/json"}
            headers.update(signing.sign_headers(key, raw, webhook_id=webhook_id, seed_timestamp=False))
            try:
                resp = http.post(webhook_url, content=raw, headers=headers)
            except httpx.TransportError as exc:
                if attempt + 1 >= attempts:
                    raise HitlConnectionError(f"cannot reach {webhook_url}: {exc!r}") from exc
                time.sleep(backoff.delay(attempt))
                continue
            if resp.status_code >= 400:
                if p.is_retryable_status(resp.status_code) and attempt + 1 < attempts:
                    time.sleep(backoff.delay(attempt))
                    continue
                p.raise_for_status(resp.status_code, resp.content, "POST", p.INGEST_PATH)
            return p.receipt(resp.json(), resp.headers.get("Idempotent-Replayed"))
    raise AssertionError("unreachable")  # pragma: no cover
