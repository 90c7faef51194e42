"""RFC 9457 problem details: how every error leaves the API, each with a stable `code`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent_tools.errors import OrderError, Unavailable, field_path

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class InvalidParam(BaseModel):
    field: str
    """Where the bad value is, e.g. `body.customer.email` or `query.limit`."""
    message: str
    type: str


class Problem(BaseModel):
    """An error. `code` is stable and meant for programs; `detail` is for people."""

    model_config = ConfigDict(extra="allow")

    type: str
    """`urn:agent-orders:problem:<code>`."""
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None
    hint: str | None = None
    invalid_params: list[InvalidParam] | None = None
    """For `validation` problems on the request: every field that was refused."""


class ApiError(OrderError):
    """An HTTP-only failure (authentication, rate limit) that carries response headers."""

    def __init__(self, message: str, *, headers: dict[str, str] | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.headers = headers or {}


_DESCRIPTIONS = {
    400: "Not an event signed with this server's webhook secret (or a stale one)",
    401: "Missing, invalid or expired credentials",
    404: "Not found, or not yours",
    409: "Conflict: invalid transition, version mismatch or reused Idempotency-Key",
    422: "The request was understood but refused; `invalid_params` or `field` say where",
    429: "Too many requests from this address; see Retry-After",
    503: "The database is unreachable or busy; retry",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses (rendered as problem+json)."""
    return {c: {"model": Problem, "description": _DESCRIPTIONS[c]} for c in codes}


def problem(
    request: Request,
    status: int,
    code: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:agent-orders:problem:{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        "instance": request.url.path,
    }
    body.update({k: v for k, v in extra.items() if v is not None and k not in body})
    return JSONResponse(
        jsonable_encoder(body), status_code=status, headers=headers, media_type=PROBLEM_JSON
    )


async def _order_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OrderError)
    headers = dict(getattr(exc, "headers", {}))
    if isinstance(exc, Unavailable):
        headers.setdefault("Retry-After", "1")
    extra = {k: v for k, v in exc.to_dict().items() if k not in ("code", "message")}
    return problem(request, exc.status, exc.code, exc.message, headers=headers, **extra)


async def _request_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    params = [
        InvalidParam(field=field_path(e.get("loc", ())), message=str(e.get("msg")), type=e["type"])
        for e in exc.errors()
    ]
    first = params[0] if params else InvalidParam(field="body", message="invalid", type="invalid")
    return problem(
        request,
        422,
        "validation",
        f"{first.field}: {first.message}",
        field=first.field,
        invalid_params=[p.model_dump() for p in params],
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:  # FastAPI could not even decode the body
        return problem(request, 422, "validation", "the body is not valid JSON", field="body")
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    headers = dict(exc.headers) if exc.headers else None
    return problem(request, exc.status_code, code, str(exc.detail), headers=headers)


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    # A value PostgreSQL cannot store (a NUL character, an out-of-range number) came from
    # the caller: their fault, not ours.
    return problem(request, 422, "validation", f"a value could not be stored: {exc}")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(request, 500, "internal", "something went wrong on our side")


def install(app: FastAPI) -> None:
    """Render every error as problem+json and document error bodies as such."""
    app.add_exception_handler(OrderError, _order_error)
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(psycopg.DataError, _data_error)
    app.add_exception_handler(Exception, _unexpected)
    app.openapi = _problem_openapi(app.openapi)  # type: ignore[method-assign]


def _problem_openapi(build: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    def openapi() -> dict[str, Any]:
        schema = build()  # FastAPI caches the dict, so this rewrite runs once
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                for code, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    if code[0] in "45" and "application/json" in content:
                        content[PROBLEM_JSON] = content.pop("application/json")
        return schema

    return openapi
