"""Public order tracking: no login, rate-limited, the short view unless the email or token
matches. Secrets travel in a POST body, never in a URL (URLs end up in access logs, proxies
and browser history)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from agent_tools.errors import NotFound, ValidationFailed
from agent_tools.service import tracking
from agent_tools.service.tracking import TrackingView
from api.deps import DbDep, StateDep, TrackingLimit
from api.problems import errors

router = APIRouter(tags=["tracking"])

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
        # The busiest public route opens its connection here rather than through a `yield`
        # dependency, whose exit stack costs about a tenth of this route's CPU time.
        async with db.reader() as conn:
            return await tracking.track(conn, number, email=email, token=token)
    except NotFound:
        await state.track_limiter.failed()
        raise


@router.get(
    "/api/orders/track/{order_number}",
    response_model=TrackingView,
    dependencies=[TrackingLimit],
    responses=errors(404, 422, 429, 503),
)
async def track_order(
    order_number: OrderNumber,
    db: DbDep,
    state: StateDep,
    response: Response,
    email: Annotated[str | None, Query(include_in_schema=False)] = None,
    token: Annotated[str | None, Query(include_in_schema=False)] = None,
) -> TrackingView:
    """Status, progress, dates and delivery estimate of an order: anyone with its number.

    Items, destination, carrier, notes, name, email, phone, street and amounts need the
    order's email or its link's token: `POST` them to this same path. An unknown number
    is a 404.
    """
    if email is not None or token is not None:
        raise ValidationFailed(
            "the email and the token are not accepted in the URL",
            field="query",
            hint='POST {"email": ...} or {"token": ...} to this path instead',
        )
    return await _track(db, state, response, order_number)


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
