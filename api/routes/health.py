"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import DbDep
from api.problems import errors
from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
async def read_health() -> Health:
    """The process is up."""
    return Health()


@router.get("/ready", response_model=Health, responses=errors(503))
async def read_readiness(db: DbDep) -> Health:
    """The database answers (the pool checks every connection it hands out)."""
    async with db.connection():
        return Health()
