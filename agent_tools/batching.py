"""Concurrent lookups of one kind, answered together: one statement for many requests.

A lookup never waits for a timer. While fewer than `max_inflight` fetches are running, it is
fetched at once (alone, or with whatever queued meanwhile); otherwise it joins the next
batch, which starts as soon as a fetch ends. Under load each round trip answers many
requests; when idle each request has its own. Nothing is kept: every answer was read after
its request arrived (a batch takes only keys queued before it starts), so a change committed
before a request is always in its answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from itertools import islice
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Batcher(Generic[K, V]):
    def __init__(
        self,
        fetch: Callable[[list[K]], Awaitable[dict[K, V]]],
        *,
        max_inflight: int = 1,
        max_batch: int = 100,
    ) -> None:
        self.fetch = fetch
        """Answers for the keys it finds; a key it leaves out is answered None."""
        self.max_inflight = max_inflight
        self.max_batch = max_batch
        self._queue: dict[K, list[asyncio.Future[V | None]]] = {}
        self._inflight = 0
        """Fetches running: counted down by `_drain` itself in the step that finds the queue
        empty, so a lookup queued after that step always starts a fetch of its own."""
        self._tasks: set[asyncio.Task[None]] = set()
        """The running fetches' tasks, held so that none is collected while it runs."""

    async def get(self, key: K) -> V | None:
        waiter: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._queue.setdefault(key, []).append(waiter)
        if self._inflight < self.max_inflight:
            self._inflight += 1
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await waiter

    async def _drain(self) -> None:
        try:
            while self._queue:
                await self._fetch_next()
        finally:
            self._inflight -= 1

    async def _fetch_next(self) -> None:
        keys = list(islice(self._queue, self.max_batch))
        waiters = {key: self._queue.pop(key) for key in keys}
        try:
            found = await self.fetch(keys)
        except BaseException as exc:
            for futures in waiters.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise  # cancelled (the server is stopping): this task ends
            return
        for key, futures in waiters.items():
            value = found.get(key)
            for future in futures:
                if not future.done():
                    future.set_result(value)
