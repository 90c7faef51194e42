"""Order statistics for the owner's dashboard."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import BaseModel


class DayCount(BaseModel):
    day: date
    orders: int


class Stats(BaseModel):
    total_orders: int
    revenue: dict[str, Decimal]
    """Per currency, cancelled orders excluded."""
    by_status: dict[str, int]
    per_day: list[DayCount]
