"""The deliverer: claims due webhook deliveries and emails and sends them, until stopped.

Any number of deliverers (in `serve`/`run`, or `agent-orders worker` processes on any host)
share the work through PostgreSQL: each claims rows with `FOR UPDATE SKIP LOCKED` for a
lease, so two never hold the same row; a killed one's rows come back when the lease ends
(at least once; receivers dedupe by `webhook-id` / `Message-ID`). A notification from the
outbox trigger wakes idle deliverers at commit; without one (a transaction pooler cannot
LISTEN) they look every `delivery_poll` seconds. Stopping finishes what is in flight for
a few seconds, then hands the rest back. Each deliverer also trims what is past retention
(`retention.py`) when it starts and every hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import httpx
import psycopg

from agent_tools.config import Settings, get_settings
from agent_tools.db import Database, connect_kwargs
from agent_tools.delivery import mailer, retention, webhook
from agent_tools.payments import runner

log = logging.getLogger(__name__)

CHANNEL = "agent_orders_outbox"
GRACE = 5.0
"""Seconds in-flight deliveries get to finish when the deliverer stops."""
TRIM_EVERY = 3600.0
"""Seconds between two trims of what is past retention."""


class Deliverer:
    def __init__(self, db: Database, settings: Settings | None = None) -> None:
        self.db = db
        self.settings = settings or get_settings()
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        """Written on the rows it claims (`locked_by`)."""
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._next_trim = 0.0

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Ask `run` to return (after finishing or releasing what is in flight)."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        concurrency = self.settings.delivery_concurrency
        self._client = httpx.AsyncClient(
            timeout=self.settings.webhook_timeout,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        listener = asyncio.create_task(self._listen())
        turn = 0
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                await self._trim_when_due()
                room = concurrency - len(self._inflight)
                started = 0
                # Each kind in its own short transaction, so a claimed job is on its way
                # before the next kind is looked at; the kinds take turns going first, so
                # a backlog of one (a slow endpoint's webhooks) never starves the others.
                kinds = (self._claim_webhooks, self._claim_payments, self._claim_mails)
                turn += 1
                for claim in kinds[turn % 3 :] + kinds[: turn % 3]:
                    if room - started <= 0:
                        break
                    try:
                        jobs = await claim(room - started)
                    except Exception:
                        log.warning("claiming deliveries failed", exc_info=True)
                        jobs = []
                    for job in jobs:
                        task = asyncio.create_task(self._guarded(job))
                        self._inflight.add(task)
                        task.add_done_callback(self._finished)
                    started += len(jobs)
                if room > 0 and started == room:
                    continue  # more may be due right away
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.delivery_poll)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await self._wind_down()

    async def _trim_when_due(self) -> None:
        if time.monotonic() < self._next_trim:
            return
        self._next_trim = time.monotonic() + TRIM_EVERY
        try:
            trimmed = await retention.trim(self.db, self.settings)
        except Exception:
            log.warning("trimming old events failed; next try in an hour", exc_info=True)
        else:
            if trimmed:
                log.info("trimmed %d events past retention", trimmed)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()

    async def _guarded(self, job: Callable[[], Awaitable[None]]) -> None:
        try:
            await job()
        except Exception:
            # The claim runs out and the delivery is tried again by someone.
            log.warning("a delivery failed unexpectedly", exc_info=True)

    async def _claim_webhooks(self, room: int) -> list[Callable[[], Awaitable[None]]]:
        assert self._client is not None
        client, me, s = self._client, self.name, self.settings
        async with self.db.connection() as conn:
            hooks = await webhook.claim(conn, room, me, s)
        return [partial(webhook.deliver, self.db, client, h, me, s) for h in hooks]

    async def _claim_payments(self, room: int) -> list[Callable[[], Awaitable[None]]]:
        me, s = self.name, self.settings
        jobs = await runner.claim(self.db, me, room, s)
        return [partial(runner.perform, self.db, j, me, s) for j in jobs]

    async def _claim_mails(self, room: int) -> list[Callable[[], Awaitable[None]]]:
        me, s = self.name, self.settings
        async with self.db.connection() as conn:
            mails = await mailer.claim(conn, room, me, s)
        return [partial(mailer.deliver, self.db, m, me, s) for m in mails]

    async def _listen(self) -> None:
        """Wake on the outbox trigger's notifications; reconnect after a lost connection."""
        kwargs = connect_kwargs(self.settings)
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.db.url, autocommit=True, **kwargs)
                async with conn:
                    await conn.execute(f"listen {CHANNEL}")
                    self._wake.set()  # look once: something may have come while away
                    async for _ in conn.notifies():
                        self._wake.set()
            except psycopg.Error:
                log.debug("LISTEN connection lost; polling meanwhile", exc_info=True)
            await asyncio.sleep(max(self.settings.delivery_poll, 1.0))

    async def _wind_down(self) -> None:
        if self._inflight:
            _, pending = await asyncio.wait(self._inflight, timeout=GRACE)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
        try:
            async with self.db.connection() as conn:
                for table in ("webhook_deliveries", "mail_messages", "payments"):
                    await conn.execute(
                        f"update agent_orders.{table} set locked_until = null, locked_by = null"
                        " where locked_by = %(me)s and state = 'pending'",
                        {"me": self.name},
                    )
        except Exception:
            log.warning("could not release claims; their lease runs out", exc_info=True)


@contextlib.asynccontextmanager
async def delivering(db: Database, settings: Settings | None = None) -> AsyncIterator[Deliverer]:
    """A deliverer running in the background for the duration of the block."""
    deliverer = Deliverer(db, settings)
    task = asyncio.create_task(deliverer.run())
    try:
        yield deliverer
    finally:
        deliverer.stop()
        await task
