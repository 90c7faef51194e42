"""Settings only the HTTP layer reads, on top of the shared ones."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any
from uuid import UUID

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from agent_tools.config import Settings


class ApiSettings(Settings):
    # Field names work as keyword arguments too (tests, embedding), not only the variables.
    model_config = SettingsConfigDict(populate_by_name=True)

    track_burst: int = Field(20, ge=1, validation_alias="AGENT_ORDERS_TRACK_BURST")
    """Public tracking lookups a client address may make in a burst."""

    track_per_minute: float = Field(12.0, gt=0, validation_alias="AGENT_ORDERS_TRACK_PER_MINUTE")
    """Sustained tracking lookups per client address and minute (counted over an hour)."""

    track_failed_per_minute: int = Field(
        60, ge=1, validation_alias="AGENT_ORDERS_TRACK_FAILED_PER_MINUTE"
    )
    """Failed public lookups (unknown number, wrong email) a minute from all clients together;
    past it every public lookup waits for the next minute."""

    track_max_clients: int = Field(100_000, ge=1, validation_alias="AGENT_ORDERS_TRACK_MAX_CLIENTS")
    """Client addresses the in-memory limiter remembers (without `REDIS_URL`)."""

    workers: int = Field(1, ge=1, validation_alias="AGENT_ORDERS_WORKERS")
    """Server processes serving this app on this host (`agent-orders serve` sets it). More
    than one without `REDIS_URL`: the tracking limits are counted in PostgreSQL, shared."""

    otel: bool = Field(False, validation_alias="AGENT_ORDERS_OTEL")
    """FastAPI's own OpenTelemetry traces, metrics and logs, through the globally configured
    providers. Off by default: with it on, FastAPI asks OpenTelemetry on every request whether
    a provider is set (a tenth of a tracking lookup's CPU when none is)."""

    redis_key_prefix: str = Field("agent-orders", validation_alias="AGENT_ORDERS_REDIS_PREFIX")
    """Prefix of every Redis key this server writes."""

    max_body_bytes: int = Field(1_048_576, ge=1024, validation_alias="AGENT_ORDERS_MAX_BODY_BYTES")
    """Largest request body accepted (413 above it), checked before anything parses it."""

    max_header_bytes: int = Field(16_384, ge=4096, validation_alias="AGENT_ORDERS_MAX_HEADER_BYTES")
    """Largest request head (request line and headers) the server reads (400 above it)."""

    # Not called `forwarded_allow_ips`: field names are read from the environment too, and
    # uvicorn's own FORWARDED_ALLOW_IPS must not decide this behind the operator's back.
    trusted_proxies: str = Field("", validation_alias="AGENT_ORDERS_FORWARDED_ALLOW_IPS")
    """Proxies whose `X-Forwarded-For` names the client (comma-separated addresses or
    networks, as uvicorn's option). Empty: trust no one; the peer address is the client."""

    owner_ids: Annotated[list[UUID], NoDecode] = Field(
        [], validation_alias="AGENT_ORDERS_OWNER_IDS"
    )
    """If set (comma-separated), only these owners may sign in, with a token or an API key."""

    jwks_lifespan: float = Field(300.0, gt=0, validation_alias="AGENT_ORDERS_JWKS_LIFESPAN")
    """Seconds the JWKS from `SUPABASE_URL` is cached."""

    jwks_cooldown: float = Field(30.0, ge=0, validation_alias="AGENT_ORDERS_JWKS_COOLDOWN")
    """Minimum seconds between refetches triggered by an unknown key id."""

    housekeeping_seconds: float = Field(
        3600.0, gt=0, validation_alias="AGENT_ORDERS_HOUSEKEEPING_SECONDS"
    )
    """How often the server purges expired idempotency keys and stale drafts."""

    @field_validator("owner_ids", mode="before")
    @classmethod
    def _split_ids(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [part.strip() for part in v.split(",") if part.strip()]
        return v


@lru_cache(maxsize=1)
def get_api_settings() -> ApiSettings:
    return ApiSettings()
