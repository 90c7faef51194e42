"""Domain errors: one base class, a stable `code` per failure, rendered by tools and API alike."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, TypeVar

import pydantic

M = TypeVar("M", bound=pydantic.BaseModel)


class OrderError(Exception):
    """A business failure the caller can act on. Never a bug."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 400
    """The HTTP status the API uses for this failure."""

    def __init__(self, message: str, *, hint: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        out.update({k: v for k, v in self.details.items() if v is not None})
        return out


class NotFound(OrderError):
    code = "not_found"
    status = 404


class UnknownAgent(NotFound):
    """The agent (store) does not exist: for the API a wrong id, for the tools a host's fault."""

    def __init__(self, agent_id: object) -> None:
        super().__init__(f"no agent {agent_id}", hint="check the agent id")


class ValidationFailed(OrderError):
    code = "validation"
    status = 422

    def __init__(self, message: str, *, field: str | None = None, **kw: Any) -> None:
        super().__init__(message, field=field, **kw)
        self.field = field


class UnknownSku(OrderError):
    code = "unknown_sku"
    status = 422


class OutOfStock(OrderError):
    code = "out_of_stock"
    status = 409


class CurrencyMismatch(OrderError):
    code = "currency_mismatch"
    status = 422


class InvalidTransition(OrderError):
    code = "invalid_transition"
    status = 409


class VersionConflict(OrderError):
    code = "version_conflict"
    status = 409


class Conflict(OrderError):
    code = "conflict"
    status = 409


class Forbidden(OrderError):
    """The caller is known but may not do this (tools: identity rules)."""

    code = "forbidden"
    status = 403


class Unavailable(OrderError):
    """The database cannot be reached or no connection is free."""

    code = "unavailable"
    status = 503


class MigrationError(Exception):
    """A migration problem is an operator's fault: raised, never returned to a model."""


def field_path(loc: Iterable[int | str]) -> str:
    """`("items", 0, "quantity")` -> `items[0].quantity`: how every error names a field."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def from_pydantic(exc: pydantic.ValidationError) -> ValidationFailed:
    first = exc.errors()[0]
    field = field_path(first["loc"]) or None
    msg = f"{field}: {first['msg']}" if field else str(first["msg"])
    return ValidationFailed(msg, field=field, errors=len(exc.errors()))


def parse(
    model: type[M], data: M | Mapping[str, Any], *, context: dict[str, Any] | None = None
) -> M:
    """Validate `data` into `model`, turning pydantic's error into a domain error."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data, context=context)
    except pydantic.ValidationError as exc:
        raise from_pydantic(exc) from None
