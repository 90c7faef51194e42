"""The dashboard's Webhooks and Mail views in a real Chromium, against a real server that
delivers (a real receiver on 127.0.0.1, no SMTP: mails are kept and shown)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from agent_tools.db import Database
from tests.api_support import ApiProcess, server
from tests.pages_support import CHROMIUM, Demo, require_chromium, seed_demo
from tests.test_pages_browser import CHROMIUM_ARGS, new_page, snap
from tests.webhook_support import Receiver, receiver

pytestmark = pytest.mark.browser


@pytest.fixture
def live(db_url: str, tmp_path: Path) -> Iterator[tuple[ApiProcess, Demo, Receiver]]:
    async def seed() -> Demo:
        db = await Database.open(db_url, migrate=False, min_size=1, max_size=2)
        try:
            return await seed_demo(db)
        finally:
            await db.close()

    with ThreadPoolExecutor(1) as pool:
        demo = pool.submit(asyncio.run, seed()).result()
    env = {
        "DATABASE_URL": db_url,
        "AGENT_ORDERS_WEBHOOK_ALLOW_PRIVATE": "1",
        "AGENT_ORDERS_DELIVERY_POLL": "0.2",
        "SMTP_URL": "",
    }
    with receiver() as hook, server(["serve"], env, tmp_path) as srv:
        yield srv, demo, hook


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_chromium()
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


def test_dashboard_adds_a_webhook_sends_a_test_and_shows_kept_mail(
    browser: Browser, live: tuple[ApiProcess, Demo, Receiver]
) -> None:
    srv, demo, hook = live
    errors: list[str] = []
    page = new_page(browser, srv.base, errors)
    page.goto("/dashboard")
    page.get_by_label("API key or Supabase access token").fill(demo.api_key)
    page.get_by_role("button", name="Sign in").click()

    # Mail: the demo orders' emails, rendered by the server's deliverer and kept (no SMTP).
    page.get_by_role("button", name="Mail", exact=True).click()
    mail = page.locator("#mail")
    ann = demo.orders["Ann"].order_number
    subject = f"Your order {ann} is confirmed"
    ann_row = mail.locator("tbody tr", has=page.get_by_role("button", name=subject))
    for _ in range(150):  # the deliverer renders and keeps them a moment after start
        if ann_row.count() and "Kept" in ann_row.inner_text():
            break
        page.wait_for_timeout(200)
        page.reload()
        page.get_by_role("button", name="Mail", exact=True).click()
    expect(ann_row).to_contain_text("Kept (no mail server)")
    expect(ann_row).to_contain_text("ann@example.com")
    mail.get_by_role("button", name=subject).click()
    dialog = page.locator("#mail-view")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading", level=2)).to_have_text(subject)
    expect(dialog).to_contain_text("ann@example.com")
    frame = page.frame_locator("#mail-frame")
    expect(frame.locator("body")).to_contain_text(ann)
    expect(frame.get_by_role("link", name="Follow your order")).to_have_attribute(
        "href", re.compile(rf"/track/{ann}\?token=")
    )
    snap(page, "dashboard-mail")
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()

    # Webhooks: add an endpoint, see its secret once, send a test, redeliver, disable.
    page.get_by_role("button", name="Webhooks", exact=True).click()
    expect(page.locator("#mail")).to_be_hidden()
    hooks = page.locator("#webhooks")
    hooks.get_by_label("Endpoint URL").fill(hook.url)
    hooks.get_by_label("Events").select_option("order.shipped")
    hooks.get_by_role("button", name="Add endpoint").click()
    expect(page.locator("#webhook-secret-value")).to_have_text(re.compile(r"^whsec_"))
    row = hooks.locator("#webhook-list tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(hook.url)
    expect(row).to_contain_text("order.shipped")
    expect(row).to_contain_text("Enabled")

    row.get_by_role("button", name="Send test").click()
    deliveries = hooks.locator("#delivery-list tbody tr")
    expect(deliveries).to_have_count(1)
    expect(deliveries).to_contain_text("ping")
    for _ in range(300):
        if hook.received:
            break
        page.wait_for_timeout(100)
    assert len(hook.received) == 1
    row.get_by_role("button", name="Deliveries").click()
    expect(deliveries).to_contain_text("Succeeded")
    expect(deliveries).to_contain_text("HTTP 200")
    deliveries.get_by_role("button", name="Redeliver").click()
    for _ in range(300):
        if len(hook.received) == 2:
            break
        page.wait_for_timeout(100)
    assert [r.webhook_id for r in hook.received] == [hook.received[0].webhook_id] * 2
    snap(page, "dashboard-webhooks")

    row.get_by_role("button", name="Disable").click()
    expect(row).to_contain_text("Disabled")
    expect(row.get_by_role("button", name="Enable")).to_be_visible()

    assert errors == []
