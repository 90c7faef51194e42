"""Settings read once from the environment (and an optional `.env`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of agent-orders. Field names map to the upper-case variables."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str | None = None
    """Any PostgreSQL 15+ (Supabase included). Unset: the embedded server."""

    data_dir: Path = Field(Path(".agent-orders"), validation_alias="AGENT_ORDERS_DATA_DIR")
    """Where the embedded server keeps its data (`<data_dir>/pgdata`)."""

    public_url: str = Field("http://127.0.0.1:8000", validation_alias="AGENT_ORDERS_PUBLIC_URL")
    """Base of the tracking links handed to customers."""

    secret_key: SecretStr | None = Field(None, validation_alias="AGENT_ORDERS_SECRET_KEY")
    """The instance secret: signs tracking links, confirmation-page links and session tokens.
    Unset: a random key generated once and kept in the database (shared by every worker)."""

    prepared_statements: bool | None = Field(None, validation_alias="AGENT_ORDERS_PREPARE")
    """Server-side prepared statements. Unset: off for transaction poolers, on elsewhere."""

    pool_min_size: int = Field(1, validation_alias="AGENT_ORDERS_POOL_MIN")
    pool_max_size: int = Field(10, validation_alias="AGENT_ORDERS_POOL_MAX")
    pool_timeout: float = Field(5.0, validation_alias="AGENT_ORDERS_POOL_TIMEOUT")
    """Seconds to wait for a free connection before giving up (the API answers 503)."""

    lock_timeout: float = Field(10.0, ge=0, validation_alias="AGENT_ORDERS_LOCK_TIMEOUT")
    """Seconds a statement waits for a row lock before the request is answered 503 (0: no
    limit). Not applied behind a transaction pooler, which cannot carry session settings."""

    auth_jwt_secret: SecretStr | None = None
    supabase_url: str | None = None
    auth_jwt_audience: str = "authenticated"

    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    model: str = Field("gpt-4o-mini", validation_alias="AGENT_ORDERS_MODEL")

    redis_url: str | None = None
    """A Redis for state shared by every worker (rate limits). Unset: each process counts
    alone."""

    draft_ttl_seconds: int = Field(1800, validation_alias="AGENT_ORDERS_DRAFT_TTL")
    """How long a drafted order (or cancellation) waits for the customer's yes."""

    @field_validator("secret_key")
    @classmethod
    def _no_placeholder_secret(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        """A copied example value would let anyone forge links and session tokens; allowed
        only while the public URL is this machine (development)."""
        if value is None:
            return None
        secret = value.get_secret_value()
        weak = len(secret) < 32 or secret.strip().lower() in _PLACEHOLDERS
        host = urlsplit(str(info.data.get("public_url", ""))).hostname or ""
        if weak and host not in _LOCAL_HOSTS:
            raise ValueError(
                "AGENT_ORDERS_SECRET_KEY looks like a placeholder: use 32+ random characters"
                " (python -c 'import secrets; print(secrets.token_urlsafe(32))'), or unset it"
            )
        return value

    deliver: bool = Field(True, validation_alias="AGENT_ORDERS_DELIVER")
    """`serve` and `run` deliver webhooks and mail in a background task (off: only
    `agent-orders worker` processes deliver)."""

    delivery_concurrency: int = Field(
        32, ge=1, le=1000, validation_alias="AGENT_ORDERS_DELIVERY_CONCURRENCY"
    )
    """Deliveries one deliverer has in flight at once."""

    delivery_lease: float = Field(60.0, gt=0, validation_alias="AGENT_ORDERS_DELIVERY_LEASE")
    """Seconds a claimed delivery stays with its deliverer; after that (a killed process)
    another one takes it over. Longer than the webhook timeout."""

    delivery_poll: float = Field(1.0, gt=0, validation_alias="AGENT_ORDERS_DELIVERY_POLL")
    """Seconds between looks for due work when no notification arrives (retries, and
    databases behind a transaction pooler, where LISTEN is not available)."""

    retry_scale: float = Field(1.0, gt=0, validation_alias="AGENT_ORDERS_RETRY_SCALE")
    """Multiplies the retry schedule (5 s, 5 min, 30 min ... about 3 days); for tests."""

    webhook_timeout: float = Field(10.0, gt=0, validation_alias="AGENT_ORDERS_WEBHOOK_TIMEOUT")
    """Seconds per webhook attempt."""

    webhook_allow_private: bool = Field(
        False, validation_alias="AGENT_ORDERS_WEBHOOK_ALLOW_PRIVATE"
    )
    """Allow webhook URLs on loopback, private and link-local addresses (local development
    and tests). Off: refused at registration and again at every delivery."""

    webhook_disable_after: float = Field(
        5 * 86400.0, gt=0, validation_alias="AGENT_ORDERS_WEBHOOK_DISABLE_AFTER"
    )
    """Seconds of nothing but failures after which an endpoint is disabled."""

    event_retention_days: int = Field(
        30, ge=0, le=3650, validation_alias="AGENT_ORDERS_EVENT_RETENTION_DAYS"
    )
    """Days the event feed and the record of each webhook delivery and mail are kept (0: for
    good). Deliverers trim older ones unless still being delivered; order history stays."""

    smtp_url: SecretStr | None = None
    """`smtp://user:pass@host:587` (STARTTLS) or `smtps://...:465` (TLS). Unset: mails are
    rendered and kept for the dashboard's Mail view, not sent."""

    mail_from: str = Field("orders@localhost", validation_alias="AGENT_ORDERS_MAIL_FROM")
    """The sender address of customer emails (the store's name is the sender name)."""

    stripe_secret_key: SecretStr | None = None
    """Stripe's secret key (sk_live_... / sk_test_...): Checkout Sessions and refunds."""

    stripe_webhook_secret: SecretStr | None = None
    """The signing secret (whsec_...) of the Stripe webhook endpoint
    `/api/payments/stripe/webhook`."""

    stripe_api_base: str | None = Field(None, validation_alias="AGENT_ORDERS_STRIPE_API_BASE")
    """Another address for Stripe's API (a proxy, or a local stand-in in tests); unset:
    Stripe's own."""

    @field_validator("smtp_url", "stripe_secret_key", "stripe_webhook_secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `SMTP_URL=` in an environment file means "no mail server", not a server named "".
        return None if value == "" else value

    def use_prepared_statements(self) -> bool:
        if self.prepared_statements is not None:
            return self.prepared_statements
        if not self.database_url:
            return True
        # Supavisor / PgBouncer in transaction mode cannot keep prepared statements.
        parts = urlsplit(self.database_url)
        return not (parts.port == 6543 or "pooler" in (parts.hostname or ""))


_PLACEHOLDERS = frozenset({"changeme", "change-me", "secret", "your-secret-key", "placeholder"})
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
