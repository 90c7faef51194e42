"""After the order, in a real Chromium: "Mark selected as …" on the order list, editing an
order with the diff shown before saving, and the Returns view taking a return to refunded;
the customer's tracking page then tells the story."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, expect

from agent_tools.db import Database
from agent_tools.models import Actor, Provenance
from agent_tools.service import payments, returns
from tests.api_support import ApiProcess, server
from tests.pages_support import Demo, seed_demo
from tests.test_pages_browser import browser, new_page, snap

pytestmark = pytest.mark.browser
__all__ = ["browser"]  # the fixture, shared with the other browser tests


async def _seed(db_url: str) -> Demo:
    db = await Database.open(db_url, migrate=False, min_size=1, max_size=2)
    try:
        demo = await seed_demo(db)
        async with db.connection() as conn:
            # Eva paid on delivery; her refund goes back through the payments layer.
            eva = demo.orders["Eva"]
            await payments.record_payment(
                conn, eva.id, {"method": "cash", "amount": eva.total}, by=Provenance()
            )
            await returns.request(
                conn,
                demo.orders["Eva"].id,
                None,
                reason="Leaks a little",
                by=Provenance(actor=Actor.agent, conversation_id="chat-eva"),
            )
        return demo
    finally:
        await db.close()


@pytest.fixture
def live(db_url: str, tmp_path: Path) -> Iterator[tuple[ApiProcess, Demo]]:
    with ThreadPoolExecutor(1) as pool:
        demo = pool.submit(asyncio.run, _seed(db_url)).result()
    with server(["serve"], {"DATABASE_URL": db_url}, tmp_path) as srv:
        yield srv, demo


def test_bulk_status_edit_with_diff_and_returns_view(
    browser: Browser, live: tuple[ApiProcess, Demo]
) -> None:
    srv, demo = live
    errors: list[str] = []
    ann, bob, eva = demo.orders["Ann"], demo.orders["Bob"], demo.orders["Eva"]
    page = new_page(browser, srv.base, errors)
    page.goto("/dashboard")
    page.get_by_label("API key or Supabase access token").fill(demo.api_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#orders tbody tr")).to_have_count(6)

    # Bulk: a pending order moves, a delivered one cannot; each says so.
    page.get_by_label(f"Select {ann.order_number}").check()
    page.get_by_label(f"Select {eva.order_number}").check()
    expect(page.locator("#bulk-count")).to_have_text("2 selected")
    page.get_by_label("Mark selected as …").select_option("confirmed")
    page.get_by_role("button", name="Change status").click()
    result = page.locator("#bulk-result")
    expect(result).to_contain_text("1 marked as confirmed; 1 not changed:")
    expect(result.locator("li")).to_contain_text(eva.order_number)
    ann_row = page.locator(f"#orders tr[data-number='{ann.order_number}']")
    expect(ann_row.locator(".badge")).to_have_text("Confirmed")
    expect(page.locator("#bulk-count")).to_have_text("1 selected")  # the refused one stays
    snap(page, "dashboard-bulk")

    # Edit Bob's confirmed order: one more tee, a red mug, another city; review, then save.
    page.get_by_role("button", name=bob.order_number).click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Edit order").click()
    dialog.get_by_label("Quantity of Organic cotton tee, M").fill("2")
    dialog.get_by_label("Add an item").select_option("MUG-RED")
    dialog.get_by_role("button", name="Add", exact=True).click()
    dialog.get_by_label("City").fill("Dallas")
    dialog.get_by_role("button", name="Review changes").click()
    diff = dialog.locator("#edit-diff")
    expect(diff).to_be_visible()
    expect(diff).to_contain_text("Items after")
    expect(diff).to_contain_text("2 \u00d7 Organic cotton tee, M ($19.99)")
    expect(diff).to_contain_text("1 \u00d7 Ceramic mug, red ($12.50)")
    expect(diff).to_contain_text("Ship to after")
    expect(diff).to_contain_text("Dallas")
    expect(diff).to_contain_text("+$32.49 (the customer owes more)")
    snap(page, "dashboard-edit-diff")
    dialog.get_by_role("button", name="Save changes").click()
    expect(dialog.get_by_role("status")).to_contain_text("is saved")
    expect(dialog.locator("#detail-lines")).to_contain_text("Ceramic mug, red")
    expect(dialog.locator("#detail-ship-to")).to_contain_text("Dallas")
    expect(dialog.locator("#detail-history li").first).to_contain_text("Edited")
    dialog.get_by_role("button", name="Close").click()

    # Returns: Eva's request, approved, received and refunded.
    page.get_by_role("button", name="Returns").click()
    row = page.locator(f"#return-list tr:has-text('{eva.order_number}')")
    expect(row).to_contain_text("Requested")
    expect(row).to_contain_text("Leaks a little")
    snap(page, "dashboard-returns")
    row.get_by_role("button", name="Approve").click()
    expect(page.locator("#returns-message")).to_contain_text("is now approved")
    row.get_by_role("button", name="Mark received").click()
    expect(page.locator("#returns-message")).to_contain_text("is now received")
    row.get_by_role("button", name="Refund").click()
    expect(page.locator("#returns-message")).to_contain_text("is now refunded ($27.50)")
    expect(page.locator("#returns-empty")).to_be_visible()  # nothing open any more
    page.get_by_label("Show").select_option("refunded")
    expect(page.locator("#return-list tbody tr")).to_have_count(1)

    link = urlsplit(demo.links["Eva"])
    page.goto(f"{link.path}?{link.query}")
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("Return requested")
    expect(timeline).to_contain_text("Return refunded")
    assert errors == []
