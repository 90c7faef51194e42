"""The owner's events feed: every order event in a stable order, for reconciliation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from agent_tools.service import events
from agent_tools.service.events import EventType, FeedPage
from api.deps import ConnDep, OwnerDep, StateDep
from api.problems import errors

router = APIRouter(prefix="/api/events", tags=["events"], responses=errors(401, 422, 503))


@router.get("/", response_model=FeedPage)
async def list_events(
    owner: OwnerDep,
    conn: ConnDep,
    state: StateDep,
    after: Annotated[
        str | None, Query(max_length=100, description="`next_cursor` of the previous page")
    ] = None,
    types: Annotated[
        list[EventType] | None, Query(max_length=20, description="Only these types; repeat")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> FeedPage:
    """Your events after the cursor, oldest first, each shaped like a webhook body plus its
    `id`. Keep the last `next_cursor` and poll with it: no event is ever skipped, even one
    whose transaction commits late (the feed waits for it instead)."""
    return await events.feed(
        conn, owner, after=after, types=types, limit=limit, settings=state.settings
    )
