"""The `agent-orders` command: migrate, demo, walkthrough, run, serve, worker, chat, mcp, eval."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
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


async def _prepare_demo() -> tuple[str, str]:
    """Load the demo store and its owner's API key (derived from the instance's secret, made
    once and never brought back once revoked). Returns what to print for the key (the key
    itself only when it was just created) and the tracking link of a shipped demo order."""
    from agent_tools.demo import DEMO_OWNER, load_demo
    from agent_tools.service import api_keys, orders, tracking

    db = await Database.open()
    try:
        async with db.connection() as conn:
            agent, _ = await load_demo(conn)
            secret = await tracking.signing_key(conn)
            token = api_keys.derive_token(secret, "demo")
            stored, created = await api_keys.ensure_key(conn, DEMO_OWNER, "demo", token)
            if created:
                key = token
            elif stored.revoked_at is not None:
                key = f"{stored.prefix}_... (revoked; not recreated)"
            else:
                key = f"{stored.prefix}_... (printed in full when it was created)"
            page = await orders.list_orders(
                conn, owner_id=DEMO_OWNER, filters={"agent_id": agent.id, "statuses": ["shipped"]}
            )
            link = tracking.tracking_url(secret, page.orders[0]) if page.orders else ""
    finally:
        await db.close()
    return key, link


async def _chat(agent_id: str | None, email: str | None) -> int:
    """A terminal chat with a store's agent through the reference loop."""
    from uuid import UUID, uuid4

    from agent_tools.agent import OrderAgent, make_client
    from agent_tools.demo import load_demo
    from agent_tools.tools import ToolContext, Toolkit

    try:
        client = make_client()
    except RuntimeError as exc:
        print(f"agent-orders: {exc}", file=sys.stderr)
        return 1
    try:
        agent = UUID(agent_id) if agent_id else None
    except ValueError:
        print(f"agent-orders: {agent_id!r} is not an agent id", file=sys.stderr)
        return 1
    async with await Toolkit.connect() as toolkit:
        if agent is None:
            async with toolkit.db.connection() as conn:
                agent = (await load_demo(conn))[0].id
        ctx = ToolContext(
            agent_id=agent,
            conversation_id=f"cli-{uuid4().hex[:12]}",
            customer_email=email,
            customer_verified=email is not None,
        )
        bot = await OrderAgent.start(toolkit, ctx, client=client)
        print(f"chatting with {(await toolkit.get_agent(ctx.agent_id)).name}; Ctrl-D to leave")
        while True:
            try:
                text = await asyncio.to_thread(input, "you> ")
            except EOFError:
                print()
                return 0
            if text.strip():
                print(f"agent> {await bot.reply(text)}")


async def _mcp(
    agent_id: str, conversation: str | None, email: str | None, phone: str | None, verified: bool
) -> int:
    """The tools as an MCP server on stdin/stdout, for one local customer (a desktop
    assistant). Stdout carries the protocol: everything else goes to stderr."""
    from uuid import UUID, uuid4

    from agent_tools.integrations.mcp import build_server, fixed_identity
    from agent_tools.tools import ToolContext, Toolkit

    try:
        agent = UUID(agent_id)
    except ValueError:
        print(f"agent-orders: {agent_id!r} is not an agent id", file=sys.stderr)
        return 1
    async with await Toolkit.connect() as toolkit:
        await toolkit.get_agent(agent)  # an unknown agent stops here, not at the first call
        ctx = ToolContext(
            agent_id=agent,
            conversation_id=conversation or f"mcp-{uuid4().hex[:12]}",
            customer_email=email,
            customer_phone=phone,
            customer_verified=verified,
        )
        await build_server(toolkit, fixed_identity(ctx)).run_stdio_async()
    return 0


async def _worker() -> None:
    """Deliver webhooks and customer emails until SIGTERM or Ctrl-C, then hand back what is
    in flight."""
    from agent_tools.delivery.worker import Deliverer

    db = await Database.open()
    try:
        deliverer = Deliverer(db)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, deliverer.stop)
        print(f"agent-orders worker {deliverer.name}: delivering", flush=True)
        await deliverer.run()
    finally:
        await db.close()


def default_workers() -> int:
    """One server process per CPU this process may run on (its affinity, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _serve(host: str, port: int, workers: int | None, forwarded_allow_ips: str | None) -> None:
    """Serve the HTTP API (imported here: `agent_tools` itself never imports FastAPI).

    Workers share nothing in memory: the pool, limits and deliveries meet in PostgreSQL
    (or Redis, with `REDIS_URL`)."""
    import uvicorn

    from api.settings import get_api_settings

    settings = get_api_settings()
    proxies = settings.trusted_proxies if forwarded_allow_ips is None else forwarded_allow_ips

    # Workers are separate processes: they find the database (the embedded server this
    # process started, if any) through the environment.
    os.environ["DATABASE_URL"] = resolve_url()
    # How many share this host's limits (more than one without Redis: counted in PostgreSQL).
    workers = workers or default_workers()
    os.environ["AGENT_ORDERS_WORKERS"] = str(workers)
    # Workers end with this process, however it ends (`api.app._end_with_supervisor`).
    os.environ["AGENT_ORDERS_SUPERVISOR_PID"] = str(os.getpid())
    get_settings.cache_clear()
    get_api_settings.cache_clear()
    # After its graceful shutdown uvicorn raises the SIGTERM it caught again. Its default
    # action would end the process on the spot; as an exception it lets `main` stop the
    # embedded server on the way out.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # h11 reads a request head only up to this size (httptools has no limit): a megabyte
        # of headers is refused with a 400 before the app is asked anything.
        http="h11",
        h11_max_incomplete_event_size=settings.max_header_bytes,
        # Only the proxies named here may say who the client is (uvicorn would otherwise
        # trust X-Forwarded-For from 127.0.0.1, or from $FORWARDED_ALLOW_IPS).
        proxy_headers=bool(proxies.strip()),
        forwarded_allow_ips=proxies.strip() or "",
        # A worker busy importing on a loaded machine answers the supervisor's health check
        # late; the 5 s default then kills and restarts it over and over.
        timeout_worker_healthcheck=30,
    )


def _run(host: str, port: int, workers: int | None, forwarded_allow_ips: str | None) -> None:
    base = f"http://{host}:{port}"
    if "public_url" not in get_settings().model_fields_set:
        # Tracking links point at this server unless AGENT_ORDERS_PUBLIC_URL says otherwise.
        os.environ["AGENT_ORDERS_PUBLIC_URL"] = base
        get_settings.cache_clear()
    key, link = asyncio.run(_prepare_demo())
    fresh = key.startswith("ao_") and " " not in key
    try_it = (
        f"""
Try it:
  export KEY={key}
  curl -H "Authorization: Bearer $KEY" {base}/api/orders/
"""
        if fresh
        else ""
    )
    print(
        f"""
agent-orders: the demo store is served at {base}
  API docs       {base}/docs
  dashboard      {base}/dashboard   (sign in with the demo API key)
  tracking page  {base}/track
  tracking link  {link}
  health         {base}/health   (database: {base}/ready)
  demo API key   {key}
{try_it}""",
        flush=True,
    )
    _serve(host, port, workers, forwarded_allow_ips)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agent-orders", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply pending migrations")
    sub.add_parser("demo", help="load the demo store (idempotent)")
    sub.add_parser("walkthrough", help="place a demo order through the service and print it")
    for name, text in (
        ("run", "the main job: migrate, load the demo store, serve the API on 127.0.0.1:8000"),
        ("serve", "serve the HTTP API"),
    ):
        server = sub.add_parser(name, help=text)
        server.add_argument("--host", default="127.0.0.1")
        server.add_argument("--port", type=int, default=8000)
        server.add_argument(
            "--workers",
            type=int,
            default=None,
            help="server processes (default: one per CPU this process may run on)",
        )
        server.add_argument(
            "--forwarded-allow-ips",
            metavar="IPS",
            default=None,
            help="proxies trusted to name the client in X-Forwarded-For (comma-separated"
            " addresses or networks; default: none, or $AGENT_ORDERS_FORWARDED_ALLOW_IPS)",
        )
    sub.add_parser("worker", help="deliver webhooks and customer emails (no HTTP server)")
    chat = sub.add_parser("chat", help="chat in the terminal with a store's agent (OpenAI API)")
    chat.add_argument("--agent", help="agent id (default: the demo store)")
    chat.add_argument("--email", help="bind this verified customer email to the chat")
    mcp = sub.add_parser("mcp", help="serve the tools over MCP on stdio for one customer")
    mcp.add_argument("--agent", required=True, help="the store's agent id")
    mcp.add_argument("--conversation", help="conversation id (default: a new one per run)")
    mcp.add_argument("--email", help="the customer's email")
    mcp.add_argument("--phone", help="the customer's phone")
    mcp.add_argument(
        "--verified", action="store_true", help="the email/phone were checked (signed in)"
    )
    from agent_tools.eval.command import add_arguments
    from agent_tools.eval.command import run as run_eval

    evaluate = sub.add_parser(
        "eval", help="run the customer scenarios against a model and report pass^k"
    )
    add_arguments(evaluate)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    get_settings()
    try:
        if args.command == "migrate":
            asyncio.run(_migrate())
        elif args.command == "demo":
            asyncio.run(_demo())
        elif args.command == "walkthrough":
            asyncio.run(_walkthrough())
        elif args.command == "run":
            _run(args.host, args.port, args.workers, args.forwarded_allow_ips)
        elif args.command == "serve":
            _serve(args.host, args.port, args.workers, args.forwarded_allow_ips)
        elif args.command == "worker":
            asyncio.run(_worker())
        elif args.command == "chat":
            return asyncio.run(_chat(args.agent, args.email))
        elif args.command == "mcp":
            return asyncio.run(
                _mcp(args.agent, args.conversation, args.email, args.phone, args.verified)
            )
        elif args.command == "eval":
            return asyncio.run(run_eval(args))
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
