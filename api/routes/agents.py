"""Owner endpoints for agents (a store's sales agent), their settings and their catalog."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from agent_tools.models import Agent, AgentIn, AgentSettings, Product
from agent_tools.service import agents, catalog
from api.deps import ConnDep, IdempotencyKey, OwnerDep
from api.idempotency import idempotent
from api.problems import errors
from api.schemas import Products, ProductsIn

router = APIRouter(prefix="/api/agents", tags=["agents"], responses=errors(401, 422, 503))

AgentID = Annotated[UUID, Path(description="The agent's id")]


@router.post("/", status_code=201, response_model=Agent, responses=errors(409))
async def create_agent(
    body: AgentIn,
    owner: OwnerDep,
    conn: ConnDep,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Create an agent with its currency and flat shipping fee."""

    async def run() -> Agent:
        return await agents.create_agent(conn, owner, body)

    return await idempotent(conn, owner, idempotency_key, request, body, run)


@router.get("/", response_model=list[Agent])
async def list_agents(owner: OwnerDep, conn: ConnDep) -> list[Agent]:
    """Your agents, oldest first."""
    return await agents.list_agents(conn, owner)


@router.get("/{agent_id}", response_model=Agent, responses=errors(404))
async def read_agent(agent_id: AgentID, owner: OwnerDep, conn: ConnDep) -> Agent:
    """One agent and its settings."""
    return await agents.get_agent(conn, agent_id, owner_id=owner)


@router.patch("/{agent_id}", response_model=Agent, responses=errors(404))
async def update_agent_settings(
    agent_id: AgentID, body: AgentSettings, owner: OwnerDep, conn: ConnDep
) -> Agent:
    """Change the agent's name, currency or shipping fee; fields left out stay as they are."""
    return await agents.update_agent(conn, agent_id, body, owner_id=owner)


@router.post(
    "/{agent_id}/products",
    status_code=200,
    response_model=list[Product],
    responses=errors(404, 409),
)
async def upsert_products(
    agent_id: AgentID,
    body: ProductsIn,
    owner: OwnerDep,
    conn: ConnDep,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Insert or update products by SKU, all or nothing (at most 1000 per call)."""

    async def run() -> Products:
        return Products(
            await catalog.upsert_products(conn, agent_id, body.products, owner_id=owner)
        )

    return await idempotent(conn, owner, idempotency_key, request, body, run, status_code=200)


@router.get("/{agent_id}/products", response_model=list[Product], responses=errors(404))
async def list_products(
    agent_id: AgentID,
    owner: OwnerDep,
    conn: ConnDep,
    include_inactive: Annotated[bool, Query()] = True,
) -> list[Product]:
    """The agent's catalog, by SKU."""
    return await catalog.list_products(
        conn, agent_id, owner_id=owner, include_inactive=include_inactive
    )
