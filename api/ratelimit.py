"""A per-client token bucket, in process: enough to stop one address enumerating orders."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from api.problems import ApiError


class RateLimited(ApiError):
    code = "rate_limited"
    status = 429


class RateLimiter:
    """`burst` requests at once, then `per_second` on average, per client key."""

    def __init__(
        self,
        burst: int,
        per_second: float,
        *,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.per_second = per_second
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        """client -> (tokens left, when counted)"""

    def hit(self, client: str) -> None:
        """Take one token for `client`, or raise `RateLimited` with a Retry-After."""
        now = self.clock()
        tokens, then = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.per_second)
        if tokens < 1:
            wait = math.ceil((1 - tokens) / self.per_second)
            self._buckets[client] = (tokens, now)
            raise RateLimited(
                "too many tracking lookups from this address",
                hint=f"retry in {wait} s",
                headers={"Retry-After": str(wait)},
                retry_after=wait,
            )
        if len(self._buckets) >= self.max_clients and client not in self._buckets:
            self._forget_full(now)
        self._buckets[client] = (tokens - 1, now)

    def _forget_full(self, now: float) -> None:
        # A bucket that has refilled completely is the same as no bucket.
        refill = self.burst / self.per_second
        self._buckets = {c: v for c, v in self._buckets.items() if now - v[1] < refill}
