"""Property tests of the transaction filters: for any combination of date range, search text,
practitioner, status and environment, the list's total and the CSV's rows are exactly the
attempts a plain-Python reading of the filter selects (SQLite, and PostgreSQL with
TEST_DATABASE_URL)."""

from __future__ import annotations

import asyncio
import csv
import io
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.domain.slots import NAIROBI
from core.domain.states import BookingStatus, PaymentStatus
from core.runtime import build_runtime
from core.services.reporting.transactions import list_transactions, parse_filter
from core.services.reporting.transactions_csv import stream_transactions_csv
from tests.conftest import make_settings
from tests.factories import make_attempt, make_booking, make_client, make_session_type, make_therapist

ENVS = ("production", "sandbox", "simulator")
STATUSES = ("PAID", "FAILED", "CANCELLED", "TIMED_OUT", "NEEDS_REVIEW")
NAMES = ("Wanjiku Kamau", "Otieno Baraka", "Achieng Njeri", "Kiprop Kibet", "Amani 100% Safi")
FIRST_DAY = date(2026, 12, 1)
DAYS = 4


@dataclass(frozen=True)
class Fact:
    id: int
    env: str
    status: str
    therapist: int
    day: date  # Nairobi day of created_at
    receipt: str | None
    checkout: str
    reference: str
    name: str
    phone: str


async def build_world(runtime, rng: random.Random) -> tuple[list[Fact], list[int]]:
    facts: list[Fact] = []
    async with runtime.uow() as uow:
        s = uow.session
        therapists = [await make_therapist(s) for _ in range(3)]
        clients = [
            await make_client(s, name=n, phone=f"2547{20 + i:02d}{rng.randrange(10**6):06d}")
            for i, n in enumerate(NAMES)
        ]
        kind = await make_session_type(s)
        for i in range(40):
            therapist, client = rng.choice(therapists), rng.choice(clients)
            # Minutes around Nairobi midnight as often as mid-day: the day boundaries are what matters.
            at = datetime.combine(FIRST_DAY, datetime.min.time(), NAIROBI) + timedelta(
                days=rng.randrange(DAYS), minutes=rng.choice([-5, 0, 5, 600, 1435])
            )
            status = rng.choice(STATUSES)
            booking = await make_booking(
                s,
                therapist=therapist,
                client=client,
                session_type=kind,
                status=BookingStatus.APPROVED,
                starts_at=datetime(2027, 1, 1, tzinfo=UTC) + timedelta(hours=i),
            )
            receipt = f"R{i:04d}X{rng.randrange(10**4):04d}" if status == "PAID" else None
            attempt = await make_attempt(
                s,
                booking,
                status=PaymentStatus(status),
                environment=rng.choice(ENVS),
                phone=client.phone,
                mpesa_receipt=receipt,
                created_at=at,
                updated_at=at,
            )
            facts.append(
                Fact(
                    attempt.id,
                    attempt.environment,
                    status,
                    therapist.id,
                    at.astimezone(NAIROBI).date(),
                    receipt,
                    attempt.checkout_request_id or "",
                    booking.reference,
                    client.name or "",
                    client.phone or "",
                )
            )
        await uow.commit()
    return facts, [t.id for t in therapists]


def expected(facts: list[Fact], params: dict[str, str]) -> set[int]:
    env = params.get("environment") or "simulator"
    start = date.fromisoformat(params["from"]) if params.get("from") else None
    end = date.fromisoformat(params["to"]) if params.get("to") else None
    q = params.get("q")
    out = set()
    for f in facts:
        if f.env != env or (start and f.day < start) or (end and f.day > end):
            continue
        if params.get("status") and f.status != params["status"]:
            continue
        if params.get("therapist") and f.therapist != int(params["therapist"]):
            continue
        if q and not matches(f, q):
            continue
        out.add(f.id)
    return out


def matches(f: Fact, q: str) -> bool:
    digits = "".join(ch for ch in q if ch.isdigit())
    phone_like = all(ch.isdigit() or ch in " +-" for ch in q) and len(digits) >= 4
    return (
        f.receipt == q.upper()
        or f.checkout == q
        or f.reference == q.upper()
        or q.lower() in f.name.lower()
        or (phone_like and f.phone.endswith(digits[-9:]))
    )


def query_texts(facts: list[Fact]) -> st.SearchStrategy[str | None]:
    pick = st.sampled_from(facts)
    return st.one_of(
        st.none(),
        pick.map(lambda f: f.receipt or f.reference.lower()),
        pick.map(lambda f: f.checkout),
        pick.map(lambda f: f.reference),
        st.tuples(pick, st.integers(0, 6)).map(lambda t: t[0].name[t[1] : t[1] + 4]),
        st.tuples(pick, st.integers(4, 9)).map(lambda t: t[0].phone[-t[1] :]),
        pick.map(lambda f: "0" + f.phone[3:]),
        st.just("100%"),
    )


# Feature: mpesa-payment-integration, Property 39: Transaction Search Filters Results
# Feature: mpesa-payment-integration, Property 81: Sandbox Transactions Isolated From Production
def test_any_filter_combination_selects_exactly_the_matching_attempts(database_url: str) -> None:
    with asyncio.Runner() as runner:
        runtime = build_runtime(make_settings(database_url))
        facts, therapist_ids = runner.run(build_world(runtime, random.Random(11)))
        days = st.one_of(
            st.none(), st.integers(-1, DAYS).map(lambda d: (FIRST_DAY + timedelta(days=d)).isoformat())
        )

        @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(
            start=days,
            end=days,
            q=query_texts(facts),
            therapist=st.one_of(st.none(), st.sampled_from(therapist_ids).map(str)),
            status=st.one_of(st.none(), st.sampled_from(STATUSES)),
            environment=st.one_of(st.none(), st.sampled_from(ENVS)),
        )
        def check(start, end, q, therapist, status, environment) -> None:
            params = {
                k: v
                for k, v in {
                    "from": start,
                    "to": end,
                    "q": q,
                    "therapist": therapist,
                    "status": status,
                    "environment": environment,
                }.items()
                if v is not None
            }
            parsed = parse_filter(params, active_environment="simulator")
            if parsed.errors:  # reversed dates or too few phone digits: a message, nothing listed
                short_number = bool(q and q.strip()) and all(ch.isdigit() or ch in " +-" for ch in q.strip())
                assert (start and end and start > end) or short_number, parsed.errors
                return
            want = expected(facts, params)

            async def run() -> tuple[int, set[int]]:
                async with runtime.uow() as uow:
                    page = await list_transactions(uow.session, parsed)
                text = "".join(
                    [c async for c in stream_transactions_csv(runtime.uow, parsed.filter, batch_size=7)]
                )
                return page.total, {int(r["attempt_id"]) for r in csv.DictReader(io.StringIO(text))}

            total, exported = runner.run(run())
            assert (total, exported) == (len(want), want), params

        try:
            check()
        finally:
            runner.run(runtime.close())
