"""The tracking page and the dashboard shell over real HTTP (ASGI) on a real PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest

from agent_tools.db import Database
from agent_tools.demo import load_demo
from agent_tools.models import Actor, Provenance
from agent_tools.service import orders, tracking
from api import pages
from tests.api_support import client as api_client
from tests.api_support import make_app
from tests.pages_support import Demo, seed_demo


@pytest.fixture
async def demo(db: Database) -> Demo:
    return await seed_demo(db)


@pytest.fixture
async def client(db: Database, demo: Demo) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(make_app(db)) as c:
        yield c


def path(link: str) -> str:
    """The tracking link without its host, as the browser would request it."""
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


def text(html: str) -> str:
    """Visible text, roughly: tags dropped, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


class TestTrackingPage:
    async def test_form_has_labelled_fields_and_strict_headers(
        self, client: httpx.AsyncClient
    ) -> None:
        r = await client.get("/track")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        assert '<label for="order_number">Order number</label>' in r.text
        assert '<label for="email">Email' in r.text
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "<script>" not in r.text  # no inline script: the CSP would block it

    async def test_number_alone_shows_progress_but_no_personal_details(
        self, client: httpx.AsyncClient, demo: Demo
    ) -> None:
        dev = demo.orders["Dev"]
        r = await client.get(f"/track/{dev.order_number}")
        assert r.status_code == 200
        page = text(r.text)
        assert "Status: Shipped" in page
        assert '<li class="done" aria-current="step">' in r.text  # shipped is the current step
        assert "Estimated delivery" in page
        # Status, progress and dates only: no items, destination or carrier for a guesser.
        for secret in (
            "Dev Patel",
            "dev@example.com",
            "13 Main Street",
            "41.85",
            "A5 dotted notebook",
            "Leeds",
            "1Z999AA",
        ):
            assert secret not in r.text
        assert "Is this your order?" in page

    async def test_tracking_link_from_the_tools_opens_the_full_view(
        self, client: httpx.AsyncClient, demo: Demo
    ) -> None:
        link = await client.get(path(demo.links["Dev"]))
        # The token goes into a short-lived cookie for this order's page only, and the
        # browser is sent on to the bare URL.
        number = demo.orders["Dev"].order_number
        assert link.status_code == 303 and link.headers["location"] == f"/track/{number}"
        cookie = link.headers["set-cookie"]
        for part in (f"Path=/track/{number}", "HttpOnly", "Max-Age=1800", "SameSite=lax"):
            assert part in cookie
        r = await client.get(link.headers["location"])
        assert r.status_code == 200
        page = text(r.text)
        assert "3 \N{MULTIPLICATION SIGN} A5 dotted notebook" in page and "Leeds" in page
        assert "Dev Patel" in page and "13 Main Street" in page and "dev@example.com" in page
        assert '<data value="41.85" data-currency="USD">41.85 USD</data>' in r.text
        assert "Is this your order?" not in page
        assert r.headers["cache-control"] == "no-store"

    async def test_a_forged_token_shows_the_redacted_view(
        self, client: httpx.AsyncClient, demo: Demo
    ) -> None:
        number = demo.orders["Dev"].order_number
        forged = demo.links["Eva"].split("token=")[1]  # another order's token
        r = await client.get(f"/track/{number}", params={"token": forged}, follow_redirects=True)
        assert r.status_code == 200 and "Dev Patel" not in r.text
        other = await client.get(f"/track/{demo.orders['Eva'].order_number}")
        assert "Eva Novak" not in other.text  # the cookie is for the page it was set on only

    async def test_matching_email_unlocks_without_putting_it_in_a_url(
        self, client: httpx.AsyncClient, demo: Demo
    ) -> None:
        number = demo.orders["Dev"].order_number
        r = await client.post(f"/track/{number}", data={"email": " DEV@example.com "})
        assert r.status_code == 200 and "Dev Patel" in r.text
        start = await client.post(
            "/track", data={"order_number": number, "email": "dev@example.com"}
        )
        assert start.status_code == 200 and "Dev Patel" in start.text

    async def test_wrong_email_is_answered_like_an_unknown_number(
        self, client: httpx.AsyncClient, demo: Demo
    ) -> None:
        real = demo.orders["Dev"].order_number
        fake = "ORD-1999-000001"
        wrong = await client.post(f"/track/{real}", data={"email": "eve@example.com"})
        unknown = await client.post(f"/track/{fake}", data={"email": "eve@example.com"})
        assert wrong.status_code == unknown.status_code == 404
        assert wrong.text.replace(real, fake) == unknown.text
        assert "We couldn't find that order" in wrong.text
        assert "Dev Patel" not in wrong.text

    @pytest.mark.parametrize("number", ["ORD-2026-999999", "ord 12", "x" * 300, "%00"])
    async def test_unknown_or_mistyped_number_gets_a_friendly_page(
        self, client: httpx.AsyncClient, number: str
    ) -> None:
        r = await client.get(f"/track/{number}")
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("text/html")
        assert "We couldn't find that order" in r.text
        assert 'name="order_number"' in r.text  # the form is right there to try again

    async def test_form_goes_to_the_order_page(self, client: httpx.AsyncClient, demo: Demo) -> None:
        number = demo.orders["Ann"].order_number
        r = await client.post("/track", data={"order_number": f"  {number.lower()} "})
        assert r.status_code == 303 and r.headers["location"] == f"/track/{number}"
        empty = await client.post("/track", data={"order_number": ""})
        assert empty.status_code == 422 and "Please enter your order number" in empty.text

    async def test_carrier_link_and_delivery_estimate(
        self, client: httpx.AsyncClient, demo: Demo
    ) -> None:
        dev = demo.orders["Dev"]
        r = await client.get(path(demo.links["Dev"]), follow_redirects=True)
        assert dev.tracking_number and dev.estimated_delivery
        link = f'href="https://www.ups.com/track?tracknum={dev.tracking_number}"'
        assert link in r.text and 'rel="noopener noreferrer"' in r.text
        assert f'<time datetime="{dev.estimated_delivery.isoformat()}"' in r.text

    async def test_cancelled_order_says_so(self, client: httpx.AsyncClient, demo: Demo) -> None:
        r = await client.get(f"/track/{demo.orders['Finn'].order_number}")
        assert "This order was cancelled." in r.text
        assert 'class="progress progress-cancelled"' in r.text
        assert "aria-current" not in r.text
        full = await client.get(path(demo.links["Finn"]), follow_redirects=True)
        assert "Finn Berg" in full.text
        # The owner's note when cancelling is internal: in neither view.
        assert "Customer changed their mind" not in r.text + full.text

    async def test_customer_text_is_escaped(self, client: httpx.AsyncClient, db: Database) -> None:
        async with db.connection() as conn:
            agent, _ = await load_demo(conn)
            order = await orders.create_order(
                conn,
                {
                    "agent_id": agent.id,
                    "customer": {"name": "<script>alert(1)</script>", "email": "x@example.com"},
                    "shipping_address": {
                        "line1": "<b>1</b>",
                        "city": "<i>Oslo</i>",
                        "country": "NO",
                    },
                    "items": [{"sku": "MUG-RED", "quantity": 1}],
                },
                by=Provenance(actor=Actor.system),
            )
        r = await client.post(f"/track/{order.order_number}", data={"email": "x@example.com"})
        assert r.status_code == 200
        assert "<script>alert" not in r.text and "<i>Oslo" not in r.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text

    @pytest.mark.parametrize(
        ("creds", "full"),
        [({}, False), ({"email": "chloe@example.com"}, True), ({"email": "no@example.com"}, None)],
    )
    async def test_page_and_json_endpoint_decide_alike(
        self, client: httpx.AsyncClient, demo: Demo, creds: dict[str, str], full: bool | None
    ) -> None:
        number = demo.orders["Chloé"].order_number
        if creds:
            api = await client.post(f"/api/orders/track/{number}", json=creds)
            page = await client.post(f"/track/{number}", data=creds)
        else:
            api = await client.get(f"/api/orders/track/{number}")
            page = await client.get(f"/track/{number}")
        assert api.status_code == page.status_code == (404 if full is None else 200)
        if full is not None:
            assert api.json()["full"] is full
            assert ("Chloé Martin" in page.text) is full

    async def test_lookups_share_the_rate_limit_and_get_a_polite_page(
        self, db: Database, demo: Demo
    ) -> None:
        number = demo.orders["Ann"].order_number
        async with api_client(make_app(db, track_burst=2, track_per_minute=1)) as c:
            assert (await c.get(f"/track/{number}")).status_code == 200
            assert (await c.get(f"/api/orders/track/{number}")).status_code == 200
            r = await c.get(f"/track/{number}")
            assert (await c.get("/track")).status_code == 200  # the empty form costs nothing
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert "Too many lookups" in r.text


class TestDashboardShell:
    async def test_page_and_its_files_are_served(self, client: httpx.AsyncClient) -> None:
        r = await client.get("/dashboard")
        assert r.status_code == 200
        assert '<label for="token">API key or Supabase access token</label>' in r.text
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert "set-cookie" not in r.headers
        for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', r.text):
            served = await client.get(asset)
            assert served.status_code == 200, asset
        # Webhook types to subscribe to: the order's own and every registered capability's.
        for t in ("order.created", "order.shipped", "payment.succeeded", "order.return_requested"):
            assert f'<option value="{t}">' in r.text, t
        js = (await client.get("/static/dashboard.js")).text
        assert "sessionStorage" in js and "localStorage" not in js and "innerHTML" not in js
        assert (await client.get("/static/nope.css")).status_code == 404

    async def test_suggested_carriers_all_get_a_tracking_link(self) -> None:
        assert all(tracking.carrier_url(c, "123") for c in pages.CARRIERS)

    async def test_pages_stay_out_of_the_api_document(self, client: httpx.AsyncClient) -> None:
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert not {"/track", "/track/{order_number}", "/dashboard"} & paths.keys()
