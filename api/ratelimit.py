"""Rate limits on the public tracking lookups, on the `limits` library.

With `REDIS_URL` every worker (on any host) counts in the same Redis, so N workers do not
make N times the limit. Without it, several workers (`agent-orders serve` starts one per CPU)
share their counts through PostgreSQL, each adding its lookups in one statement every 50 ms;
a single worker counts in a bounded memory store. Clients are keyed by IP address only: an
IPv6 client by its /64 (one customer line gets a whole /64, so rotating within it changes
nothing), anything that is not an address in one shared bucket. Who the client is comes from
uvicorn, which trusts `X-Forwarded-For` only from the proxies given to
`agent-orders serve --forwarded-allow-ips` (none by default).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
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


def _refusal(resets_at: float, message: str) -> RateLimited:
    wait = max(1, math.ceil(resets_at - time.time()))
    return RateLimited(
        message, hint=f"retry in {wait} s", headers={"Retry-After": str(wait)}, retry_after=wait
    )


FAILED_KEY = "track-failed:60"


@dataclass(slots=True)
class _Count:
    """One window of one key as this worker knows it."""

    seconds: float
    limit: int
    shared: int = 0
    """Hits in the database at the last look (this worker's flushed ones among them)."""
    pending: int = 0
    """Hits this worker let through that the database has not been told of yet."""
    resets_at: float = 0.0
    """When the window ends (epoch seconds); 0 while the database was not asked."""


class SharedTrackingLimiter:
    """`TrackingLimiter`'s limits counted in PostgreSQL, shared by every worker on the database,
    without a round trip per lookup.

    Each worker counts lookups in memory and adds them to the database in one statement at
    most every `flush_every` seconds, reading back the windows' totals (everyone's) and
    everyone's failed lookups. Between two looks a worker lets a lookup through on its own
    only while its pending hits, as if every one of the `workers` had as many, keep the
    window under half its limit; past that every lookup is counted in the database as it
    comes, and refused there. So the workers together let at most half a limit through
    unseen, and a client reaching a limit through several workers within one look gets at
    worst 1.5 times it. With hosts beside this one, use Redis (`REDIS_URL`).
    """

    def __init__(
        self,
        settings: ApiSettings,
        database: Callable[[], Database],
        *,
        flush_every: float = 0.05,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.database = database
        self.workers = settings.workers
        self.per_client = (
            (60.0, settings.track_burst),
            (3600.0, max(1, math.floor(settings.track_per_minute * 60))),
        )
        self.failures = settings.track_failed_per_minute
        self.max_keys = settings.track_max_clients * len(self.per_client) + 1
        self.flush_every = flush_every
        self.clock = clock
        self._counts: OrderedDict[str, _Count] = OrderedDict()
        """key -> its window, least recently used first (pending hits of a key forgotten
        for room are lost, never more than a share of half its limit)"""
        self._pending: set[str] = set()
        """Keys with pending hits: a look visits these, not every key remembered."""
        self._looked_at = -math.inf

    def _count(self, key: str, seconds: float, limit: int) -> _Count:
        count = self._counts.get(key)
        if count is None:
            if len(self._counts) >= self.max_keys:
                forgotten, _ = self._counts.popitem(last=False)
                self._pending.discard(forgotten)
            count = self._counts[key] = _Count(seconds, limit)
        else:
            self._counts.move_to_end(key)
        return count

    def _may_pass_here(self, count: _Count, now: float) -> bool:
        """Whether one more hit may wait for the next look (see the class)."""
        if count.resets_at and count.resets_at <= now:
            return False  # the window is over: the database starts the next one
        return 2 * (count.shared + self.workers * (count.pending + 1)) <= count.limit

    async def _look(self, now: float, counting: list[str]) -> None:
        """Add every pending hit, and one hit of each of `counting`, to the database; read back
        the totals and the failures."""
        self._looked_at = now
        batch = {k: self._counts[k].pending for k in self._pending}
        self._pending.clear()
        for key in counting:
            batch[key] = batch.get(key, 0) + 1
        for key in batch:
            self._counts[key].pending = 0
        windows = [(k, self._counts[k].seconds, n) for k, n in batch.items()]
        watch = None if FAILED_KEY in batch else FAILED_KEY
        try:
            async with self.database().reader() as conn:
                seen = await ratelimits.hit(conn, windows, watch=watch)
        except BaseException:
            for key, n in batch.items():  # told nobody: they are still to be told
                if key in self._counts and n > (key in counting):
                    self._counts[key].pending += n - (key in counting)
                    self._pending.add(key)
            raise
        for key, window in seen.items():
            count = self._counts.get(key)
            if count is not None:
                count.shared, count.resets_at = window.hits, window.resets_at.timestamp()
        failed = self._counts.get(FAILED_KEY)
        if watch is not None and FAILED_KEY not in seen and failed is not None:
            failed.shared, failed.resets_at = 0, 0.0

    async def _hit(self, counts: dict[str, _Count]) -> None:
        now = self.clock()
        if now - self._looked_at < self.flush_every and all(
            self._may_pass_here(c, now) for c in counts.values()
        ):
            for key, count in counts.items():
                count.pending += 1
                self._pending.add(key)
        else:
            await self._look(now, list(counts))

    async def hit(self, host: str | None) -> None:
        key = client_key(host)
        counts = {}
        for seconds, limit in self.per_client:
            name = f"track:{key}:{seconds:.0f}"
            counts[name] = self._count(name, seconds, limit)
        failed = self._count(FAILED_KEY, 60.0, self.failures)
        await self._hit(counts)
        for count in counts.values():
            if count.shared + count.pending > count.limit:
                raise _refusal(count.resets_at, "too many tracking lookups from this address")
        if failed.shared + failed.pending >= self.failures:
            raise _refusal(failed.resets_at, "too many failed tracking lookups right now")

    async def failed(self) -> None:
        await self._hit({FAILED_KEY: self._count(FAILED_KEY, 60.0, self.failures)})


def make_limiter(settings: ApiSettings, database: Callable[[], Database]) -> Limiter:
    """Redis when configured; PostgreSQL when several workers must share without it; else
    one process's memory."""
    if settings.workers > 1 and not settings.redis_url:
        return SharedTrackingLimiter(settings, database)
    return TrackingLimiter(settings)
