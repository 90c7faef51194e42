"""Public order tracking: no login, rate-limited, redacted unless the email or token matches."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from agent_tools.errors import NotFound
from agent_tools.service import tracking
from agent_tools.service.tracking import TrackingView
from api.deps import DbDep, StateDep, TrackingLimit
from api.problems import errors

router = APIRouter(tags=["tracking"])


@router.get(
    "/api/orders/track/{order_number}",
    response_model=TrackingView,
    dependencies=[TrackingLimit],
    responses=errors(404, 422, 429, 503),
)
async def track_order(
    order_number: Annotated[str, Path(max_length=64, description="e.g. ORD-2026-123456")],
    db: DbDep,
    state: StateDep,
    response: Response,
    email: Annotated[
        str | None, Query(max_length=320, description="The order's email: shows full details")
    ] = None,
    token: Annotated[
        str | None, Query(max_length=128, description="The token from the tracking link")
    ] = None,
) -> TrackingView:
    """Status, progress, timeline, items, carrier and delivery estimate of an order.

    Name, email, phone, street and amounts appear only when `email` matches the order or
    `token` is the order's tracking token. An unknown number and a wrong email get the same
    404, so neither can be probed.
    """
    response.headers["Cache-Control"] = "no-store"
    # The busiest public route opens its connection here rather than through a `yield`
    # dependency, whose exit stack costs about a tenth of this route's CPU time.
    try:
        async with db.reader() as conn:
            return await tracking.track(conn, order_number, email=email, token=token)
    except NotFound:
        await state.track_limiter.failed()
        raise
