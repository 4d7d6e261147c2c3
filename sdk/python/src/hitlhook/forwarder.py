"""Send events in the background, in order, without ever blocking or failing the caller.

:class:`EventForwarder` is what the CrewAI listener uses, but it knows nothing about CrewAI:
``submit()`` only appends to a bounded in-memory buffer; one daemon thread sends the buffer
to ``POST /webhook/crewai`` one event after another over a kept-alive connection.

Ordering: CrewAI runs event handlers in a thread pool, so handlers may submit slightly out
of order. Each submission may carry an ``order`` number (CrewAI's ``emission_sequence``); an
event is held for ``settle`` seconds after it arrives, and events ready together are sent
sorted by that number. Retries keep the order: the first unsent event blocks the rest.

Failures: network errors and 5xx answers are retried with backoff for as long as it takes
(the same ``webhook-id`` each time, so the server stores each event once); other refusals
(a bad signature, an invalid event) are logged and the event is dropped. When the buffer is
full, new events are dropped and counted, so a long outage costs memory ``max_queue`` at most.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Mapping

from . import _protocol as p
from ._config import RetryBudget
from .errors import ApiError, HitlConnectionError

if TYPE_CHECKING:  # pragma: no cover
    from .client import HitlClient

__all__ = ["EventForwarder", "ForwarderStats"]

log = logging.getLogger("hitlhook.forwarder")

_BIG = float("inf")


@dataclass(order=True)
class _Item:
    order: float
    arrival: int
    ready_at: float = field(compare=False)
    raw: bytes = field(compare=False, repr=False)
    webhook_id: str = field(compare=False)
    event_type: str = field(compare=False)


@dataclass
class ForwarderStats:
    """Counters since the forwarder started."""

    submitted: int = 0
    sent: int = 0
    dropped_full: int = 0
    dropped_rejected: int = 0
    retries: int = 0


class EventForwarder:
    """A background, ordered, bounded event sender.

    Args:
        client: the :class:`~hitlhook.HitlClient` to send with (its secret or API key).
        max_queue: events kept while hitlhook is unreachable; more are dropped.
        settle: seconds an event waits for out-of-order siblings before it is sent.
        close_timeout: seconds :meth:`close` (and interpreter exit) spend flushing.
    """

    def __init__(
        self,
        client: "HitlClient",
        *,
        max_queue: int = 10_000,
        settle: float = 0.05,
        close_timeout: float = 5.0,
    ) -> None:
        self.client = client
        self.max_queue = max_queue
        self.settle = settle
        self.close_timeout = close_timeout
        self.stats = ForwarderStats()
        self._cond = threading.Condition()
        self._pending: list[_Item] = []
        self._in_flight = 0
        self._flushers = 0
        self._closed = False
        self._arrivals = itertools.count()
        self._thread: threading.Thread | None = None
        self._warned_full = False
        self._stop = threading.Event()
        _live.add(self)

    def __repr__(self) -> str:
        return f"EventForwarder(client={self.client!r}, pending={len(self._pending)}, stats={self.stats})"

    # -- producer side -------------------------------------------------------------------

    def submit(
        self,
        event_type: str,
        fields: Mapping[str, Any] | None = None,
        *,
        kickoff_id: str | None = None,
        event_id: str | None = None,
        timestamp: str | datetime | None = None,
        order: int | None = None,
    ) -> bool:
        """Queue one event; returns at once. False if it was dropped (closed or full)."""
        try:
            body, eid = p.event_body(event_type, fields, kickoff_id=kickoff_id, event_id=event_id, timestamp=timestamp)
            raw = p.dumps(body)
        except Exception:  # noqa: BLE001 - a bad event must never break the caller
            log.warning("dropping an event of type %r that could not be encoded", event_type, exc_info=True)
            return False
        item = _Item(
            order=float(order) if order is not None else _BIG,
            arrival=next(self._arrivals),
            ready_at=time.monotonic() + self.settle,
            raw=raw,
            webhook_id=p.webhook_id_for(eid),
            event_type=event_type,
        )
        with self._cond:
            if self._closed:
                return False
            self.stats.submitted += 1
            if len(self._pending) + self._in_flight >= self.max_queue:
                self.stats.dropped_full += 1
                if not self._warned_full:
                    log.warning("hitlhook event buffer full (%d); dropping new events until it drains", self.max_queue)
                    self._warned_full = True
                return False
            self._pending.append(item)
            self._ensure_thread()
            self._cond.notify_all()
        return True

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Send everything queued so far, ignoring the settle delay. True if the buffer
        drained within ``timeout`` (False, not an exception, if hitlhook is unreachable)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flushers += 1
            self._cond.notify_all()
            try:
                while self._pending or self._in_flight:
                    if self._thread is None or not self._thread.is_alive():
                        return False
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining if remaining is not None else 1.0)
                return True
            finally:
                self._flushers -= 1

    def close(self, timeout: float | None = None) -> bool:
        """Flush (up to ``timeout``, default ``close_timeout``) and stop the thread.
        Closing again is a no-op."""
        with self._cond:
            if self._closed:
                return not self._pending
        drained = self.flush(self.close_timeout if timeout is None else timeout)
        with self._cond:
            self._closed = True
            self._stop.set()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if not drained and self._pending:
            log.warning("hitlhook forwarder closed with %d unsent events", len(self._pending))
        return drained

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._pending) + self._in_flight

    # -- sender thread -------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="hitlhook-forwarder", daemon=True)
            self._thread.start()

    def _take_ready(self) -> list[_Item] | None:
        """Under the lock: wait until some events are ready; None when closed and empty."""
        while True:
            if not self._pending:
                if self._closed:
                    return None
                self._cond.wait(1.0)
                continue
            now = time.monotonic()
            if self._flushers or self._closed:
                ready = list(self._pending)
            else:
                ready = [i for i in self._pending if i.ready_at <= now]
            if ready:
                ready.sort()
                taken = set(id(i) for i in ready)
                self._pending = [i for i in self._pending if id(i) not in taken]
                self._in_flight += len(ready)
                return ready
            self._cond.wait(max(0.001, min(i.ready_at for i in self._pending) - now))

    def _run(self) -> None:
        while True:
            with self._cond:
                batch = self._take_ready()
            if batch is None:
                return
            for index, item in enumerate(batch):
                if not self._deliver(item):
                    # Closed while hitlhook was down: give back the rest, unsent.
                    with self._cond:
                        rest = batch[index:]
                        self._in_flight -= len(rest)
                        self._pending[:0] = rest
                        self._cond.notify_all()
                    return
                with self._cond:
                    self._in_flight -= 1
                    self._cond.notify_all()

    def _deliver(self, item: _Item) -> bool:
        """Send one event, retrying retryable failures until it is sent or dropped (True)
        or the forwarder is closed (False)."""
        attempt = RetryBudget()
        while True:
            try:
                self.client._send_body(item.raw, item.webhook_id, RetryBudget(max_attempts=1))
                self.stats.sent += 1
                return True
            except HitlConnectionError as exc:
                reason: str = type(exc.__cause__ or exc).__name__
            except ApiError as exc:
                if not p.is_retryable_status(exc.status):
                    self.stats.dropped_rejected += 1
                    log.warning("hitlhook refused a %s event: %s", item.event_type, exc)
                    return True
                reason = f"HTTP {exc.status}"
            except Exception:  # noqa: BLE001 - the sender thread must survive anything
                self.stats.dropped_rejected += 1
                log.exception("unexpected error sending a %s event; dropped", item.event_type)
                return True
            self.stats.retries += 1
            delay = attempt.next_delay(self.client.backoff)
            log.debug("sending %s failed (%s); retrying in %.2fs", item.event_type, reason, delay)
            if self._stop.wait(delay):
                return False


_live: "weakref.WeakSet[EventForwarder]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for fwd in list(_live):
        try:
            fwd.close()
        except Exception:  # noqa: BLE001 - never fail interpreter exit
            pass
