"""The synchronous hitlhook client."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any, Callable, Iterable, Mapping

import httpx

from . import _protocol as p
from ._config import RetryBudget, resolve_base_url, resolve_credentials
from .backoff import Backoff
from .errors import ApiError, DecisionTimeout, HitlConnectionError
from .models import Checkpoint, Decision, EventReceipt, ExecutionStatus, Page

__all__ = ["HitlClient"]

log = logging.getLogger("hitlhook.client")


class HitlClient:
    """Talks to a hitlhook server over HTTP (``httpx``).

    Args:
        base_url: where hitlhook listens; default ``HITLHOOK_URL``, ``WEBHOOK_BASE_URL`` or
            ``http://127.0.0.1:8001``.
        api_key: a hitlhook API key (``Authorization: Bearer``); default ``HITLHOOK_API_KEY``
            or ``WEBHOOK_API_KEY``. Needed to read checkpoints and to decide. An ingest key
            may send events and read; a reviewer or admin key may decide.
        secret: the shared webhook secret for signing events; default ``HITLHOOK_SECRET`` or
            ``WEBHOOK_SECRET``. Events are signed when it is set, else sent with the API key.
        timeout: seconds for one ordinary request (long-polls add their wait to it).
        poll_wait: seconds the server holds one long-poll before answering "still pending".
        backoff: delays between retries after network errors or 5xx answers.
        max_retries: attempts for one-shot calls (events, reads, decisions) before the error
            is raised. Waiting for a decision retries until its own timeout instead.
        seed_timestamp: sign the seed header over ``"{ts}.{body}"`` with ``X-CrewAI-Timestamp``
            (default) rather than over the body alone.
        http_client: an ``httpx.Client`` to use instead of creating one (not closed by us).

    The client is thread-safe (it shares one connection pool) and a context manager.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        secret: str | None = None,
        timeout: float = 10.0,
        poll_wait: float = 30.0,
        backoff: Backoff | None = None,
        max_retries: int = 3,
        seed_timestamp: bool = True,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.base_url = resolve_base_url(base_url)
        self._creds = resolve_credentials(api_key, secret, seed_timestamp)
        self.timeout = timeout
        self.poll_wait = poll_wait
        self.backoff = backoff or Backoff()
        self.max_retries = max(1, max_retries)
        self._own_http = http_client is None
        self._http = http_client or httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            headers={"User-Agent": p.USER_AGENT, "Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"HitlClient(base_url={self.base_url!r}, credentials={self._creds!r})"

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool (if the client created it)."""
        if self._own_http:
            self._http.close()

    def __enter__(self) -> "HitlClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return path if self._own_http else self.base_url + path

    def _call(
        self,
        method: str,
        path: str,
        *,
        budget: RetryBudget,
        content: bytes | None = None,
        headers: Callable[[], Mapping[str, str]] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """One logical request, retried on network errors and retryable statuses within
        ``budget``. Raises the mapped :class:`ApiError` or :class:`HitlConnectionError`."""
        while True:
            try:
                resp = self._http.request(
                    method,
                    self._url(path),
                    content=content,
                    headers=dict(headers()) if headers else None,
                    params={k: v for k, v in (params or {}).items() if v is not None} or None,
                    timeout=timeout if timeout is not None else self.timeout,
                )
            except httpx.TransportError as exc:
                if not budget.can_retry():
                    raise HitlConnectionError(f"{method} {path}: cannot reach hitlhook at {self.base_url}: {exc!r}") from exc
                delay = budget.next_delay(self.backoff)
                log.info("%s %s failed (%s); retrying in %.2fs", method, path, type(exc).__name__, delay)
                time.sleep(delay)
                continue
            if resp.status_code < 400:
                return resp
            err = p.error_from_response(resp.status_code, resp.content, method=method, path=path)
            if not p.is_retryable_status(resp.status_code) or not budget.can_retry():
                raise err
            delay = budget.next_delay(self.backoff)
            log.info("%s %s answered %s; retrying in %.2fs", method, path, resp.status_code, delay)
            time.sleep(delay)

    def _one_shot(self) -> RetryBudget:
        return RetryBudget(max_attempts=self.max_retries)

    def _auth(self) -> Callable[[], Mapping[str, str]]:
        return self._creds.bearer

    # -- events ------------------------------------------------------------------------

    def send_event(
        self,
        event_type: str,
        fields: Mapping[str, Any] | None = None,
        *,
        kickoff_id: str | None = None,
        event_id: str | None = None,
        timestamp: str | datetime | None = None,
        retry_for: float | None = None,
    ) -> EventReceipt:
        """Send one event to ``POST /webhook/crewai``.

        Args:
            event_type: e.g. ``task.completed`` or ``checkpoint.required``; unknown types are
                stored too.
            fields: any other fields, kept verbatim by the server.
            kickoff_id: the execution the event belongs to.
            event_id: a stable id; generated if absent. Retries reuse it (and the derived
                ``webhook-id``), so a redelivery never creates a duplicate.
            timestamp: when it happened (default now).
            retry_for: keep retrying network errors and 5xx answers for this many seconds
                (default: ``max_retries`` attempts).
        """
        body, eid = p.event_body(event_type, fields, kickoff_id=kickoff_id, event_id=event_id, timestamp=timestamp)
        budget = (
            RetryBudget(deadline=time.monotonic() + retry_for) if retry_for is not None else self._one_shot()
        )
        return self._send_body(p.dumps(body), p.webhook_id_for(eid), budget)

    def _send_body(self, raw: bytes, webhook_id: str, budget: RetryBudget) -> EventReceipt:
        """POST already-encoded event bytes, re-signing each attempt."""
        resp = self._call(
            "POST",
            p.INGEST_PATH,
            budget=budget,
            content=raw,
            headers=lambda: self._creds.ingest_headers(raw, webhook_id),
        )
        return p.receipt(resp.json(), resp.headers.get("Idempotent-Replayed"))

    def create_checkpoint(
        self,
        name: str,
        context: Mapping[str, Any] | list[Any] | None = None,
        kickoff_id: str | None = None,
        *,
        checkpoint_id: str | None = None,
        allowed_actions: Iterable[str] | None = None,
        expires_in: float | None = None,
        expires_at: str | datetime | None = None,
        on_timeout: str | None = None,
        extra: Mapping[str, Any] | None = None,
        retry_for: float | None = None,
    ) -> EventReceipt:
        """Send ``checkpoint.required`` and return the receipt (its ``checkpoint_id`` names
        the new checkpoint). See :meth:`request_decision` for the arguments."""
        fields = p.checkpoint_fields(
            name,
            context,
            checkpoint_id=checkpoint_id,
            allowed_actions=allowed_actions,
            expires_in=expires_in,
            expires_at=expires_at,
            on_timeout=on_timeout,
            extra=extra,
        )
        return self.send_event(
            "checkpoint.required",
            fields,
            kickoff_id=kickoff_id,
            event_id=f"cp_{fields['checkpoint_id']}",
            retry_for=retry_for,
        )

    # -- decisions ---------------------------------------------------------------------

    def request_decision(
        self,
        name: str,
        context: Mapping[str, Any] | list[Any] | None = None,
        kickoff_id: str | None = None,
        *,
        allowed_actions: Iterable[str] | None = None,
        timeout: float | None = None,
        expires_in: float | None = None,
        expires_at: str | datetime | None = None,
        on_timeout: str | None = None,
        checkpoint_id: str | None = None,
        raise_on_stop: bool = True,
        extra: Mapping[str, Any] | None = None,
    ) -> Decision:
        """Ask a human: create a checkpoint, then wait for its decision.

        Creating retries until ``timeout`` on network errors; waiting long-polls the server
        and reconnects with backoff, so a server restart (even refused connections for a
        while) does not end the wait.

        Args:
            name: the checkpoint's name, e.g. ``"approve_report"``.
            context: what the human needs to decide (a JSON object or array).
            kickoff_id: the execution this belongs to.
            allowed_actions: a subset of ``continue``, ``stop``, ``revise``, ``skip``
                (default all).
            timeout: seconds to wait in total; ``None`` waits forever.
            expires_in / expires_at: when the server closes the checkpoint by itself.
            on_timeout: the action the server records when it expires (not ``revise``).
            checkpoint_id: your own id (default: a new UUID).
            raise_on_stop: raise :class:`~hitlhook.CheckpointStopped` for ``stop`` (default)
                instead of returning it, so a forgotten check never runs on.
            extra: more fields for the ``checkpoint.required`` event.

        Returns:
            The :class:`~hitlhook.Decision` (``continue``, ``revise``, ``skip``, or ``stop``
            if ``raise_on_stop`` is false).

        Raises:
            CheckpointStopped: a human chose ``stop``.
            DecisionTimeout: ``timeout`` passed without a decision.
            CheckpointClosed: the checkpoint expired or was cancelled without a decision.
            ApiError: the server refused the request (bad signature, bad key, ...).
        """
        started = time.monotonic()
        receipt = self.create_checkpoint(
            name,
            context,
            kickoff_id,
            checkpoint_id=checkpoint_id,
            allowed_actions=allowed_actions,
            expires_in=expires_in,
            expires_at=expires_at,
            on_timeout=on_timeout,
            extra=extra,
            retry_for=timeout if timeout is not None else 3600.0 * 24,
        )
        remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        return self.wait_for_decision(receipt.checkpoint_id or checkpoint_id or "", timeout=remaining, raise_on_stop=raise_on_stop)

    def wait_for_decision(
        self, checkpoint_id: str, timeout: float | None = None, *, raise_on_stop: bool = True
    ) -> Decision:
        """Wait (long-poll) until ``checkpoint_id`` is decided, expired or cancelled.

        Network errors and 5xx answers are retried with backoff until ``timeout``;
        401/403/404 are raised at once.
        """
        self._creds.require_api_key("waiting for a decision")
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        budget = RetryBudget(deadline=deadline)
        path = p.checkpoint_path(checkpoint_id)
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise DecisionTimeout(checkpoint_id, time.monotonic() - started)
            wait = p.wait_seconds(remaining, self.poll_wait)
            asked = time.monotonic()
            try:
                resp = self._call(
                    "GET",
                    path,
                    budget=RetryBudget(max_attempts=1),
                    headers=self._auth(),
                    params={"wait": wait},
                    timeout=self.timeout + wait,
                )
            except (HitlConnectionError, ApiError) as exc:
                if isinstance(exc, ApiError) and not p.is_retryable_error(exc):
                    raise
                if not budget.can_retry():
                    raise DecisionTimeout(checkpoint_id, time.monotonic() - started) from exc
                delay = budget.next_delay(self.backoff)
                log.info("waiting for %s: %s; reconnecting in %.2fs", checkpoint_id, type(exc).__name__, delay)
                time.sleep(delay)
                continue
            budget.attempt = 0
            decision = p.settled_decision(Checkpoint.from_json(resp.json()), raise_on_stop=raise_on_stop)
            if decision is not None:
                return decision
            if time.monotonic() - asked < min(wait, 1.0) * 0.5:
                time.sleep(0.2)  # the server answered "pending" early: do not spin

    def get_checkpoint(self, checkpoint_id: str, *, wait: float | None = None) -> Checkpoint:
        """``GET /webhook/checkpoint/{id}``; with ``wait`` the server holds the request until
        the checkpoint is settled or ``wait`` seconds pass (at most 300)."""
        self._creds.require_api_key("reading a checkpoint")
        w = p.wait_seconds(wait, p.MAX_SERVER_WAIT) if wait else None
        resp = self._call(
            "GET",
            p.checkpoint_path(checkpoint_id),
            budget=self._one_shot(),
            headers=self._auth(),
            params={"wait": w},
            timeout=self.timeout + (w or 0),
        )
        return Checkpoint.from_json(resp.json())

    def decide(
        self,
        checkpoint_id: str,
        action: str,
        feedback: str | None = None,
        *,
        decided_by: str | None = None,
        channel: str | None = None,
    ) -> Checkpoint:
        """Decide a checkpoint (``POST /webhook/feedback``); needs a reviewer or admin key.

        The first decision wins: its decider repeating it is fine, any other (the same action by
        someone else included) raises
        :class:`~hitlhook.AlreadyDecided` (its ``existing`` holds the winner).
        """
        self._creds.require_api_key("deciding")
        raw = p.dumps(p.decision_body(action, feedback, decided_by, channel, checkpoint_id))
        resp = self._call(
            "POST",
            p.FEEDBACK_PATH,
            budget=self._one_shot(),
            content=raw,
            headers=lambda: {"Content-Type": "application/json", **self._creds.bearer()},
        )
        return Checkpoint.from_json(resp.json())

    # -- reads -------------------------------------------------------------------------

    def status(self, kickoff_id: str) -> ExecutionStatus:
        """``GET /webhook/status/{kickoff_id}``: the execution, its checkpoints, recent events."""
        self._creds.require_api_key("reading status")
        resp = self._call("GET", p.status_path(kickoff_id), budget=self._one_shot(), headers=self._auth())
        return ExecutionStatus.from_json(resp.json())

    def list_checkpoints(
        self,
        *,
        status: str | None = None,
        kickoff_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Checkpoint]:
        """``GET /v1/checkpoints``: one page of checkpoints, newest first."""
        self._creds.require_api_key("listing checkpoints")
        resp = self._call(
            "GET",
            "/v1/checkpoints",
            budget=self._one_shot(),
            headers=self._auth(),
            params={"status": status, "kickoff_id": kickoff_id, "limit": limit, "cursor": cursor},
        )
        data = resp.json()
        return Page([Checkpoint.from_json(c) for c in data.get("items") or []], data.get("next_cursor"))

    def list_events(self, kickoff_id: str, *, after: int | None = None, limit: int | None = None) -> Page[dict[str, Any]]:
        """``GET /v1/executions/{kickoff_id}/events``: stored events in arrival order."""
        self._creds.require_api_key("listing events")
        resp = self._call(
            "GET",
            p.events_path(kickoff_id),
            budget=self._one_shot(),
            headers=self._auth(),
            params={"after": after, "limit": limit},
        )
        data = resp.json()
        return Page([dict(e) for e in data.get("items") or []], data.get("next_cursor"))

    def ready(self) -> bool:
        """True if ``GET /ready`` answers 200 (no retries)."""
        try:
            return self._http.get(self._url("/ready"), timeout=self.timeout).status_code == 200
        except httpx.TransportError:
            return False
