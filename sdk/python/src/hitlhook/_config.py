"""Client settings shared by the sync and async clients, read from arguments or the
environment."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from ._protocol import Credentials
from .backoff import Backoff

DEFAULT_BASE_URL = "http://127.0.0.1:8001"


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def resolve_base_url(base_url: str | None) -> str:
    """``base_url``, else ``HITLHOOK_URL``, else ``WEBHOOK_BASE_URL``, else the local default."""
    url = base_url or _env("HITLHOOK_URL", "WEBHOOK_BASE_URL") or DEFAULT_BASE_URL
    return url.rstrip("/")


def resolve_credentials(api_key: str | None, secret: str | None, seed_timestamp: bool) -> Credentials:
    """Arguments win; else ``HITLHOOK_API_KEY``/``WEBHOOK_API_KEY`` and
    ``HITLHOOK_SECRET``/``WEBHOOK_SECRET``."""
    return Credentials(
        api_key=api_key if api_key is not None else _env("HITLHOOK_API_KEY", "WEBHOOK_API_KEY"),
        secret=secret if secret is not None else _env("HITLHOOK_SECRET", "WEBHOOK_SECRET"),
        seed_timestamp=seed_timestamp,
    )


@dataclass
class RetryBudget:
    """How long one operation may keep retrying: a number of attempts, a deadline
    (``time.monotonic()`` based), both, or neither (forever)."""

    max_attempts: int | None = None
    deadline: float | None = None
    attempt: int = field(default=0)

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def can_retry(self) -> bool:
        if self.max_attempts is not None and self.attempt + 1 >= self.max_attempts:
            return False
        rem = self.remaining()
        return rem is None or rem > 0

    def next_delay(self, backoff: Backoff) -> float:
        delay = backoff.delay(self.attempt)
        self.attempt += 1
        rem = self.remaining()
        return delay if rem is None else max(0.0, min(delay, rem))
