"""Settings only the HTTP layer reads, on top of the shared ones."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from agent_tools.config import Settings


class ApiSettings(Settings):
    # Field names work as keyword arguments too (tests, embedding), not only the variables.
    model_config = SettingsConfigDict(populate_by_name=True)

    track_burst: int = Field(20, ge=1, validation_alias="AGENT_ORDERS_TRACK_BURST")
    """Public tracking lookups a client address may make in a burst."""

    track_per_minute: float = Field(12.0, gt=0, validation_alias="AGENT_ORDERS_TRACK_PER_MINUTE")
    """Sustained tracking lookups per client address and minute, once the burst is spent."""

    jwks_lifespan: float = Field(300.0, gt=0, validation_alias="AGENT_ORDERS_JWKS_LIFESPAN")
    """Seconds the JWKS from `SUPABASE_URL` is cached."""

    jwks_cooldown: float = Field(30.0, ge=0, validation_alias="AGENT_ORDERS_JWKS_COOLDOWN")
    """Minimum seconds between refetches triggered by an unknown key id."""

    housekeeping_seconds: float = Field(
        3600.0, gt=0, validation_alias="AGENT_ORDERS_HOUSEKEEPING_SECONDS"
    )
    """How often the server purges expired idempotency keys and stale drafts."""


@lru_cache(maxsize=1)
def get_api_settings() -> ApiSettings:
    return ApiSettings()
