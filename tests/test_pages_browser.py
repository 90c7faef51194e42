"""The tracking page and the dashboard in a real Chromium, against a real uvicorn server.

Needs Debian's `chromium` at /usr/bin/chromium (`apt-get install chromium chromium-driver`);
without it these tests skip, except in CI (`CI` set), where they fail. Each page is saved
to `tests/artifacts/`. `UPDATE_SCREENSHOTS=1` also refreshes the README's screenshots in
`api/static/screenshots/`.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from agent_tools.db import Database
from agent_tools.tools import ToolContext, Toolkit
from tests.api_support import ApiProcess, server
from tests.pages_support import ARTIFACTS, CHROMIUM, Demo, require_chromium, seed_demo
from tests.tools_support import place_args

pytestmark = pytest.mark.browser

README_SHOTS = Path(__file__).parent.parent / "api" / "static" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
expect.set_options(timeout=10_000)  # a busy CI machine is slower than a laptop


@pytest.fixture
def live(db_url: str, tmp_path: Path) -> Iterator[tuple[ApiProcess, Demo]]:
    """A real server on this test's fresh database, with the demo store loaded."""

    async def seed() -> Demo:
        db = await Database.open(db_url, migrate=False, min_size=1, max_size=2)
        try:
            return await seed_demo(db)
        finally:
            await db.close()

    # Sync Playwright keeps an event loop busy on this thread: seed on another one.
    with ThreadPoolExecutor(1) as pool:
        demo = pool.submit(asyncio.run, seed()).result()
    with server(["serve"], {"DATABASE_URL": db_url}, tmp_path) as srv:
        yield srv, demo


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_chromium()
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


def new_page(browser: Browser, base: str, errors: list[str], **options: Any) -> Page:
    """A page in a fresh context (no shared storage); uncaught script errors go to `errors`."""
    context = browser.new_context(
        base_url=base,
        locale=options.pop("locale", "en-US"),
        timezone_id="America/New_York",
        viewport=options.pop("viewport", DESKTOP),
        **options,
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page


def snap(page: Page, name: str, readme: str | None = None) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)
    if readme and os.environ.get("UPDATE_SCREENSHOTS"):
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=README_SHOTS / readme)


def test_tracking_page_shows_progress_and_hides_details_until_the_email_matches(
    browser: Browser, live: tuple[ApiProcess, Demo]
) -> None:
    srv, demo = live
    errors: list[str] = []
    dev = demo.orders["Dev"]
    page = new_page(browser, srv.base, errors)

    page.goto("/track")
    page.get_by_label("Order number").fill("ORD-1999-000000")
    page.get_by_role("button", name="Track order").click()
    expect(page.get_by_role("alert")).to_contain_text("We couldn't find that order")
    snap(page, "track-not-found")

    page.get_by_label("Order number").fill(dev.order_number.lower())
    page.get_by_label("Email").fill("")
    page.get_by_role("button", name="Track order").click()
    expect(page).to_have_url(re.compile(f"/track/{dev.order_number}$"))
    expect(page.locator("#order-status")).to_have_text("Shipped")
    expect(page.locator(".progress [aria-current=step]")).to_contain_text("Shipped")
    expect(page.locator(".progress li.done")).to_have_count(5)
    # The number alone: status, progress and dates; no items, destination or carrier.
    expect(page.locator("#items")).to_have_count(0)
    expect(page.locator("#destination")).to_have_count(0)
    expect(page.get_by_role("link", name=re.compile("Track on UPS"))).to_have_count(0)
    expect(page.locator("body")).not_to_contain_text("Dev Patel")
    expect(page.locator("body")).not_to_contain_text("Main Street")
    # Dates are in the visitor's locale, not the ISO fallback.
    expect(page.locator("#timeline time").first).not_to_contain_text("UTC")
    snap(page, "track-redacted")

    page.get_by_label(re.compile("Enter the email you ordered with")).fill("eve@example.com")
    page.get_by_role("button", name="Show my details").click()
    expect(page.get_by_role("alert")).to_contain_text("We couldn't find that order")
    page.go_back()

    page.get_by_label(re.compile("Enter the email you ordered with")).fill("Dev@Example.com")
    page.keyboard.press("Enter")
    expect(page.locator("#customer-name")).to_have_text("Dev Patel")
    expect(page.locator("#shipping-address")).to_contain_text("13 Main Street")
    expect(page.locator("#order-total")).to_have_text("$41.85")
    carrier = page.get_by_role("link", name=re.compile("Track on UPS"))
    expect(carrier).to_have_attribute(
        "href", re.compile(r"^https://www\.ups\.com/track\?tracknum=")
    )
    expect(page.locator("#destination")).to_have_text("Leeds, United Kingdom")  # locale names
    expect(page.locator("#items")).to_contain_text("A5 dotted notebook")
    assert "Dev@" not in page.url and "email" not in page.url
    snap(page, "track-full")

    # The link the tools hand out opens the full view; amounts and dates follow the locale.
    link = urlsplit(demo.links["Dev"])
    german = new_page(browser, srv.base, errors, locale="de-DE")
    german.goto(f"{link.path}?{link.query}")
    expect(german).to_have_url(re.compile(f"/track/{dev.order_number}$"))  # token not kept
    expect(german.locator("#order-total")).to_have_text(re.compile(r"^41,85\s\$$"))
    assert dev.estimated_delivery is not None
    expect(german.locator("#eta")).to_have_text(dev.estimated_delivery.strftime("%d.%m.%Y"))

    phone = new_page(browser, srv.base, errors, viewport=PHONE, device_scale_factor=2)
    phone.goto(f"{link.path}?{link.query}")
    expect(phone.locator("#customer-name")).to_have_text("Dev Patel")
    snap(phone, "track-phone", readme="tracking.png")
    assert errors == []


def test_dashboard_signs_in_filters_and_ships_an_order(
    browser: Browser, live: tuple[ApiProcess, Demo]
) -> None:
    srv, demo = live
    errors: list[str] = []
    chloe = demo.orders["Chloé"]
    page = new_page(browser, srv.base, errors)

    page.goto("/dashboard")
    page.get_by_label("API key or Supabase access token").fill(demo.api_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#stat-total")).to_have_text("6")
    expect(page.locator("#stat-pending")).to_have_text("1")
    expect(page.locator("#stat-revenue")).to_have_text(re.compile(r"^\$\d+\.\d\d$"))
    expect(page.locator("#chart rect")).to_have_count(30)
    expect(page.locator("#orders tbody tr")).to_have_count(6)
    # The token lives in this tab's sessionStorage; no cookie is ever set.
    assert page.evaluate("sessionStorage.getItem('agent-orders.token')") == demo.api_key
    assert page.context.cookies() == []
    snap(page, "dashboard", readme="dashboard.png")

    page.get_by_label("Status", exact=True).select_option("processing")
    expect(page.locator("#orders tbody tr")).to_have_count(1)
    page.get_by_role("button", name=chloe.order_number).click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", level=2)).to_have_text(f"Order {chloe.order_number}")
    expect(dialog).to_contain_text("Zip hoodie, L")
    expect(dialog).to_contain_text("Lyon")
    expect(dialog.locator("#detail-history li")).to_have_count(3)
    snap(page, "dashboard-order")

    dialog.get_by_role("button", name="Mark as shipped").click()
    dialog.get_by_label("Carrier").fill("DHL")
    dialog.get_by_label("Tracking number").fill("JD0146000062")
    dialog.get_by_label("Estimated delivery").fill("2030-01-15")
    dialog.locator("#ship-form").get_by_role("button", name="Mark as shipped").click()
    expect(dialog.get_by_role("status")).to_contain_text("is now shipped")
    expect(dialog.locator("#detail-status")).to_have_text("Shipped")
    # The carrier and number became the order's first shipment, holding every line.
    expect(dialog.locator("#detail-shipments > li")).to_have_count(1)
    expect(dialog.locator("#detail-shipments")).to_contain_text("DHL JD0146000062")
    expect(dialog.locator("#detail-shipments")).to_contain_text("Zip hoodie, L")
    expect(dialog.get_by_role("button", name="Mark as delivered")).to_be_visible()
    expect(dialog.get_by_role("button", name="Cancel order")).to_have_count(0)
    # The list behind the dialog followed: no processing order is left.
    expect(page.locator("#orders tbody tr")).to_have_count(0)
    snap(page, "dashboard-shipped")

    link = dialog.get_by_role("link", name=re.compile("Customer's tracking page"))
    href = link.get_attribute("href") or ""
    parts = urlsplit(href)
    assert parts.path == f"/track/{chloe.order_number}" and parts.query.startswith("token=")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    page.goto(f"{parts.path}?{parts.query}")
    expect(page.locator("#order-status")).to_have_text("Shipped")
    expect(page.locator("#carrier")).to_have_text("DHL")
    expect(page.locator("#tracking-number")).to_have_text("JD0146000062")
    expect(page.locator("#carrier-link")).to_have_attribute(
        "href", re.compile(r"^https://www\.dhl\.com/.*tracking-id=JD0146000062$")
    )
    expect(page.locator("#eta")).to_have_text("Jan 15, 2030")
    expect(page.locator("#customer-name")).to_have_text("Chloé Martin")
    snap(page, "track-after-shipping")
    assert errors == []


def test_dashboard_explains_a_version_conflict_and_reloads(
    browser: Browser, live: tuple[ApiProcess, Demo]
) -> None:
    srv, demo = live
    errors: list[str] = []
    bob = demo.orders["Bob"]
    page = new_page(browser, srv.base, errors)
    page.goto("/dashboard")
    page.get_by_label("API key or Supabase access token").fill(demo.api_key)
    page.keyboard.press("Enter")
    page.get_by_label("Search").fill("bob@example.com")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#orders tbody tr")).to_have_count(1)
    page.get_by_role("button", name=bob.order_number).click()
    dialog = page.get_by_role("dialog")
    expect(dialog.locator("#detail-status")).to_have_text("Confirmed")

    # Someone else moves the order while the owner looks at it.
    moved = httpx.patch(
        f"{srv.base}/api/orders/{bob.id}/status",
        json={"status": "processing"},
        headers={"Authorization": f"Bearer {demo.api_key}"},
    )
    assert moved.status_code == 200, moved.text

    dialog.get_by_role("button", name="Mark as packaged").click()
    expect(dialog.get_by_role("alert")).to_contain_text("Reload it and try again")
    snap(page, "dashboard-conflict")
    dialog.get_by_role("button", name="Reload order").click()
    expect(dialog.locator("#detail-status")).to_have_text("Processing")
    expect(dialog.get_by_role("alert")).to_be_hidden()
    assert errors == []


def test_dashboard_refuses_a_bad_key_and_signs_out(
    browser: Browser, live: tuple[ApiProcess, Demo]
) -> None:
    srv, demo = live
    errors: list[str] = []
    page = new_page(browser, srv.base, errors)
    page.goto("/dashboard")
    page.get_by_label("API key or Supabase access token").fill("ao_000000000000_" + "x" * 43)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("was not accepted")
    assert page.evaluate("sessionStorage.length") == 0

    page.get_by_label("API key or Supabase access token").fill(demo.api_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Orders")).to_be_visible()
    page.reload()  # the session survives a reload of the tab...
    expect(page.get_by_role("heading", name="Orders")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key or Supabase access token")).to_be_focused()
    assert page.evaluate("sessionStorage.length") == 0  # ...and not a sign-out
    assert errors == []


@pytest.mark.parametrize(
    ("path", "rendered"), [("/docs", ".swagger-ui .info .title"), ("/redoc", "h1")]
)
def test_api_docs_render_from_this_server_under_the_pages_policy(
    browser: Browser, live: tuple[ApiProcess, Demo], path: str, rendered: str
) -> None:
    """Swagger UI and ReDoc load nothing from another origin and break no CSP rule."""
    srv, _ = live
    errors: list[str] = []
    page = new_page(browser, srv.base, errors)
    origins: set[str] = set()
    violations: list[str] = []
    page.on("requestfinished", lambda request: origins.add(urlsplit(request.url).netloc))
    # ReDoc's footer asks for its vendor's logo from a CDN: refused by img-src, and harmless.
    page.on(
        "console",
        lambda msg: (
            violations.append(msg.text)
            if "Content Security Policy" in msg.text and "Loading the image" not in msg.text
            else None
        ),
    )
    response = page.goto(path)
    assert response is not None
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator(rendered).first).to_contain_text("agent-orders", timeout=30_000)
    assert origins == {urlsplit(srv.base).netloc}, origins
    assert violations == [] and errors == []


def _draft_link(db_url: str, demo: Demo) -> str:
    """A drafted order in the demo store, as `place_order` hands it out: its page's path."""

    async def run() -> str:
        db = await Database.open(db_url, migrate=False, min_size=1, max_size=2)
        try:
            toolkit = Toolkit(db)
            ctx = ToolContext(agent_id=demo.orders["Ann"].agent_id, conversation_id="browser")
            found = await toolkit.call(ctx, "search_products", {"query": None, "limit": 1})
            sku = found["products"][0]["sku"]
            args = place_args([{"sku": sku, "quantity": 2}])
            args["customer"] = {"name": "Gus Hale", "email": "gus@example.com", "phone": None}
            draft = await toolkit.call(ctx, "place_order", args)
            assert draft["ok"], draft
            return str(urlsplit(draft["confirm_url"]).path)
        finally:
            await db.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


def test_confirmation_page_places_the_order_once(
    browser: Browser, live: tuple[ApiProcess, Demo], db_url: str
) -> None:
    srv, demo = live
    errors: list[str] = []
    path = _draft_link(db_url, demo)
    page = new_page(browser, srv.base, errors)
    page.goto(path)
    expect(page.get_by_role("heading", name="Confirm your order")).to_be_visible()
    expect(page.locator("#customer-name")).to_have_text("Gus Hale")
    expect(page.locator("#lines tbody tr")).to_have_count(1)
    snap(page, "confirm-draft")

    # The same link open in a second tab of the same browser: both buttons keep working.
    second = page.context.new_page()
    second.goto(path)

    page.get_by_role("button", name="Place order").click()
    expect(page.get_by_role("heading", name="Order placed")).to_be_visible()
    number = page.locator("#order-number").inner_text()
    assert re.fullmatch(r"ORD-\d{4}-\d{6,}", number)
    snap(page, "confirm-placed")

    second.get_by_role("button", name="Place order").click()
    expect(second.get_by_role("heading", name="Order placed")).to_be_visible()
    expect(second.locator("#order-number")).to_have_text(number)
    page.reload()  # a reload after the redirect is a GET: nothing is submitted again
    expect(page.locator("#order-number")).to_have_text(number)

    headers = {"Authorization": f"Bearer {demo.api_key}"}
    found = httpx.get(f"{srv.base}/api/orders/", params={"search": "Gus Hale"}, headers=headers)
    assert [o["order_number"] for o in found.json()["orders"]] == [number]

    link = page.get_by_role("link", name="Track your order").get_attribute("href") or ""
    assert f"/track/{number}?token=" in link
    page.goto(urlsplit(link).path + "?" + urlsplit(link).query)  # this server, not PUBLIC_URL
    expect(page.locator("#customer-name")).to_have_text("Gus Hale")
    # A forged cross-site POST (no cookie, another origin) places nothing.
    forged = httpx.post(
        f"{srv.base}{path}", data={"csrf": "x" * 32}, headers={"Origin": "https://evil.example"}
    )
    assert forged.status_code == 403
    assert errors == []


def test_dashboard_records_a_payment_and_a_refund(
    browser: Browser, live: tuple[ApiProcess, Demo]
) -> None:
    srv, demo = live
    errors: list[str] = []
    bob = demo.orders["Bob"]
    page = new_page(browser, srv.base, errors)
    page.goto("/dashboard")
    page.get_by_label("API key or Supabase access token").fill(demo.api_key)
    page.keyboard.press("Enter")
    page.get_by_label("Search").fill("bob@example.com")
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("button", name=bob.order_number).click()
    dialog = page.get_by_role("dialog")
    payment = dialog.locator("#detail-payment-section")
    expect(payment.locator("#detail-payment")).to_contain_text("Pending")
    expect(payment.locator("#refund-form")).to_have_count(0)
    form = payment.locator("#payment-form")
    form.get_by_label("Method (cash, transfer…)").fill("bank transfer")
    form.get_by_label("Amount").fill(str(bob.total))
    form.get_by_role("button", name="Record payment").click()
    expect(dialog.get_by_role("status")).to_contain_text("Payment recorded.")
    expect(payment.locator("#detail-payment")).to_contain_text("Paid")
    expect(payment.locator("#payment-form")).to_have_count(0)
    refund = payment.locator("#refund-form")
    refund.get_by_label(re.compile("^Amount")).fill("1.00")
    refund.get_by_label("Reason").fill("late delivery")
    refund.get_by_role("button", name="Refund").click()
    expect(dialog.get_by_role("status")).to_contain_text("Refund recorded.")
    expect(payment.locator("#detail-payment")).to_contain_text("Partially refunded")
    expect(payment.locator("#detail-payments li")).to_have_count(2)
    expect(dialog.locator("#detail-history")).to_contain_text("Payment refunded")
    snap(page, "dashboard-payment")
    # A refund past what is left is refused with the API's explanation.
    refund = payment.locator("#refund-form")
    refund.get_by_label(re.compile("^Amount")).fill("100000.00")
    refund.get_by_role("button", name="Refund").click()
    expect(dialog.locator("#detail-error")).to_contain_text("left to refund")
    assert errors == []
