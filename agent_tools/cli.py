"""The `agent-orders` command: migrate, demo, walkthrough, run."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

import psycopg

from agent_tools.config import get_settings
from agent_tools.db import Database, resolve_url, stop_embedded
from agent_tools.errors import MigrationError, OrderError


async def _migrate() -> None:
    from agent_tools.migrate import migrate

    applied = await migrate(resolve_url())
    print("applied: " + ", ".join(applied) if applied else "database is up to date")


async def _demo() -> None:
    from agent_tools.demo import load_demo

    db = await Database.open()
    try:
        async with db.connection() as conn:
            agent, created = await load_demo(conn)
        print(f"demo store {'created' if created else 'already present'}: agent {agent.id}")
    finally:
        await db.close()


async def _walkthrough() -> None:
    """Place an order through the service and show it: the main job until the API exists."""
    from agent_tools.demo import load_demo
    from agent_tools.models import Actor, Provenance
    from agent_tools.service import orders, tracking

    db = await Database.open()
    try:
        async with db.connection() as conn:
            agent, _ = await load_demo(conn)
            order = await orders.create_order(
                conn,
                {
                    "agent_id": agent.id,
                    "customer": {"name": "Walk Through", "email": "walk@example.com"},
                    "shipping_address": {
                        "line1": "1 Demo Way",
                        "city": "Springfield",
                        "country": "US",
                    },
                    "items": [
                        {"sku": "MUG-BLUE", "quantity": 2},
                        {"sku": "STICK-PK", "quantity": 5},
                    ],
                },
                by=Provenance(actor=Actor.system),
            )
            key = await tracking.signing_key(conn)
        print(f"placed {order.order_number} ({order.status.value})")
        for line in order.line_items:
            print(f"  {line.quantity} x {line.name:<28} {line.line_total:>8} {order.currency}")
        print(f"  {'shipping':<32} {order.shipping_fee:>8} {order.currency}")
        print(f"  {'total':<32} {order.total:>8} {order.currency}")
        print(f"tracking link: {tracking.tracking_url(key, order)}")
    finally:
        await db.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agent-orders", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply pending migrations")
    sub.add_parser("demo", help="load the demo store (idempotent)")
    sub.add_parser("walkthrough", help="place a demo order through the service and print it")
    sub.add_parser("run", help="the main job: migrate, load the demo store, run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    get_settings()
    try:
        if args.command == "migrate":
            asyncio.run(_migrate())
        elif args.command == "demo":
            asyncio.run(_demo())
        elif args.command in ("walkthrough", "run"):
            asyncio.run(_walkthrough())
    except (MigrationError, OrderError) as exc:
        print(f"agent-orders: {exc}", file=sys.stderr)
        return 1
    except psycopg.OperationalError as exc:
        print(f"agent-orders: cannot reach the database: {exc}".strip(), file=sys.stderr)
        return 1
    finally:
        stop_embedded()
    return 0


if __name__ == "__main__":
    sys.exit(main())
