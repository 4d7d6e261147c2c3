"""Backoff delays and retry budgets."""

from __future__ import annotations

import time

import pytest

from hitlhook import Backoff
from hitlhook._config import RetryBudget


def test_delays_grow_exponentially_and_cap() -> None:
    b = Backoff(initial=0.1, maximum=1.0, multiplier=2.0, jitter=0.0)
    assert [b.delay(i) for i in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert b.base(10_000) == 1.0  # no overflow after a very long outage


def test_jitter_stays_within_bounds_and_cap() -> None:
    low = Backoff(initial=1.0, maximum=10.0, jitter=0.2, rand=lambda: 0.0)
    high = Backoff(initial=1.0, maximum=10.0, jitter=0.2, rand=lambda: 0.999999)
    assert low.delay(0) == pytest.approx(0.8)
    assert high.delay(0) == pytest.approx(1.2, rel=1e-3)
    assert high.delay(20) == 10.0
    real = Backoff(initial=0.5, maximum=4.0)
    for attempt in range(12):
        assert 0.4 * min(4.0, 0.5 * 2**attempt) <= real.delay(attempt) <= 4.0


def test_invalid_settings_are_refused() -> None:
    for kwargs in ({"initial": 0}, {"initial": 2, "maximum": 1}, {"multiplier": 0.5}, {"jitter": 1.0}):
        with pytest.raises(ValueError):
            Backoff(**kwargs)


def test_retry_budget_by_attempts() -> None:
    b = RetryBudget(max_attempts=3)
    seen = 0
    while b.can_retry():
        b.next_delay(Backoff(jitter=0.0))
        seen += 1
    assert seen == 2  # 3 attempts = 2 retries


def test_retry_budget_by_deadline_clips_delays() -> None:
    b = RetryBudget(deadline=time.monotonic() + 0.3)
    assert b.can_retry()
    assert b.next_delay(Backoff(initial=5.0, maximum=5.0, jitter=0.0)) <= 0.3
    time.sleep(0.31)
    assert not b.can_retry()
