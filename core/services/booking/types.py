"""What the booking service hands out: plain, frozen views (never live ORM rows) and its error."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from core.domain.states import BookingStatus, PaymentStatus

# References and approval codes avoid look-alike characters (0/O, 1/I/L) and the letters
# A and D, which prefix the SMS approval replies "A<code>" / "D<code>".
CODE_ALPHABET = "23456789BCEFGHJKMNPQRSTVWXYZ"
REFERENCE_PREFIX = "SS-"
REFERENCE_LENGTH = 6  # "SS-7K3Q9X": 9 characters, well inside TransactionDesc's 13
APPROVAL_CODE_LENGTH = 5


def new_reference() -> str:
    """A short booking reference such as ``SS-7K3Q9X``."""
    return REFERENCE_PREFIX + "".join(secrets.choice(CODE_ALPHABET) for _ in range(REFERENCE_LENGTH))


def new_approval_code() -> str:
    """A short code a practitioner answers by SMS: ``A<code>`` approves, ``D<code>`` declines."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(APPROVAL_CODE_LENGTH))


class BookingError(Exception):
    """A booking operation that cannot be done; ``code`` says why (the chat maps it to a message).

    Codes: ``not_found``, ``inactive``, ``slot_unavailable`` (not a free slot: outside the
    hours, too soon, too far ahead, overlapping), ``slot_taken`` (taken a moment ago),
    ``already_approved``, ``already_declined``, ``not_pending``, ``too_late``,
    ``not_cancellable``, ``payment_in_progress``, ``invalid_email``, ``invalid_code``,
    ``already_linked``, ``invalid_time_off`` (time off that ends before it starts or has ended);
    rescheduling (core/services/booking/reschedule.py): ``not_movable``
    (``detail``: ``status``, ``off`` or ``too_late``), ``same_time``, ``changed``,
    ``already_decided``.
    """

    def __init__(
        self, code: str, detail: str = "", *, reference: str | None = None, status: str | None = None
    ) -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code, self.detail, self.reference, self.status = code, detail, reference, status


@dataclass(frozen=True)
class BookingView:
    """One booking with the names and payment facts the chat shows."""

    id: int
    reference: str
    status: BookingStatus
    client_id: int
    client_name: str | None
    therapist_id: int
    therapist_name: str
    session_type_id: int
    session_type_name: str
    minutes: int
    starts_at: datetime
    ends_at: datetime
    price_kes: int
    channel: str
    email: str | None
    approval_code: str
    payment_status: PaymentStatus | None = None  # the newest attempt's status (PAID wins)
    receipt: str | None = None  # M-Pesa receipt of the paid attempt

    @property
    def paid(self) -> bool:
        """True once a payment for this booking succeeded (Property 36: paid vs unpaid)."""
        return self.payment_status is PaymentStatus.PAID


@dataclass(frozen=True)
class ClientRef:
    id: int
    name: str | None
    phone: str | None
    email: str | None
    telegram_user_id: int | None


@dataclass(frozen=True)
class TherapistRef:
    id: int
    name: str
    phone: str
    telegram_user_id: int | None


@dataclass(frozen=True)
class SessionTypeRef:
    id: int
    name: str
    minutes: int
    price_kes: int
