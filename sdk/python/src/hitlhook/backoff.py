"""Exponential backoff with jitter, used whenever the client retries."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Iterator

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """Delays ``initial * multiplier**n`` capped at ``maximum``, each scaled by a random
    factor in ``[1 - jitter, 1 + jitter]`` (and never above ``maximum``).

    The defaults reconnect quickly after a server restart (0.2 s, 0.4 s, 0.8 s ...) without
    hammering a server that stays down (at most one try every 5 s).
    """

    initial: float = 0.2
    maximum: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2
    rand: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial:
            raise ValueError("need 0 < initial <= maximum")
        if self.multiplier < 1:
            raise ValueError("multiplier must be >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")

    def base(self, attempt: int) -> float:
        """The delay before retry number ``attempt`` (0-based), without jitter."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        # Avoid float overflow for very long outages.
        exp = min(attempt, 64)
        return min(self.maximum, self.initial * self.multiplier**exp)

    def delay(self, attempt: int) -> float:
        """The jittered delay before retry number ``attempt`` (0-based)."""
        factor = 1.0 + self.jitter * (2.0 * self.rand() - 1.0)
        return min(self.maximum, self.base(attempt) * factor)

    def delays(self) -> Iterator[float]:
        """An endless iterator of jittered delays."""
        attempt = 0
        while True:
            yield self.delay(attempt)
            attempt += 1
