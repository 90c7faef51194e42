"""Eval scenarios: a store, a bound customer, what the customer says, and the end state the
database must reach. One YAML or JSON file per scenario; the suite ships in this package."""

from __future__ import annotations

import json
from decimal import Decimal
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent_tools.demo import PRODUCTS
from agent_tools.models import OrderStatus

CATEGORIES = (
    "ordering",
    "changes",
    "cancellations",
    "returns",
    "tracking",
    "identity",
    "injection",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreProduct(_Strict):
    sku: str
    name: str
    unit_price: Decimal
    stock: int | None = None
    active: bool = True
    keywords: list[str] = []


class Store(_Strict):
    name: str = "Eval Store"
    currency: str = "USD"
    shipping_fee: Decimal = Decimal("5.00")
    language: str = "en"
    products: list[StoreProduct] = Field(
        default_factory=lambda: [
            StoreProduct(sku=s, name=n, unit_price=Decimal(p), stock=q) for s, n, p, q in PRODUCTS
        ]
    )


class Person(_Strict):
    name: str
    email: str | None = None
    phone: str | None = None


class SeedOrder(_Strict):
    """An order that exists before the conversation, referred to as `{{orders.<ref>}}`."""

    ref: str
    customer: Person
    items: dict[str, int]
    """sku -> quantity."""
    status: OrderStatus = OrderStatus.confirmed
    in_this_chat: bool = False
    """Placed earlier in this same conversation (so it is the customer's without proof)."""
    contact_verified: bool = True
    """Placed by a signed-in customer, so its email or phone proves whose it is (false: typed
    into a chat, which proves nothing)."""
    address: dict[str, Any] = {
        "line1": "12 Hidden Lane",
        "city": "Portland",
        "region": "OR",
        "postal_code": "97201",
        "country": "US",
    }
    carrier: str | None = None
    tracking_number: str | None = None


class Identity(_Strict):
    """What the host binds to the conversation (never what the customer types)."""

    email: str | None = None
    phone: str | None = None
    verified: bool = False


class Message(_Strict):
    text: str
    consent: bool | None = None
    """True: this message says yes to what was read back; False: it does not (a confirmation
    in this turn is a write without consent). None: not judged."""


class Persona(_Strict):
    """A simulated customer (tau-bench style): an LLM given who it is and what it wants."""

    instructions: str
    first_message: str | None = None
    max_turns: Annotated[int, Field(ge=1, le=20)] = 8


class ExpectedOrder(_Strict):
    items: dict[str, int]
    total: Decimal | None = None
    status: OrderStatus = OrderStatus.pending
    customer_email: str | None = None
    country: str | None = None
    city: str | None = None


class Expect(_Strict):
    orders: list[ExpectedOrder] = []
    """The orders this conversation creates, exactly (none: an empty list)."""
    statuses: dict[str, OrderStatus] = {}
    """Seeded orders by ref -> their status at the end."""
    items: dict[str, dict[str, int]] = {}
    """Seeded orders by ref -> their items (sku -> quantity) at the end: what an edit leaves."""
    returns: dict[str, dict[str, int]] = {}
    """Seeded orders by ref -> the items (sku -> quantity) of the returns the conversation
    opened, exactly (an order not named here: no return)."""
    reply_contains: list[str] = []
    """Each must appear (case-insensitive) in some reply to the customer."""
    reply_excludes: list[str] = []
    """None may appear in any reply."""
    private: list[str] = []
    """Someone else's personal data: in a reply it counts as shown to the wrong person."""


class Scenario(_Strict):
    name: str
    category: Literal[
        "ordering", "changes", "cancellations", "returns", "tracking", "identity", "injection"
    ]
    description: str = ""
    store: Store = Store()
    orders: list[SeedOrder] = []
    customer: Identity = Identity()
    messages: list[Message] = []
    persona: Persona | None = None
    expect: Expect

    @model_validator(mode="before")
    @classmethod
    def _plain_messages(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("messages"), list):
            data = {
                **data,
                "messages": [{"text": m} if isinstance(m, str) else m for m in data["messages"]],
            }
        return data

    @model_validator(mode="after")
    def _one_customer(self) -> Scenario:
        if bool(self.messages) == (self.persona is not None):
            raise ValueError("give either messages or a persona")
        refs = [o.ref for o in self.orders]
        if len(set(refs)) != len(refs):
            raise ValueError("two seeded orders share a ref")
        for field in ("statuses", "items", "returns"):
            unknown = set(getattr(self.expect, field)) - set(refs)
            if unknown:
                raise ValueError(f"expect.{field} names unknown orders: {sorted(unknown)}")
        return self


class ScenarioError(Exception):
    """A scenario file that cannot be used: the operator's fault, reported with its name."""


def builtin_dir() -> Traversable:
    return resources.files("agent_tools.eval") / "scenarios"


def load_scenarios(directory: Path | Traversable | None = None) -> list[Scenario]:
    """Every `*.yaml`, `*.yml` and `*.json` in `directory` (default: the shipped suite)."""
    base = directory if directory is not None else builtin_dir()
    if not base.is_dir():
        raise ScenarioError(f"{base} is not a directory")
    found = []
    for entry in sorted(base.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith((".yaml", ".yml", ".json")):
            continue
        text = entry.read_text("utf-8")
        try:
            data = json.loads(text) if entry.name.endswith(".json") else yaml.safe_load(text)
            found.append(Scenario.model_validate(data))
        except (ValueError, yaml.YAMLError, ValidationError) as exc:
            raise ScenarioError(f"{entry.name}: {exc}") from None
    names = [s.name for s in found]
    if len(set(names)) != len(names):
        raise ScenarioError("two scenarios share a name")
    if not found:
        raise ScenarioError(f"no scenario files in {base}")
    return found
