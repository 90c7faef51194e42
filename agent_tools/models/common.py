"""Shared field types and the base of every input model. Money is always `Decimal`."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)

MAX_LINES = 100
MAX_QUANTITY = 1000
MAX_MONEY = Decimal("9999999999.99")
"""The largest amount numeric(12,2) holds: prices and order totals alike."""


def _money(v: Decimal) -> Decimal:
    if v != v.quantize(Decimal("0.01")):
        raise ValueError("must have at most 2 decimal places")
    return v.quantize(Decimal("0.01"))


Money = Annotated[Decimal, Field(ge=0, le=MAX_MONEY), AfterValidator(_money)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Sku = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9 ()./-]{5,32}$")]
Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY)]


def _lower_email(v: str | None) -> str | None:
    return v.lower() if v else v


STORED = {"stored": True}
"""Validation context for data this service validated itself before storing it (a draft's
order at confirmation): the checks that only guard against what a caller typed (email syntax,
NUL characters, nesting) are not run a second time; types and bounds still are."""


def _stored(info: ValidationInfo) -> bool:
    context = info.context
    return isinstance(context, dict) and bool(context.get("stored"))


def _email_once(v: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    if _stored(info) and isinstance(v, str):
        return v
    return handler(v)


Email = Annotated[EmailStr, WrapValidator(_email_once), AfterValidator(_lower_email)]


MAX_DEPTH = 32
"""How deeply JSON given by a caller (metadata) may nest; real metadata is two or three."""


def _check_text(value: Any) -> None:
    """Refuse NUL characters anywhere in `value` and nesting deeper than `MAX_DEPTH`.

    Iterative, so a body nested thousands of levels deep is a validation error rather than a
    RecursionError (and a 500 with a 100 kB traceback).
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise ValueError("text must not contain NUL characters")
        elif isinstance(item, dict | list | tuple):
            if depth >= MAX_DEPTH:
                raise ValueError(f"JSON may nest at most {MAX_DEPTH} levels deep")
            if isinstance(item, dict):
                stack.extend((k, depth + 1) for k in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)


class _In(BaseModel):
    """Input from a caller: closed, immutable, and free of NUL characters (PostgreSQL
    text cannot hold them, so they would otherwise fail late, inside a transaction)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any, info: ValidationInfo) -> Any:
        if not _stored(info):
            _check_text(data)
        return data
