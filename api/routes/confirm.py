"""The trusted confirmation page, `/confirm/{token}`: where a customer gives the final yes to a
draft themselves, whatever channel the agent talks on (MCP without elicitation, SMS, email).

The button is a POST guarded twice against cross-site requests: a double-submit token (a
`SameSite=Strict` cookie that must equal the form's hidden field) and the `Origin` header,
which must be this site's. Carrying the draft out is `drafts.confirm_on_page`, idempotent: a
second press or a replayed POST returns the same order and writes nothing.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from agent_tools.errors import NotFound, OrderError
from agent_tools.payments import runner
from agent_tools.service import drafts, payments, tracking
from api.deps import DbDep, StateDep, limit_tracking
from api.pages import read_form, render_page
from api.ratelimit import RateLimited

router = APIRouter(include_in_schema=False)

CSRF_COOKIE = "ao_confirm"
Token = Annotated[str, Path(min_length=20, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


def _page(request: Request, status_code: int = 200, **context: Any) -> HTMLResponse:
    context = {"draft": None, "order": None, "problem": None, "csrf": None, **context}
    response = render_page(request, "confirm_draft.html", context, status_code=status_code)
    # Not `no-referrer`: under it a browser sends `Origin: null` with the form's POST.
    # `same-origin` still keeps the link's token from every other site.
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def _same_origin(request: Request, public_url: str) -> bool:
    """A browser names the page's origin on every POST; a missing header (old clients,
    privacy tools) is left to the double-submit token."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    public = urlsplit(public_url)
    own = {f"{public.scheme}://{public.netloc}", f"{request.url.scheme}://{request.url.netloc}"}
    return origin in own


@router.get("/confirm/{token}", response_class=HTMLResponse)
async def read_confirmation_page(
    request: Request, token: Token, db: DbDep, state: StateDep
) -> HTMLResponse:
    """The draft's summary with a "Place order" button; the order once it is placed."""
    try:
        await limit_tracking(request, state)
        async with db.connection() as conn:
            draft, expired, order = await drafts.find_by_token(conn, token)
            link = pay = None
            if order is not None and draft.confirmed_at is not None:
                key = await tracking.signing_key(conn, state.settings)
                link = tracking.tracking_url(key, order, state.settings)
                open_link = await payments.open_link(conn, order.id)
                pay = open_link.url if open_link and draft.kind == "order" else None
    except RateLimited as exc:
        response = _page(request, 429, problem="rate_limited")
        response.headers.update(exc.headers)
        return response
    except NotFound:
        return _page(request, 404, problem="not_found")
    if draft.confirmed_at is not None:
        return _page(request, draft=draft, order=order, tracking_link=link, pay_url=pay)
    if expired:
        return _page(request, 410, draft=draft, problem="expired")
    # Reuse the browser's token, so two open tabs of the page both still work.
    csrf = request.cookies.get(CSRF_COOKIE, "")
    if not 20 <= len(csrf) <= 64:
        csrf = secrets.token_urlsafe(24)
    response = _page(request, draft=draft, order=order, csrf=csrf)
    response.set_cookie(
        CSRF_COOKIE,
        csrf,
        max_age=3600,
        path="/confirm",
        secure=state.settings.public_url.startswith("https://"),
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/confirm/{token}", response_class=HTMLResponse)
async def submit_confirmation(
    request: Request, token: Token, db: DbDep, state: StateDep
) -> Response:
    """The customer's yes: carries the draft out once, then shows the result."""
    form = await read_form(request)
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = form.get("csrf", "")
    if (
        not cookie
        or not hmac.compare_digest(cookie.encode(), sent.encode())
        or not _same_origin(request, state.settings.public_url)
    ):
        return _page(request, 403, problem="forbidden")
    try:
        await limit_tracking(request, state)
        async with db.connection() as conn:
            done = await drafts.confirm_on_page(conn, token)
    except RateLimited as exc:
        response = _page(request, 429, problem="rate_limited")
        response.headers.update(exc.headers)
        return response
    except NotFound:
        return _page(request, 404, problem="not_found")
    except drafts.DraftExpired:
        return _page(request, 410, problem="expired")
    except OrderError as exc:
        return _page(request, exc.status, problem="refused", message=exc.message)
    if done.draft.kind == "order":
        # A `stripe` store's order goes on to its Checkout page, made now that it is committed.
        url = await runner.payment_url(db, done.order.id, state.settings)
        if url is not None:
            return RedirectResponse(url, status_code=303)
    # Post/redirect/get: reloading the result page never re-submits the form.
    return RedirectResponse(request.url.path, status_code=303)
