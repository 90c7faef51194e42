"""Owner endpoints for an order's shipments: list, add a parcel, record a carrier event."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from agent_tools.models import Actor, Provenance
from agent_tools.models.shipments import CarrierEventIn, Shipment, ShipmentIn
from agent_tools.service import orders, shipments
from api.deps import ConnDep, IdempotencyKey, OwnerDep
from api.idempotency import idempotent
from api.problems import errors

router = APIRouter(prefix="/api/orders", tags=["shipments"], responses=errors(401, 422, 503))

OrderKey = Annotated[
    str, Path(max_length=64, description="The order's UUID or its number (ORD-YYYY-NNNNNN)")
]
ShipmentID = Annotated[UUID, Path(description="The shipment's id")]


@router.get("/{order_id}/shipments", response_model=list[Shipment], responses=errors(404))
async def list_shipments(order_id: OrderKey, owner: OwnerDep, conn: ConnDep) -> list[Shipment]:
    """The order's parcels, oldest first, each with its lines and carrier events."""
    order = await orders.get_order(conn, order_id, owner_id=owner)
    return await shipments.for_order(conn, order)


@router.post(
    "/{order_id}/shipments", status_code=201, response_model=Shipment, responses=errors(404, 409)
)
async def create_shipment(
    order_id: OrderKey,
    body: ShipmentIn,
    owner: OwnerDep,
    conn: ConnDep,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Add a parcel: tracking number, carrier (detected from the number when left out:
    UPS, USPS, FedEx, DHL, else "other") and the lines it holds (`line` counts from 1; none:
    everything not yet in a shipment). The order becomes `shipped` once every line is in a
    shipment and the carrier has scanned every parcel, `delivered` once all are delivered."""

    async def run() -> Shipment:
        return await shipments.create_shipment(
            conn, order_id, body, owner_id=owner, by=Provenance(actor=Actor.owner)
        )

    return await idempotent(conn, owner, idempotency_key, request, body, run)


@router.post(
    "/{order_id}/shipments/{shipment_id}/events",
    response_model=Shipment,
    responses=errors(404),
)
async def record_carrier_event(
    order_id: OrderKey,
    shipment_id: ShipmentID,
    body: CarrierEventIn,
    owner: OwnerDep,
    conn: ConnDep,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Record a carrier event by hand (a store without a tracking provider, or a scan the
    provider missed). It counts exactly like one from a provider; the same event twice is
    kept once."""

    async def run() -> Shipment:
        return await shipments.record_event(conn, order_id, shipment_id, body, owner_id=owner)

    return await idempotent(conn, owner, idempotency_key, request, body, run, status_code=200)
