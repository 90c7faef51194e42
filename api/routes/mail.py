"""Owner endpoints for customer emails: what went out, or was kept without SMTP."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query

from agent_tools.service import mail
from agent_tools.service.mail import Mail, MailDetail
from api.deps import ConnDep, OwnerDep
from api.problems import errors

router = APIRouter(prefix="/api/mail", tags=["mail"], responses=errors(401, 422, 503))


@router.get("/", response_model=list[Mail])
async def list_mail(
    owner: OwnerDep,
    conn: ConnDep,
    order_id: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[Mail]:
    """Customer emails of your orders, newest first. Without `SMTP_URL` they are rendered
    and kept here (state `kept`) instead of sent."""
    return await mail.list_mail(conn, owner, order_id=order_id, limit=limit)


@router.get("/{mail_id}", response_model=MailDetail, responses=errors(404))
async def read_mail(
    mail_id: Annotated[int, Path(ge=1, le=2**62)], owner: OwnerDep, conn: ConnDep
) -> MailDetail:
    """One email with its text and HTML parts."""
    return await mail.get_mail(conn, owner, mail_id)
