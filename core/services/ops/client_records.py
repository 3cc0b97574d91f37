"""Clients as the admin site sees them: a searchable list and one client's bookings and payments.

Phones never leave here in full: every number is reduced to its last four digits. The admin
views audit each read (admin_web.pages.audited_read, Property 69); these functions only read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, func, select

from core.db.models import Booking, Client, PaymentAttempt, SessionType, Therapist
from core.domain.phone import mask_phone
from core.domain.text import has_control_characters

if TYPE_CHECKING:
    from core.runtime import Runtime

CLIENT_PAGE_SIZE = 50
QUERY_MAX = 120
MIN_PHONE_DIGITS = 4
_PHONE_QUERY = re.compile(r"^\+?[\d\s\-]+$")


class ClientRecordsError(ValueError):
    """A request the client pages cannot answer; the message is safe to show."""


@dataclass(frozen=True)
class ClientRow:
    id: int
    name: str | None
    phone: str | None  # masked
    email: str | None
    on_telegram: bool
    anonymised: bool
    created_at: datetime


@dataclass(frozen=True)
class ClientPage:
    rows: list[ClientRow]
    page: int
    has_next: bool
    query: str


@dataclass(frozen=True)
class ClientBooking:
    id: int
    reference: str
    therapist: str
    session_type: str
    starts_at: datetime
    status: str
    price_kes: int


@dataclass(frozen=True)
class ClientPayment:
    id: int
    reference: str
    created_at: datetime
    amount_kes: int
    status: str
    phone: str  # masked
    receipt: str | None
    paid_amount_kes: int | None
    transaction_time: datetime | None
    result_desc: str | None
    environment: str


@dataclass(frozen=True)
class ClientRecord:
    client: ClientRow
    bookings: list[ClientBooking]
    payments: list[ClientPayment]


def shown_phone(phone: str | None) -> str | None:
    """The last four digits only; an already masked number (a forgotten client's) stays as it is."""
    if not phone:
        return None
    return phone if "*" in phone else mask_phone(phone)


def _search(query: str) -> Any:
    """The WHERE clause of a search: the last 4+ digits of a phone, else part of a name."""
    if _PHONE_QUERY.match(query):
        digits = re.sub(r"\D", "", query)
        if len(digits) < MIN_PHONE_DIGITS:
            raise ClientRecordsError(f"give at least {MIN_PHONE_DIGITS} digits of a phone number")
        return Client.phone.like(f"%{digits[-9:]}")
    pattern = "%" + query.lower().replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%"
    return func.lower(Client.name).like(pattern, escape="\\")


def _clients(query: str, page: int) -> Select[Client]:
    stmt = select(Client)
    if query:
        stmt = stmt.where(_search(query))
    offset = (page - 1) * CLIENT_PAGE_SIZE
    return stmt.order_by(Client.id.desc()).limit(CLIENT_PAGE_SIZE + 1).offset(offset)


def check_query(query: str) -> str:
    """The search text as it is used (spaces collapsed); raises ClientRecordsError when unusable."""
    query = " ".join(query.split())
    if len(query) > QUERY_MAX:
        raise ClientRecordsError(f"a search is at most {QUERY_MAX} characters")
    if has_control_characters(query):
        raise ClientRecordsError("a search cannot contain control characters")
    if query:
        _search(query)
    return query


async def client_page(runtime: Runtime, *, query: str = "", page: int = 1) -> ClientPage:
    """One page of clients, newest first, optionally searched (see :func:`check_query`)."""
    query = check_query(query)
    page = max(page, 1)
    stmt = _clients(query, page)
    async with runtime.uow() as uow:
        clients = (await uow.session.scalars(stmt)).all()
        rows = [_row(c) for c in clients[:CLIENT_PAGE_SIZE]]
    return ClientPage(rows, page, len(clients) > CLIENT_PAGE_SIZE, query)


async def client_record(runtime: Runtime, client_id: int) -> ClientRecord:
    """A client with their bookings and payment attempts (newest first)."""
    async with runtime.uow() as uow:
        session = uow.session
        client = await session.get(Client, client_id)
        if client is None:
            raise ClientRecordsError(f"there is no client {client_id}")
        bookings = (
            await session.execute(
                select(Booking, Therapist.name, SessionType.name)
                .join(Therapist, Therapist.id == Booking.therapist_id)
                .join(SessionType, SessionType.id == Booking.session_type_id)
                .where(Booking.client_id == client_id)
                .order_by(Booking.starts_at.desc(), Booking.id.desc())
            )
        ).all()
        payments = (
            await session.execute(
                select(PaymentAttempt, Booking.reference)
                .join(Booking, Booking.id == PaymentAttempt.booking_id)
                .where(PaymentAttempt.client_id == client_id)
                .order_by(PaymentAttempt.created_at.desc(), PaymentAttempt.id.desc())
            )
        ).all()
        return ClientRecord(
            _row(client),
            [_booking(b, therapist, kind) for b, therapist, kind in bookings],
            [_payment(p, reference) for p, reference in payments],
        )


def _row(c: Client) -> ClientRow:
    return ClientRow(
        c.id, c.name, shown_phone(c.phone), c.email, c.telegram_user_id is not None, bool(c.anonymised),
        c.created_at,
    )


def _booking(b: Booking, therapist: str, kind: str) -> ClientBooking:
    return ClientBooking(b.id, b.reference, therapist, kind, b.starts_at, b.status, b.price_kes)


def _payment(p: PaymentAttempt, reference: str) -> ClientPayment:
    return ClientPayment(
        p.id, reference, p.created_at, p.amount_kes, p.status, shown_phone(p.phone) or "",
        p.mpesa_receipt, p.paid_amount_kes, p.transaction_time, p.result_desc, p.environment,
    )


__all__ = [
    "ClientBooking", "ClientPage", "ClientPayment", "ClientRecord", "ClientRecordsError", "ClientRow",
    "check_query", "client_page", "client_record", "shown_phone",
]
