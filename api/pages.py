"""The HTML pages: public order tracking and the owner's dashboard, plus their static files.

The tracking page asks `tracking.track` exactly like the JSON endpoint does, so both decide
the same way what a visitor may see. The dashboard is a static shell whose script talks only
to the JSON API with the owner's token.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from agent_tools.db import Database
from agent_tools.errors import NotFound
from agent_tools.models import OrderStatus
from agent_tools.payments import runner
from agent_tools.service import payments, tracking
from agent_tools.service.events import event_types
from api.deps import DbDep, get_state, limit_tracking
from api.problems import ApiError
from api.ratelimit import RateLimited

HERE = Path(__file__).parent
STATIC = HERE / "static"

router = APIRouter(include_in_schema=False)
router.mount("/static", StaticFiles(directory=STATIC), name="static")
templates = Jinja2Templates(directory=HERE / "templates")

# Pages are self-contained: no inline script, no third-party origin. `no-referrer` keeps the
# tracking token out of the Referer sent to a carrier's site.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

EVENT_LABELS = {
    "created": "Order placed",
    "tracking_updated": "Tracking details updated",
    "note": "Note from the store",
    "cancelled": "Cancelled",
    "problem_reported": "Problem reported",
    "problem_resolved": "Problem resolved",
    "edited": "Order changed",
    "return_requested": "Return requested",
    "return_approved": "Return approved",
    "return_rejected": "Return rejected",
    "return_received": "Returned items received",
    "return_refunded": "Return refunded",
    "shipment_created": "Parcel handed to the carrier",
    "label_created": "Label created",
    "in_transit": "In transit",
    "out_for_delivery": "Out for delivery",
    "delivered": "Delivered",
    "failed_attempt": "Delivery attempted",
    "exception": "Delivery problem",
    "returned_to_sender": "Returned to sender",
}
CARRIERS = ["UPS", "USPS", "FedEx", "DHL"]
"""Suggested in the dashboard's ship form; each has a link in `carriers.CARRIER_LINKS`."""


@cache
def _static_version(path: str) -> str:
    return hashlib.sha256((STATIC / path).read_bytes()).hexdigest()[:10]


def static_url(path: str) -> str:
    """A root-relative URL with a content hash, so a new release is never served stale."""
    return f"/static/{path}?v={_static_version(path)}"


def status_label(status: OrderStatus | str) -> str:
    return str(status).capitalize()


def event_label(kind: str, status: OrderStatus | None) -> str:
    if kind == "status_changed" and status is not None:
        return status_label(status)
    return EVENT_LABELS.get(kind, kind.replace("_", " ").capitalize())


templates.env.globals.update(
    static_url=static_url, status_label=status_label, event_label=event_label
)


def render_page(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """A template of the pages, under the pages' security headers (also used by the
    confirmation page's route)."""
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response


def _track_url(order_number: str) -> str:
    return f"/track/{quote(order_number.strip().upper(), safe='')}"


MAX_FORM_BYTES = 4096
"""The tracking forms carry a number and an email: a few hundred bytes."""


class FormTooLarge(ApiError):
    code = "payload_too_large"
    status = 413


async def read_form(request: Request) -> dict[str, str]:
    """An url-encoded form body as a dict of first values (no multipart needed here), read
    as a stream and refused past `MAX_FORM_BYTES` without reading further."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormTooLarge(
                f"the form is larger than {MAX_FORM_BYTES} bytes", hint="send only the fields"
            )
    return {k: v[0].strip() for k, v in parse_qs(body.decode("utf-8", errors="replace")).items()}


def _form_page(request: Request, status_code: int = 200, **context: Any) -> HTMLResponse:
    context = {"number": "", "email": "", "problem": None, **context}
    return render_page(request, "track_form.html", context, status_code=status_code)


async def _lookup(
    request: Request, db: Database, number: str, *, email: str = "", token: str = ""
) -> HTMLResponse:
    """The order's page, the same friendly page for an unknown number and a wrong email
    (so neither can be probed), or a polite "slow down" under the JSON endpoint's limit."""
    state = await get_state(request)
    try:
        # The limit first: a refused lookup takes no database connection.
        await limit_tracking(request, state)
        async with db.reader() as conn:
            view = await tracking.track(conn, number, email=email or None, token=token or None)
            # Only its customer is offered to pay it (the link names items and the total).
            pay = view.full and await payments.payable(conn, view.order_number) is not None
    except RateLimited as exc:
        response = _form_page(request, 429, number=number, problem="rate_limited")
        response.headers.update(exc.headers)
        return response
    except NotFound:
        await state.track_limiter.failed()
        return _form_page(request, 404, number=number, email=email, problem="not_found")
    return render_page(request, "track_order.html", {"view": view, "pay": pay})


@router.get("/track", response_class=HTMLResponse)
async def read_track_form(request: Request) -> HTMLResponse:
    """The form a customer without a link starts from."""
    return _form_page(request)


@router.post("/track", response_class=HTMLResponse)
async def submit_track_form(request: Request, db: DbDep) -> Response:
    """Number alone: go to the order's page. With an email: show the full view right here,
    so the email never lands in a URL, an access log or the browser history."""
    form = await read_form(request)
    number, email = form.get("order_number", ""), form.get("email", "")
    if not number:
        return _form_page(request, 422, email=email, problem="missing")
    if not email:
        return RedirectResponse(_track_url(number), status_code=303)
    return await _lookup(request, db, number, email=email)


TOKEN_COOKIE = "ao_track"  # noqa: S105 - a cookie name, not a secret
TOKEN_COOKIE_SECONDS = 1800
"""How long the tracking link's token stays in the browser after the link was opened."""


@router.get("/track/{order_number}", response_class=HTMLResponse)
async def read_tracking_page(
    request: Request,
    db: DbDep,
    order_number: str,
    token: Annotated[str | None, Query(max_length=128)] = None,
    email: Annotated[str | None, Query(max_length=320, include_in_schema=False)] = None,
    pay: Annotated[bool, Query(include_in_schema=False)] = False,
) -> Response:
    """An order's progress; its details with its tracking link's token or matching email.

    The link (`?token=...`) is answered with a redirect to the bare URL that leaves the token
    in a short-lived cookie only this order's page receives: the token does not stay in the
    address bar, the history, a shared screenshot or the next request's log line. An email
    in the URL is dropped the same way; the page's form posts it instead.
    """
    if token is not None or email is not None:
        clean = _track_url(order_number)
        # The email's "Pay now": the link's token goes to the cookie, then on to paying.
        response = RedirectResponse(clean + "/pay" if pay and token else clean, status_code=303)
        response.headers.update(SECURITY_HEADERS)
        if token:
            secure = request.url.scheme == "https" or (
                (await get_state(request)).settings.public_url.startswith("https:")
            )
            response.set_cookie(
                TOKEN_COOKIE,
                token,
                max_age=TOKEN_COOKIE_SECONDS,
                path=clean,
                secure=secure,
                httponly=True,
                samesite="lax",
            )
        return response
    return await _lookup(request, db, order_number, token=request.cookies.get(TOKEN_COOKIE, ""))


@router.get("/track/{order_number}/pay", response_class=HTMLResponse)
async def pay_order(request: Request, db: DbDep, order_number: str) -> Response:
    """The tracking page's "Pay now": on to the order's Stripe Checkout page (the open link,
    or a fresh one once it expired). Only with the order's tracking link (its cookie)."""
    back = RedirectResponse(_track_url(order_number), status_code=303)
    token = request.cookies.get(TOKEN_COOKIE, "")
    async with db.connection() as conn:
        try:
            view = await tracking.track(conn, order_number, token=token or None)
        except NotFound:
            return back
        order_id = await payments.payable(conn, view.order_number) if view.full else None
        if order_id is None:
            return back
        await payments.request_link(conn, order_id)
    url = await runner.payment_url(db, order_id, (await get_state(request)).settings)
    return RedirectResponse(url, status_code=303) if url else back


@router.post("/track/{order_number}", response_class=HTMLResponse)
async def unlock_tracking_page(request: Request, db: DbDep, order_number: str) -> HTMLResponse:
    """The order page's "is this your order?" form: the same page, unredacted on a match."""
    email = (await read_form(request)).get("email", "")
    return await _lookup(request, db, order_number, email=email)


@router.get("/dashboard", response_class=HTMLResponse)
async def read_dashboard(request: Request, db: DbDep) -> HTMLResponse:
    """The owner's orders view; signed in by the browser, which holds the token."""
    async with db.reader() as conn:
        types = await event_types(conn)
    return render_page(
        request,
        "dashboard.html",
        {"statuses": list(OrderStatus), "carriers": CARRIERS, "event_types": types},
    )
