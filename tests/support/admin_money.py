"""Payment data for the admin money pages' tests: a small named scenario and a bulk seeder.

The scenario (times are Africa/Nairobi, 2026-12):

| name | env | status | when (Nairobi) | client | practitioner |
|---|---|---|---|---|---|
| paid | simulator | PAID, receipt NLJ7RT61SV | 01 10:00 | Wanjiku Kamau, 254712345678 | Amina Odhiambo |
| late_evening | simulator | FAILED 1 (no funds) | 01 23:30 | Otieno Baraka, 254733111222 | Brian Mwangi |
| after_midnight | simulator | CANCELLED 1032 | 02 00:10 | Otieno Baraka | Brian Mwangi |
| production | production | PAID, receipt PRD0000001 | 02 09:00 | Wanjiku Kamau | Amina Odhiambo |
| sandbox | sandbox | PAID, receipt SBX0000001 | 02 11:00 | Otieno Baraka | Amina Odhiambo |
| formula | simulator | PAID, receipt FRM0000001 | 03 08:00 | "=HYPERLINK(...)" | "@Practitioner" |
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import Booking, PaymentAttempt
from core.domain.slots import NAIROBI
from core.domain.states import BookingStatus, PaymentStatus
from core.runtime import Runtime
from tests.factories import make_attempt, make_booking, make_client, make_session_type, make_therapist

FORMULA_NAME = '=HYPERLINK("http://evil.example","x")'


def nairobi(day: int, hour: int, minute: int = 0) -> datetime:
    """An aware time on 2026-12-<day> in Nairobi."""
    return datetime(2026, 12, day, hour, minute, tzinfo=NAIROBI)


@dataclass
class Scenario:
    ids: dict[str, int]  # attempt ids by name
    receipts: dict[str, str]
    checkout_ids: dict[str, str]
    references: dict[str, str]  # booking references by attempt name
    therapists: dict[str, int]


async def seed_scenario(runtime: Runtime) -> Scenario:
    async with runtime.uow() as uow:
        s = uow.session
        amina = await make_therapist(s, name="Amina Odhiambo")
        brian = await make_therapist(s, name="Brian Mwangi")
        formula_t = await make_therapist(s, name="@Practitioner")
        wanjiku = await make_client(s, name="Wanjiku Kamau", phone="254712345678")
        otieno = await make_client(s, name="Otieno Baraka", phone="254733111222")
        evil = await make_client(s, name=FORMULA_NAME, phone="254744000111")
        st = await make_session_type(s, price_kes=2500)
        plan: list[tuple[str, Any, Any, str, PaymentStatus, datetime, dict[str, Any]]] = [
            (
                "paid",
                wanjiku,
                amina,
                "simulator",
                PaymentStatus.PAID,
                nairobi(1, 10),
                {"mpesa_receipt": "NLJ7RT61SV"},
            ),
            (
                "late_evening",
                otieno,
                brian,
                "simulator",
                PaymentStatus.FAILED,
                nairobi(1, 23, 30),
                {"result_code": "1", "result_desc": "The balance is insufficient for the transaction."},
            ),
            (
                "after_midnight",
                otieno,
                brian,
                "simulator",
                PaymentStatus.CANCELLED,
                nairobi(2, 0, 10),
                {"result_code": "1032", "result_desc": "Request cancelled by user"},
            ),
            (
                "production",
                wanjiku,
                amina,
                "production",
                PaymentStatus.PAID,
                nairobi(2, 9),
                {"mpesa_receipt": "PRD0000001"},
            ),
            (
                "sandbox",
                otieno,
                amina,
                "sandbox",
                PaymentStatus.PAID,
                nairobi(2, 11),
                {"mpesa_receipt": "SBX0000001"},
            ),
            (
                "formula",
                evil,
                formula_t,
                "simulator",
                PaymentStatus.PAID,
                nairobi(3, 8),
                {"mpesa_receipt": "FRM0000001"},
            ),
        ]
        sc = Scenario({}, {}, {}, {}, {"amina": amina.id, "brian": brian.id})
        for i, (name, client, therapist, env, status, at, extra) in enumerate(plan):
            paid = status is PaymentStatus.PAID
            booking = await make_booking(
                s,
                therapist=therapist,
                client=client,
                session_type=st,
                status=BookingStatus.CONFIRMED if paid else BookingStatus.APPROVED,
                starts_at=nairobi(10 + i, 9),
            )
            settled = at + timedelta(minutes=1)
            values = (
                {"paid_amount_kes": 2500, "paid_phone": client.phone, "transaction_time": settled}
                if paid
                else {}
            )
            attempt = await make_attempt(
                s,
                booking,
                status=status,
                environment=env,
                phone=client.phone,
                created_at=at,
                updated_at=settled,
                settled_at=settled,
                **values,
                **extra,
            )
            sc.ids[name] = attempt.id
            sc.checkout_ids[name] = attempt.checkout_request_id or ""
            sc.references[name] = booking.reference
            if attempt.mpesa_receipt:
                sc.receipts[name] = attempt.mpesa_receipt
        await uow.commit()
    return sc


async def bulk_attempts(
    session: AsyncSession, booking: Booking, count: int, *, start: datetime, environment: str = "simulator"
) -> None:
    """``count`` ended attempts on ``booking`` (one per second from ``start``), inserted in chunks."""
    chunk = 5000
    for first in range(0, count, chunk):
        rows = [
            {
                "booking_id": booking.id,
                "client_id": booking.client_id,
                "idempotency_key": f"bulk-{booking.id}-{i}",
                "status": PaymentStatus.FAILED.value if i % 3 else PaymentStatus.PAID.value,
                "amount_kes": booking.price_kes,
                "paid_amount_kes": None if i % 3 else booking.price_kes,
                "phone": "254708374149",
                "environment": environment,
                "callback_secret_hash": hashlib.sha256(f"bulk-{booking.id}-{i}".encode()).hexdigest(),
                "mpesa_receipt": None if i % 3 else f"BLK{booking.id:03d}{i:07d}",
                "result_code": "1" if i % 3 else "0",
                "result_desc": "The balance is insufficient for the transaction." if i % 3 else "ok",
                "deadline_at": start + timedelta(seconds=i + 120),
                "settled_at": start + timedelta(seconds=i + 30),
                "query_count": 0,
                "created_at": start + timedelta(seconds=i),
                "updated_at": start + timedelta(seconds=i + 30),
            }
            for i in range(first, min(first + chunk, count))
        ]
        await session.execute(insert(PaymentAttempt.__table__), rows)
