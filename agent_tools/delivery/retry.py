"""When a failed delivery is tried again: exponential backoff with jitter for about 3 days."""

from __future__ import annotations

import random

SCHEDULE: tuple[float, ...] = (
    5,
    5 * 60,
    30 * 60,
    2 * 3600,
    5 * 3600,
    10 * 3600,
    14 * 3600,
    20 * 3600,
    24 * 3600,
)
"""Seconds before each retry: 9 retries after the first attempt, about 75 hours in all."""

JITTER = 0.2
"""Each wait is drawn within ±20 %, so retries of many deliveries do not arrive together."""


def next_delay(attempts: int, scale: float = 1.0) -> float | None:
    """Seconds to wait after the `attempts`-th failed attempt, or None: give up."""
    if attempts < 1 or attempts > len(SCHEDULE):
        return None
    return SCHEDULE[attempts - 1] * scale * random.uniform(1 - JITTER, 1 + JITTER)
