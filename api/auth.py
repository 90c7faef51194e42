"""Owner authentication: Supabase Auth JWTs (HS256 secret, or ES256/RS256 from the JWKS)."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import jwt

from agent_tools.errors import Unavailable
from api.problems import ApiError
from api.settings import ApiSettings

_ASYMMETRIC = ("ES256", "RS256")


class Unauthorized(ApiError):
    code = "unauthorized"
    status = 401

    def __init__(self, message: str, **kw: Any) -> None:
        kw.setdefault("hint", "send Authorization: Bearer <API key or Supabase access token>")
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="agent-orders"'}, **kw)


class JwtVerifier:
    """Checks signature, algorithm, `exp`, `aud` and (with `SUPABASE_URL`) `iss`.

    Accepts HS256 only when `AUTH_JWT_SECRET` is set and ES256/RS256 only when `SUPABASE_URL`
    is, so a token can never pick its own algorithm (no `none`, no HS256 signed with a public
    key).
    """

    def __init__(self, settings: ApiSettings) -> None:
        self.secret = settings.auth_jwt_secret
        self.audience = settings.auth_jwt_audience
        self.issuer: str | None = None
        self.jwks: jwt.PyJWKClient | None = None
        allowed = []
        if self.secret is not None:
            allowed.append("HS256")
        if settings.supabase_url:
            self.issuer = settings.supabase_url.rstrip("/") + "/auth/v1"
            self.jwks = jwt.PyJWKClient(
                self.issuer + "/.well-known/jwks.json",
                lifespan=settings.jwks_lifespan,
                cooldown_duration=settings.jwks_cooldown,
                timeout=5,
            )
            allowed.extend(_ASYMMETRIC)
        self.algorithms = tuple(allowed)

    async def _key(self, token: str, alg: str) -> Any:
        if alg == "HS256":
            assert self.secret is not None
            return self.secret.get_secret_value()
        assert self.jwks is not None
        try:
            # PyJWKClient fetches with urllib; keep the event loop free while it does.
            found = await asyncio.to_thread(self.jwks.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientConnectionError as exc:
            raise Unavailable("the signing keys could not be fetched", hint="retry") from exc
        except (jwt.PyJWKClientError, jwt.InvalidTokenError):
            raise Unauthorized("the token is signed with an unknown key") from None
        if found.algorithm_name != alg:
            raise Unauthorized("the token's algorithm does not match its key")
        return found.key

    async def owner(self, token: str) -> UUID:
        """The owner (`sub`) of a valid token; `Unauthorized` otherwise."""
        try:
            alg = jwt.get_unverified_header(token).get("alg")
        except jwt.InvalidTokenError:
            raise Unauthorized("the bearer token is malformed") from None
        if alg not in self.algorithms:
            raise Unauthorized(f"tokens signed with {alg!r} are not accepted")
        key = await self._key(token, alg)
        required = ["exp", "sub", "aud", "role"] + (["iss"] if self.issuer else [])
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=10,
                options={"require": required},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired", hint="sign in again") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("the token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("the token was issued by someone else") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"the token has no {exc.claim!r} claim") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("the token is invalid") from None
        # Supabase signs tokens for every role with the same key: the public `anon` key and the
        # `service_role` key are JWTs too, and anonymous sign-ins get real users. Only a
        # signed-in user is an owner.
        if claims.get("role") != "authenticated":
            raise Unauthorized("only a signed-in user's token is accepted (role authenticated)")
        if claims.get("is_anonymous") is True:
            raise Unauthorized("anonymous users cannot sign in here", hint="use an account")
        try:
            return UUID(str(claims["sub"]))
        except ValueError:
            raise Unauthorized("the token's subject is not a user id") from None
