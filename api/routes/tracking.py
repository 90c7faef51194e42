"""Public order tracking: no login, rate-limited, the short view unless the email or token
matches. Secrets travel in a POST body, never in a URL (URLs end up in access logs, proxies
and browser history)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from agent_tools.batching import Batcher
from agent_tools.db import Database
from agent_tools.errors import NotFound, ValidationFailed
from agent_tools.service import tracking
from agent_tools.service.tracking import TrackingView
from api.deps import DbDep, StateDep, TrackingLimit, get_state, limit_tracking
from api.problems import errors

router = APIRouter(tags=["tracking"])


def public_views(pool: Callable[[], Database]) -> Batcher[str, bytes]:
    """The public views of the app's pool, concurrent lookups read in one statement."""

    async def read(keys: list[str]) -> dict[str, bytes]:
        async with pool().reader() as conn:
            return await tracking.public_views(conn, keys)

    return Batcher(read)


_NO_STORE = {"Cache-Control": "no-store"}

OrderNumber = Annotated[str, Path(max_length=64, description="e.g. ORD-2026-123456")]


class TrackingUnlock(BaseModel):
    """What proves the order is the caller's: its email, or the token of its tracking link."""

    model_config = ConfigDict(extra="forbid")

    email: Annotated[str | None, Field(max_length=320)] = None
    token: Annotated[str | None, Field(max_length=128)] = None


async def _track(
    db: DbDep,
    state: StateDep,
    response: Response,
    number: str,
    *,
    email: str | None = None,
    token: str | None = None,
) -> TrackingView:
    response.headers["Cache-Control"] = "no-store"
    try:
        async with db.reader() as conn:
            return await tracking.track(conn, number, email=email, token=token)
    except NotFound:
        await state.track_limiter.failed()
        raise


@router.get(
    "/api/orders/track/{order_number}",
    response_model=TrackingView,
    responses=errors(404, 422, 429, 503),
)
async def track_order(order_number: OrderNumber, request: Request) -> Response:
    """Status, progress, dates and delivery estimate of an order: anyone with its number.

    Items, destination, carrier, notes, name, email, phone, street and amounts need the
    order's email or its link's token: `POST` them to this same path. An unknown number
    is a 404.
    """
    # The busiest public route: the view comes from the database as JSON bytes and goes out
    # as they are, lookups arriving together are read in one statement, and the route asks
    # FastAPI for nothing it can do itself (each declared dependency or query parameter costs
    # every request).
    state = await get_state(request)
    await limit_tracking(request, state)
    if request.scope["query_string"]:
        query = request.query_params
        if "email" in query or "token" in query:
            raise ValidationFailed(
                "the email and the token are not accepted in the URL",
                field="query",
                hint='POST {"email": ...} or {"token": ...} to this path instead',
            )
    try:
        view = await state.public_views.get(tracking.public_key(order_number))
        if view is None:
            raise NotFound("no order with that number and email", hint="check the order number")
    except NotFound:
        await state.track_limiter.failed()
        raise
    return Response(view, media_type="application/json", headers=_NO_STORE)


@router.post(
    "/api/orders/track/{order_number}",
    response_model=TrackingView,
    dependencies=[TrackingLimit],
    responses=errors(404, 422, 429, 503),
)
async def unlock_order(
    order_number: OrderNumber,
    body: TrackingUnlock,
    db: DbDep,
    state: StateDep,
    response: Response,
) -> TrackingView:
    """The full view of an order, for its customer: with the email it was placed with, or the
    token of its tracking link.

    A wrong email gets the same 404 as an unknown number, so neither can be probed; a wrong
    or revoked token gets the short view.
    """
    return await _track(db, state, response, order_number, email=body.email, token=body.token)
