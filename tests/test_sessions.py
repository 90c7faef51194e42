"""Session tokens: minted by the owner API for the owner's own agent; anything tampered,
expired, foreign or missing is refused. (Refusal at `/mcp` itself: `test_mcp.py`.)"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from agent_tools.db import Database
from agent_tools.models import Agent
from agent_tools.service import sessions, tracking
from agent_tools.service.sessions import InvalidSession, SessionIn
from tests.api_support import assert_problem, bearer, client, make_app
from tests.conftest import OTHER_OWNER, OWNER


async def instance_key(db: Database) -> bytes:
    async with db.connection() as conn:
        return sessions.session_key(await tracking.signing_key(conn))


class TestMint:
    async def test_owner_mints_a_token_binding_the_conversation(
        self, db: Database, store: Agent
    ) -> None:
        body = {
            "conversation_id": "chat-7",
            "customer_email": "Ann@Example.com",
            "customer_phone": "+1 555 0100",
            "customer_verified": True,
            "ttl_seconds": 600,
        }
        async with client(make_app(db)) as api:
            r = await api.post(f"/api/agents/{store.id}/sessions", json=body, headers=bearer(OWNER))
        assert r.status_code == 201, r.text
        minted = r.json()
        assert minted["agent_id"] == str(store.id)
        assert minted["conversation_id"] == "chat-7"
        assert minted["customer_email"] == "ann@example.com"
        assert minted["customer_verified"] is True
        expires = datetime.fromisoformat(minted["expires_at"])
        assert timedelta(seconds=590) < expires - datetime.now(UTC) <= timedelta(seconds=600)

        session = sessions.decode(await instance_key(db), minted["token"])
        assert session.agent_id == store.id and session.conversation_id == "chat-7"
        assert session.customer_phone == "+1 555 0100"

    async def test_only_for_the_owners_own_agent_and_sane_input(
        self, db: Database, store: Agent
    ) -> None:
        path = f"/api/agents/{store.id}/sessions"
        async with client(make_app(db)) as api:
            r = await api.post(path, json={"conversation_id": "c"}, headers=bearer(OTHER_OWNER))
            assert_problem(r, 404, "not_found")
            assert_problem(await api.post(path, json={"conversation_id": "c"}), 401, "unauthorized")
            for bad in (
                {"conversation_id": ""},
                {"conversation_id": "c", "ttl_seconds": 10**6},
                {"conversation_id": "c", "customer_email": "not-an-email"},
                {"conversation_id": "c", "agent_id": str(store.id)},
            ):
                r = await api.post(path, json=bad, headers=bearer(OWNER))
                assert r.status_code == 422, bad


class TestVerify:
    @pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
    async def test_refuses_tampered_expired_foreign_and_missing(
        self, db: Database, store: Agent
    ) -> None:
        key = await instance_key(db)
        good = sessions.encode(key, store.id, SessionIn(conversation_id="c-1"))
        assert sessions.decode(key, good).conversation_id == "c-1"

        header, payload, signature = good.split(".")
        claims = jwt.decode(good, options={"verify_signature": False})
        forged_payload = jwt.encode({**claims, "verified": True}, "guess", algorithm="HS256")
        tampered = [
            f"{header}.{forged_payload.split('.')[1]}.{signature}",  # claims changed
            f"{header}.{payload}.{signature[:-2]}AA",  # signature changed
            jwt.encode({**claims, "agent": str(store.id)}, "another-secret", algorithm="HS256"),
            jwt.encode(claims, key, algorithm="HS512"),  # algorithm switched
            "e30." + payload + ".",  # alg none
        ]
        for token in tampered:
            with pytest.raises(InvalidSession, match="not valid"):
                sessions.decode(key, token)

        past = datetime.now(UTC) - timedelta(hours=2)
        expired = sessions.encode(key, store.id, SessionIn(conversation_id="c"), now=past)
        with pytest.raises(InvalidSession, match="expired"):
            sessions.decode(key, expired)

        # Another instance (another store's deployment) signs with another secret.
        foreign = sessions.encode(
            sessions.session_key(b"another instance"), store.id, SessionIn(conversation_id="c")
        )
        with pytest.raises(InvalidSession):
            sessions.decode(key, foreign)
        # A tracking token or an owner's Supabase-style JWT is not a session token.
        owner_jwt = jwt.encode(
            {"sub": str(OWNER), "aud": "authenticated", "exp": int(time.time()) + 60}, key
        )
        for token in ("", "x" * 5000, owner_jwt, tracking.tracking_token(key, store.id)):
            with pytest.raises(InvalidSession):
                sessions.decode(key, token)


def test_a_placeholder_instance_secret_is_refused_outside_development() -> None:
    from pydantic import ValidationError

    from agent_tools.config import Settings

    public = {"AGENT_ORDERS_PUBLIC_URL": "https://shop.example.com"}
    for weak in ("changeme", "x" * 31):
        with pytest.raises(ValidationError, match="placeholder"):
            Settings(_env_file=None, **public, AGENT_ORDERS_SECRET_KEY=weak)  # type: ignore[call-arg]
        # Development (the public URL is this machine) accepts it.
        Settings(_env_file=None, AGENT_ORDERS_SECRET_KEY=weak)  # type: ignore[call-arg]
    strong = Settings(_env_file=None, **public, AGENT_ORDERS_SECRET_KEY="k" * 40)  # type: ignore[call-arg]
    assert strong.secret_key is not None
