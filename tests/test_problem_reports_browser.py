"""The owner's side of a gift order with a reported problem, in a real Chromium: the
recipient on the dashboard's ship-to, the case resolved with a note, and the customer's
tracking page showing the recipient (full view) and the answer."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, expect

from agent_tools.db import Database
from agent_tools.demo import DEMO_OWNER
from agent_tools.models import Actor, Order, ProblemKind, Provenance
from agent_tools.service import orders, problems, tracking
from tests.api_support import ApiProcess, server
from tests.pages_support import Demo, seed_demo
from tests.test_pages_browser import browser, new_page, snap

pytestmark = pytest.mark.browser
__all__ = ["browser"]  # the fixture, shared with the other browser tests


async def _seed(db_url: str) -> tuple[Demo, Order, str]:
    db = await Database.open(db_url, migrate=False, min_size=1, max_size=2)
    try:
        demo = await seed_demo(db)
        agent_id = demo.orders["Ann"].agent_id
        async with db.connection() as conn:
            gift = await orders.create_order(
                conn,
                {
                    "agent_id": agent_id,
                    "customer": {"name": "Ann Lee", "email": "ann@example.com"},
                    "shipping_address": {
                        "line1": "5 Calle Mayor",
                        "city": "Madrid",
                        "postal_code": "28013",
                        "country": "ES",
                        "recipient_name": "Maria Lopez",
                        "recipient_phone": "+34 600 111 222",
                    },
                    "items": [{"sku": "MUG-BLUE", "quantity": 1}],
                },
            )
            gift = await orders.update_status(
                conn, gift.id, {"status": "shipped"}, by=Provenance(actor=Actor.owner)
            )
            await problems.report(
                conn, gift, ProblemKind.not_received, "Maria got nothing", by=Provenance()
            )
            link = tracking.tracking_url(await tracking.signing_key(conn), gift)
        return demo, gift, link
    finally:
        await db.close()


@pytest.fixture
def live(db_url: str, tmp_path: Path) -> Iterator[tuple[ApiProcess, Demo, Order, str]]:
    with ThreadPoolExecutor(1) as pool:
        demo, gift, link = pool.submit(asyncio.run, _seed(db_url)).result()
    assert gift.owner_id == DEMO_OWNER
    with server(["serve"], {"DATABASE_URL": db_url}, tmp_path) as srv:
        yield srv, demo, gift, link


def test_owner_sees_the_recipient_and_resolves_the_problem(
    browser: Browser, live: tuple[ApiProcess, Demo, Order, str]
) -> None:
    srv, demo, gift, link = live
    errors: list[str] = []
    page = new_page(browser, srv.base, errors)
    page.goto("/dashboard")
    page.get_by_label("API key or Supabase access token").fill(demo.api_key)
    page.get_by_role("button", name="Sign in").click()
    queue = page.locator("#problems")
    expect(queue.get_by_role("heading")).to_have_text("Open problems (1)")
    expect(queue.locator("li")).to_contain_text("Not received")
    queue.get_by_role("button", name=gift.order_number).click()
    dialog = page.get_by_role("dialog")
    expect(dialog.locator("#detail-customer")).to_contain_text("Ann Lee")
    expect(dialog.locator("#detail-ship-to")).to_contain_text("For Maria Lopez")
    expect(dialog.locator("#detail-ship-to")).to_contain_text("+34 600 111 222")
    problem = dialog.locator("#detail-problems li")
    expect(problem).to_have_count(1)
    expect(problem).to_contain_text("Not received · open")
    expect(problem).to_contain_text("Maria got nothing")
    snap(page, "dashboard-problem")

    problem.get_by_label("What was done (shown to the customer)").fill("A new parcel left today.")
    problem.get_by_role("button", name="Resolve").click()
    expect(dialog.get_by_role("status")).to_contain_text("The problem is resolved")
    expect(problem).to_contain_text("Resolved: A new parcel left today.")
    expect(problem.get_by_role("button", name="Resolve")).to_have_count(0)
    expect(dialog.locator("#detail-history li").first).to_contain_text("Problem resolved")
    expect(queue).to_be_hidden()  # nothing left open

    parts = urlsplit(link)
    page.goto(f"{parts.path}?{parts.query}")
    expect(page.locator("#recipient-name")).to_have_text("Maria Lopez")
    expect(page.locator("#customer-name")).to_have_text("Ann Lee")
    expect(page.locator("#timeline li").first).to_contain_text("Problem resolved")
    expect(page.locator("#timeline li").first).to_contain_text("A new parcel left today.")
    # Someone else, with the number only (this browser keeps the link's cookie a while).
    stranger = new_page(browser, srv.base, errors)
    stranger.goto(f"/track/{gift.order_number}")
    expect(stranger.locator("#order-status")).to_have_text("Shipped")
    expect(stranger.locator("body")).not_to_contain_text("Maria")
    expect(stranger.locator("body")).not_to_contain_text(re.compile("600 111"))
    assert errors == []
