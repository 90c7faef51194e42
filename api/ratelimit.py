"""Rate limits on the public tracking lookups, on the `limits` library.

With `REDIS_URL` every worker (on any host) counts in the same Redis, so N workers do not
make N times the limit. Without it, several workers (`agent-orders serve` starts one per CPU)
count in PostgreSQL, one statement a lookup; a single worker counts in a bounded memory
store. Clients are keyed by IP address only: an IPv6 client by its /64 (one customer line
gets a whole /64, so rotating within it changes nothing), anything that is not an address in
one shared bucket. Who the client is comes from uvicorn, which trusts `X-Forwarded-For` only
from the proxies given to `agent-orders serve --forwarded-allow-ips` (none by default).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.aio.storage import RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError

from agent_tools.db import Database
from agent_tools.errors import Unavailable
from agent_tools.service import ratelimits
from api.problems import ApiError
from api.settings import ApiSettings


class RateLimited(ApiError):
    code = "rate_limited"
    status = 429


def client_key(host: str | None) -> str:
    """The bucket of a client address: an IPv4 address, an IPv6 /64, or "other"."""
    try:
        ip = ipaddress.ip_address((host or "").strip())
    except ValueError:
        return "other"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class BoundedMemoryStorage(Storage):
    """Fixed-window counters in one process, at most `max_keys` of them.

    limits' own memory storage sweeps every key on a timer; this one expires a key when it is
    read and, when full, forgets the least recently used key: O(1) per hit however many
    addresses knock.
    """

    STORAGE_SCHEME = ["agent-orders+memory"]

    def __init__(self, max_keys: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.max_keys = max_keys
        self.clock = clock
        self._counts: OrderedDict[str, tuple[int, float]] = OrderedDict()
        """key -> (count, when the window ends), least recently used first"""

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return ValueError

    def _live(self, key: str) -> tuple[int, float] | None:
        entry = self._counts.get(key)
        if entry is not None and entry[1] <= self.clock():
            del self._counts[key]
            return None
        return entry

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        entry = self._live(key)
        if entry is None:
            if len(self._counts) >= self.max_keys:
                self._counts.popitem(last=False)
            entry = (0, self.clock() + expiry)
        count = entry[0] + amount
        self._counts[key] = (count, entry[1])
        self._counts.move_to_end(key)
        return count

    async def get(self, key: str) -> int:
        entry = self._live(key)
        return entry[0] if entry else 0

    async def get_expiry(self, key: str) -> float:
        entry = self._live(key)
        return entry[1] if entry else self.clock()

    async def check(self) -> bool:
        return True

    async def reset(self) -> int | None:
        n = len(self._counts)
        self._counts.clear()
        return n

    async def clear(self, key: str) -> None:
        self._counts.pop(key, None)

    def __len__(self) -> int:
        return len(self._counts)


def make_storage(settings: ApiSettings) -> Storage:
    if settings.redis_url:
        return RedisStorage(
            "async+" + settings.redis_url,
            implementation="redispy",
            key_prefix=settings.redis_key_prefix,
            wrap_exceptions=True,
            socket_timeout=2,
            socket_connect_timeout=2,
        )
    return BoundedMemoryStorage(settings.track_max_clients)


class TrackingLimiter:
    """Per client: `track_burst` lookups a minute and 60 x `track_per_minute` an hour. For
    everyone together: at most `track_failed_per_minute` lookups that found nothing, so
    guessing order numbers from many addresses gets as far as from one."""

    def __init__(self, settings: ApiSettings, storage: Storage | None = None) -> None:
        self.storage = storage or make_storage(settings)
        self.limiter = FixedWindowRateLimiter(self.storage)
        self.per_client: tuple[RateLimitItem, ...] = (
            RateLimitItemPerMinute(settings.track_burst),
            RateLimitItemPerHour(max(1, math.floor(settings.track_per_minute * 60))),
        )
        self.failures = RateLimitItemPerMinute(settings.track_failed_per_minute)

    async def _refuse(self, item: RateLimitItem, ids: tuple[str, ...], message: str) -> RateLimited:
        reset = (await self.limiter.get_window_stats(item, *ids)).reset_time
        wait = max(1, math.ceil(reset - time.time()))
        return RateLimited(
            message,
            hint=f"retry in {wait} s",
            headers={"Retry-After": str(wait)},
            retry_after=wait,
        )

    async def hit(self, host: str | None) -> None:
        """Count one lookup from `host`, or raise `RateLimited` with a Retry-After."""
        key = client_key(host)
        try:
            for item in self.per_client:
                if not await self.limiter.hit(item, "track", key):
                    raise await self._refuse(
                        item, ("track", key), "too many tracking lookups from this address"
                    )
            if not await self.limiter.test(self.failures, "track-failed"):
                raise await self._refuse(
                    self.failures, ("track-failed",), "too many failed tracking lookups right now"
                )
        except StorageError as exc:
            raise Unavailable("the rate limit store is unreachable", hint="retry") from exc

    async def failed(self) -> None:
        """Count a lookup that found no order (or a wrong email) against everyone's limit."""
        try:
            await self.limiter.hit(self.failures, "track-failed")
        except StorageError as exc:
            raise Unavailable("the rate limit store is unreachable", hint="retry") from exc


class Limiter(Protocol):
    async def hit(self, host: str | None) -> None: ...

    async def failed(self) -> None: ...


def _refusal(resets_at: datetime, message: str) -> RateLimited:
    wait = max(1, math.ceil(resets_at.timestamp() - time.time()))
    return RateLimited(
        message, hint=f"retry in {wait} s", headers={"Retry-After": str(wait)}, retry_after=wait
    )


FAILED_KEY = "track-failed:60"


class SharedTrackingLimiter:
    """`TrackingLimiter`'s limits counted in PostgreSQL, shared by every worker on the
    database: the two windows of the client and a look at everyone's failures in one
    statement per lookup."""

    def __init__(self, settings: ApiSettings, database: Callable[[], Database | None]) -> None:
        self.database = database
        self.per_client = (
            (60.0, settings.track_burst),
            (3600.0, max(1, math.floor(settings.track_per_minute * 60))),
        )
        self.failures = settings.track_failed_per_minute

    def _db(self) -> Database:
        db = self.database()
        if db is None:
            raise Unavailable("the server is starting or stopping", hint="retry in a moment")
        return db

    async def hit(self, host: str | None) -> None:
        key = client_key(host)
        windows = [(f"track:{key}:{seconds:.0f}", seconds) for seconds, _ in self.per_client]
        async with self._db().reader() as conn:
            counts = await ratelimits.hit(conn, windows, watch=FAILED_KEY)
        for (name, _), (_, limit) in zip(windows, self.per_client, strict=True):
            if counts[name].hits > limit:
                raise _refusal(
                    counts[name].resets_at, "too many tracking lookups from this address"
                )
        failed = counts.get(FAILED_KEY)
        if failed is not None and failed.hits >= self.failures:
            raise _refusal(failed.resets_at, "too many failed tracking lookups right now")

    async def failed(self) -> None:
        async with self._db().reader() as conn:
            await ratelimits.hit(conn, [(FAILED_KEY, 60.0)])


def make_limiter(settings: ApiSettings, database: Callable[[], Database | None]) -> Limiter:
    """Redis when configured; PostgreSQL when several workers must share without it; else
    one process's memory."""
    if settings.workers > 1 and not settings.redis_url:
        return SharedTrackingLimiter(settings, database)
    return TrackingLimiter(settings)
