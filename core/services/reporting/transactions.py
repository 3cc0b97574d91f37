"""The admin transaction list: filters parsed from query parameters, one joined query, paging.

Every payment attempt is one row (Properties 37, 38): its Nairobi date and time, amount,
client, practitioner, booking reference, M-Pesa receipt, status, failure reason and time
(Properties 42, 43) and environment. Reports default to the active M-Pesa environment so a
production report never mixes in test money (Property 81).

``parse_filter`` is pure: it turns the raw parameters into a :class:`TransactionFilter` plus
the messages for any value it could not use. ``list_transactions`` runs the query (and
checks the practitioner exists); the CSV export reuses :func:`filtered_rows_query`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import Booking, Client, PaymentAttempt, Therapist, last_four
from core.db.uow import UnitOfWork
from core.domain.slots import NAIROBI
from core.domain.states import FAILED_PAYMENT_STATUSES, PaymentStatus
from core.mpesa.result_codes import describe_result

ENVIRONMENTS = ("production", "sandbox", "simulator")
PAGE_SIZE = 50
MAX_PAGE = 100_000
Q_MAX = 100
MIN_PHONE_DIGITS = 4
FILTER_KEYS = ("from", "to", "q", "therapist", "status", "environment", "page")
_PHONE_TEXT = re.compile(r"^\+?[\d\s-]+$")


class FilterError(ValueError):
    """A filter value that cannot be used; ``messages`` says why, one line each."""

    def __init__(self, messages: tuple[str, ...]) -> None:
        self.messages = messages
        super().__init__("; ".join(messages))


@dataclass(frozen=True)
class TransactionFilter:
    """What an admin asked for; dates are Nairobi days, both inclusive."""

    environment: str
    start: date | None = None
    end: date | None = None
    q: str | None = None
    therapist_id: int | None = None
    status: PaymentStatus | None = None
    page: int = 1

    def created_bounds(self) -> tuple[datetime | None, datetime | None]:
        """[start, end) in UTC of the chosen Nairobi days."""
        lo = datetime.combine(self.start, time(), NAIROBI).astimezone(UTC) if self.start else None
        hi = (
            datetime.combine(self.end + timedelta(days=1), time(), NAIROBI).astimezone(UTC)
            if self.end
            else None
        )
        return lo, hi

    def as_params(self, **changes: Any) -> dict[str, str]:
        """The query parameters that reproduce this filter (for paging links and the CSV link)."""
        f = replace(self, **changes)
        values = {
            "from": f.start.isoformat() if f.start else "",
            "to": f.end.isoformat() if f.end else "",
            "q": f.q or "",
            "therapist": str(f.therapist_id) if f.therapist_id is not None else "",
            "status": f.status.value if f.status else "",
            "environment": f.environment,
            "page": str(f.page) if f.page != 1 else "",
        }
        return {k: v for k, v in values.items() if v}


@dataclass(frozen=True)
class ParsedFilter:
    """The usable filter, the messages about values that were not usable, and the raw values."""

    filter: TransactionFilter
    errors: tuple[str, ...] = ()
    raw: Mapping[str, str] = field(default_factory=dict)


def parse_filter(params: Mapping[str, str], *, active_environment: str) -> ParsedFilter:
    """Read ``from``, ``to``, ``q``, ``therapist``, ``status``, ``environment`` and ``page``."""
    raw = {k: str(params.get(k, "")).strip() for k in FILTER_KEYS}
    errors: list[str] = []
    start = _parse_day(raw["from"], "from", errors)
    end = _parse_day(raw["to"], "to", errors)
    if start and end and start > end:
        errors.append(f"The 'from' date ({start}) is after the 'to' date ({end}).")
    q = raw["q"] or None
    if q is not None and len(q) > Q_MAX:
        errors.append(f"The search text is too long (at most {Q_MAX} characters).")
        q = None
    if q is not None and not q.isprintable():  # e.g. NUL, which PostgreSQL refuses in text
        errors.append("The search text contains characters that cannot be searched.")
        q = None
    if q is not None and _PHONE_TEXT.match(q) and len(_digits(q)) < MIN_PHONE_DIGITS:
        errors.append(f"Search a phone number by at least its last {MIN_PHONE_DIGITS} digits.")
        q = None
    therapist_id = _parse_int(raw["therapist"], "Practitioner", errors)
    status = _parse_status(raw["status"], errors)
    environment = raw["environment"].lower() or active_environment
    if environment not in ENVIRONMENTS:
        errors.append(f"Unknown environment '{raw['environment'][:20]}': use {', '.join(ENVIRONMENTS)}.")
        environment = active_environment
    page = _parse_int(raw["page"], "Page", errors)
    if page is None:
        page = 1
    elif not 1 <= page <= MAX_PAGE:
        errors.append(f"Page must be between 1 and {MAX_PAGE}.")
        page = 1
    filt = TransactionFilter(
        environment=environment,
        start=start,
        end=end,
        q=q,
        therapist_id=therapist_id,
        status=status,
        page=page,
    )
    return ParsedFilter(filter=filt, errors=tuple(errors), raw=raw)


def _parse_day(value: str, name: str, errors: list[str]) -> date | None:
    if not value:
        return None
    try:
        if len(value) != 10:
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        errors.append(f"The '{name}' date must be a day written YYYY-MM-DD (got '{value[:20]}').")
        return None


def _parse_int(value: str, name: str, errors: list[str]) -> int | None:
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        errors.append(f"{name} must be a whole number (got '{value[:20]}').")
        return None
    return int(value)


def _parse_status(value: str, errors: list[str]) -> PaymentStatus | None:
    if not value:
        return None
    try:
        return PaymentStatus(value.upper())
    except ValueError:
        names = ", ".join(s.value for s in PaymentStatus)
        errors.append(f"Unknown status '{value[:20]}': use one of {names}.")
        return None


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


# -- the query --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransactionRow:
    """One payment attempt as the admin pages and the CSV show it."""

    id: int
    created_at: datetime
    amount_kes: int
    paid_amount_kes: int | None
    status: str
    environment: str
    receipt: str | None
    result_code: str | None
    result_desc: str | None
    review_reason: str | None
    settled_at: datetime | None
    updated_at: datetime
    booking_id: int
    booking_reference: str
    client_id: int
    client_name: str | None
    therapist_id: int
    therapist_name: str

    @property
    def created_local(self) -> datetime:
        return self.created_at.astimezone(NAIROBI)

    @property
    def is_failure(self) -> bool:
        return self.status in FAILED_PAYMENT_STATUSES or self.status == PaymentStatus.NEEDS_REVIEW

    @property
    def failure_reason(self) -> str | None:
        """Why a failed attempt failed (Properties 42, 43), or why it waits for review."""
        if self.status == PaymentStatus.NEEDS_REVIEW:
            return self.review_reason or "needs review"
        if self.status not in FAILED_PAYMENT_STATUSES:
            return None
        desc = (self.result_desc or "").strip()
        if self.result_code and describe_result(self.result_code).is_success:
            return desc or "closed after review"  # money arrived; an admin refunded or dismissed it
        title = describe_result(self.result_code).title if self.result_code else "Failed"
        code = f" (ResultCode {self.result_code})" if self.result_code else ""
        return f"{title}{code}" + (f": {desc}" if desc and desc != title else "")

    @property
    def failure_at(self) -> datetime | None:
        """When the failure was recorded (Nairobi time)."""
        if not self.is_failure:
            return None
        return (self.settled_at or self.updated_at).astimezone(NAIROBI)


ROW_COLUMNS: tuple[Any, ...] = (  # typed loosely: callers add columns and slice rows
    PaymentAttempt.id,
    PaymentAttempt.created_at,
    PaymentAttempt.amount_kes,
    PaymentAttempt.paid_amount_kes,
    PaymentAttempt.status,
    PaymentAttempt.environment,
    PaymentAttempt.mpesa_receipt,
    PaymentAttempt.result_code,
    PaymentAttempt.result_desc,
    PaymentAttempt.review_reason,
    PaymentAttempt.settled_at,
    PaymentAttempt.updated_at,
    Booking.id,
    Booking.reference,
    Client.id,
    Client.name,
    Therapist.id,
    Therapist.name,
)


def row_of(values: Any) -> TransactionRow:
    return TransactionRow(*values)


def conditions(filt: TransactionFilter) -> list[Any]:
    """WHERE clauses on payment_attempts alone (no join), so counting needs no join either."""
    conds: list[Any] = [PaymentAttempt.environment == filt.environment]
    lo, hi = filt.created_bounds()
    if lo is not None:
        conds.append(PaymentAttempt.created_at >= lo)
    if hi is not None:
        conds.append(PaymentAttempt.created_at < hi)
    if filt.status is not None:
        conds.append(PaymentAttempt.status == filt.status.value)
    if filt.therapist_id is not None:
        conds.append(
            PaymentAttempt.booking_id.in_(
                select(Booking.id).where(Booking.therapist_id == filt.therapist_id).correlate(None)
            )
        )
    if filt.q:
        conds.append(PaymentAttempt.id.in_(_search_ids(filt.q)))
    return conds


def _search_ids(q: str) -> Any:
    """Ids of attempts whose receipt, CheckoutRequestID or booking reference is ``q``, whose
    client's name contains it, or whose phone ends with its digits: one indexed lookup each."""
    text = q.strip()
    ids = select(PaymentAttempt.id).correlate(None)
    parts = [
        ids.where(PaymentAttempt.mpesa_receipt == text.upper()),
        ids.where(PaymentAttempt.checkout_request_id == text),
        ids.join(Booking, Booking.id == PaymentAttempt.booking_id).where(Booking.reference == text.upper()),
        ids.where(
            PaymentAttempt.client_id.in_(
                select(Client.id).where(func.lower(Client.name).contains(text.lower(), autoescape=True))
            )
        ),
    ]
    if _PHONE_TEXT.match(text) and len(_digits(text)) >= MIN_PHONE_DIGITS:
        # Stored numbers are 2547XXXXXXXX: compare the last (up to) 9 digits, so 0712…, 712…
        # and 254712… all find the same number.
        tail = _digits(text)[-9:]
        for column in (PaymentAttempt.phone, PaymentAttempt.paid_phone):
            parts.append(ids.where(_phone_ends_with(column, tail)))
    return union(*parts)


def _phone_ends_with(column: Any, tail: str) -> Any:
    """A whole number (9 digits) is a lookup in the phone index; 4-8 digits seek the last-four
    expression index, then the longer suffix is compared exactly on those few rows."""
    if len(tail) == 9:
        return column == "254" + tail
    return and_(last_four(column) == tail[-4:], column.endswith(tail, autoescape=True))


def joined_attempts(query: Select[Any]) -> Select[Any]:
    return (
        query.select_from(PaymentAttempt)
        .join(Booking, Booking.id == PaymentAttempt.booking_id)
        .join(Client, Client.id == PaymentAttempt.client_id)
        .join(Therapist, Therapist.id == Booking.therapist_id)
    )


def filtered_rows_query(filt: TransactionFilter) -> Select[Any]:
    """Every column of :class:`TransactionRow`, filtered, newest first (no limit)."""
    return (
        joined_attempts(select(*ROW_COLUMNS))
        .where(and_(*conditions(filt)))
        .order_by(PaymentAttempt.created_at.desc(), PaymentAttempt.id.desc())
    )


@dataclass(frozen=True)
class TransactionPage:
    """One page of the list; ``errors`` non-empty means nothing was queried."""

    filter: TransactionFilter
    rows: tuple[TransactionRow, ...] = ()
    total: int = 0
    errors: tuple[str, ...] = ()
    therapists: tuple[tuple[int, str], ...] = ()

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // PAGE_SIZE))

    @property
    def has_previous(self) -> bool:
        return self.filter.page > 1

    @property
    def has_next(self) -> bool:
        return self.filter.page < self.pages


async def practitioner_choices(session: AsyncSession) -> tuple[tuple[int, str], ...]:
    """(id, name) of every practitioner, for the filter's drop-down."""
    rows = (await session.execute(select(Therapist.id, Therapist.name).order_by(Therapist.name))).all()
    return tuple((r[0], r[1]) for r in rows)


async def check_filter(session: AsyncSession, parsed: ParsedFilter) -> tuple[str, ...]:
    """The parse errors plus the ones that need the database (an unknown practitioner)."""
    errors = list(parsed.errors)
    tid = parsed.filter.therapist_id
    if tid is not None and await session.get(Therapist, tid) is None:
        errors.append(f"There is no practitioner with id {tid}.")
    return tuple(errors)


async def list_transactions(session: AsyncSession, parsed: ParsedFilter) -> TransactionPage:
    """One page of attempts matching the filter (one joined query plus a count)."""
    filt = parsed.filter
    therapists = await practitioner_choices(session)
    errors = await check_filter(session, parsed)
    if errors:
        return TransactionPage(filter=filt, errors=errors, therapists=therapists)
    conds = and_(*conditions(filt))
    total = await session.scalar(select(func.count()).select_from(PaymentAttempt).where(conds)) or 0
    query = filtered_rows_query(filt).limit(PAGE_SIZE).offset((filt.page - 1) * PAGE_SIZE)
    rows = tuple(row_of(r) for r in (await session.execute(query)).all())
    return TransactionPage(filter=filt, rows=rows, total=total, therapists=therapists)


async def transactions_page(uow_factory: Callable[[], UnitOfWork], parsed: ParsedFilter) -> TransactionPage:
    """:func:`list_transactions` in its own read transaction (the admin view's one call)."""
    async with uow_factory() as uow:
        return await list_transactions(uow.session, parsed)


def audit_filters(filt: TransactionFilter) -> dict[str, str]:
    """The filters as the admin-access audit entry records them (Property 69)."""
    return {**filt.as_params(), "environment": filt.environment, "page": str(filt.page)}
