"""Owner endpoint minting session tokens: how a networked host (MCP over HTTP) binds a
conversation's identity without the model ever supplying it."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path

from agent_tools.service import sessions
from agent_tools.service.sessions import MintedSession, SessionIn
from api.deps import ConnDep, OwnerDep, StateDep
from api.problems import errors

router = APIRouter(prefix="/api/agents", tags=["sessions"], responses=errors(401, 422, 503))


@router.post(
    "/{agent_id}/sessions",
    status_code=201,
    response_model=MintedSession,
    responses=errors(404),
)
async def create_session(
    agent_id: Annotated[UUID, Path(description="The agent's id")],
    body: SessionIn,
    owner: OwnerDep,
    conn: ConnDep,
    state: StateDep,
) -> MintedSession:
    """A short-lived token for one conversation of your agent, to send as
    `Authorization: Bearer <token>` to `/mcp`. It binds the conversation and the customer's
    email/phone (and whether you verified them) until `expires_at`. Minting changes nothing,
    so a retry simply mints another token; the token is not stored."""
    return await sessions.mint(conn, owner, agent_id, body, state.settings)
