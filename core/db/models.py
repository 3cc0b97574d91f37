"""SQLAlchemy 2 typed models: the whole schema in one place (migrations mirror it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    literal_column,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.db.types import UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

LIVE_BOOKING_SQL = "status IN ('PENDING_APPROVAL', 'APPROVED', 'CONFIRMED')"
LIVE_PAYMENT_SQL = "status IN ('QUEUED', 'AWAITING_CUSTOMER', 'UNCLEAR')"
SMS_CLIENT_SQL = "telegram_user_id IS NULL"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Therapist(Timestamped, Base):
    __tablename__ = "therapists"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    email: Mapped[str] = mapped_column(String(254), unique=True)
    phone: Mapped[str] = mapped_column(String(12))
    telegram_user_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    telegram_link_code: Mapped[str | None] = mapped_column(String(32), unique=True)
    telegram_unreachable: Mapped[bool] = mapped_column(Boolean, default=False)
    weekly_hours: Mapped[dict[str, Any]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # "en" / "sw" (core.i18n): the language of every message to them; None: not chosen yet.
    language: Mapped[str | None] = mapped_column(String(5))


class Client(Timestamped, Base):
    __tablename__ = "clients"
    __table_args__ = (
        # One SMS client per number: two first messages from a new number arriving at once
        # must not open two accounts. Telegram clients are keyed by their user id instead and
        # may share a number with an SMS client (see find_or_create_client).
        Index(
            "uq_clients_sms_phone",
            "phone",
            unique=True,
            sqlite_where=text(SMS_CLIENT_SQL),
            postgresql_where=text(SMS_CLIENT_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    telegram_user_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    phone: Mapped[str | None] = mapped_column(String(12), index=True)
    email: Mapped[str | None] = mapped_column(String(254))
    name: Mapped[str | None] = mapped_column(String(120))
    telegram_unreachable: Mapped[bool] = mapped_column(Boolean, default=False)
    anonymised: Mapped[bool] = mapped_column(Boolean, default=False)
    # "en" / "sw" (core.i18n): the language of every message to them; None: not chosen yet.
    language: Mapped[str | None] = mapped_column(String(5))


class SessionType(Base):
    __tablename__ = "session_types"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(60), unique=True)
    minutes: Mapped[int] = mapped_column(Integer)
    price_kes: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Booking(Timestamped, Base):
    """A therapy appointment ("session" in the seed); money in whole KES."""

    __tablename__ = "bookings"
    __table_args__ = (
        # A therapist cannot have two live bookings starting at the same moment.
        Index(
            "uq_bookings_live_slot",
            "therapist_id",
            "starts_at",
            unique=True,
            sqlite_where=text(LIVE_BOOKING_SQL),
            postgresql_where=text(LIVE_BOOKING_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(13), unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    therapist_id: Mapped[int] = mapped_column(ForeignKey("therapists.id"), index=True)
    session_type_id: Mapped[int] = mapped_column(ForeignKey("session_types.id"))
    starts_at: Mapped[datetime] = mapped_column(index=True)
    ends_at: Mapped[datetime]
    price_kes: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), index=True)
    channel: Mapped[str] = mapped_column(String(10))
    email: Mapped[str | None] = mapped_column(String(254))
    approval_code: Mapped[str] = mapped_column(String(8), unique=True)
    meeting_url: Mapped[str | None] = mapped_column(String(300))
    status_reason: Mapped[str | None] = mapped_column(String(200))


PENDING_RESCHEDULE_SQL = "status = 'PENDING'"


class BookingReschedule(Base):
    """One move of a booking to another start: the history, and a held slot while PENDING.

    APPLIED rows count the moves (the .ics SEQUENCE); a PENDING row (the practitioner must
    approve, RESCHEDULE_NEEDS_APPROVAL) holds ``new_starts_at`` for its practitioner: at most
    one pending hold per slot and per booking (partial unique indexes), and the booking
    queries count it as busy while its booking is live. States: core/domain/states.py.
    """

    __tablename__ = "booking_reschedules"
    __table_args__ = (
        Index(
            "uq_booking_reschedules_pending_slot",
            "therapist_id",
            "new_starts_at",
            unique=True,
            sqlite_where=text(PENDING_RESCHEDULE_SQL),
            postgresql_where=text(PENDING_RESCHEDULE_SQL),
        ),
        Index(
            "uq_booking_reschedules_pending_booking",
            "booking_id",
            unique=True,
            sqlite_where=text(PENDING_RESCHEDULE_SQL),
            postgresql_where=text(PENDING_RESCHEDULE_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"), index=True)
    therapist_id: Mapped[int] = mapped_column(ForeignKey("therapists.id"))
    old_starts_at: Mapped[datetime]
    new_starts_at: Mapped[datetime]
    new_ends_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(10))
    requested_by: Mapped[str] = mapped_column(String(60))
    code: Mapped[str | None] = mapped_column(String(8), unique=True)  # SMS "A<code>" / "D<code>"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None]
class TimeOff(Base):
    """A practitioner's blocked time (a day, days, or part of a day): no slot is offered in it.

    Live bookings inside it are kept (the practitioner or an admin deals with them); the
    slot computation treats every row as busy time (core.services.booking.queries).
    """

    __tablename__ = "time_off"
    # The blocks that can still hide a slot: one practitioner's, ending after now.
    __table_args__ = (Index("ix_time_off_therapist_id_ends_at", "therapist_id", "ends_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    therapist_id: Mapped[int] = mapped_column(ForeignKey("therapists.id"))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PaymentAttempt(Timestamped, Base):
    """One STK Push; a booking may have many, at most one live (partial unique index)."""

    __tablename__ = "payment_attempts"
    __table_args__ = (
        Index(
            "uq_payment_attempts_one_live_per_booking",
            "booking_id",
            unique=True,
            sqlite_where=text(LIVE_PAYMENT_SQL),
            postgresql_where=text(LIVE_PAYMENT_SQL),
        ),
        Index("ix_payment_attempts_status_deadline", "status", "deadline_at"),
        Index("ix_payment_attempts_created_at", "created_at"),
        # The admin transaction list: newest first within an environment (Property 81), by status.
        Index("ix_payment_attempts_environment_created_at", "environment", "created_at"),
        Index("ix_payment_attempts_environment_status_created_at", "environment", "status", "created_at"),
        # A whole phone number is an index lookup; its last digits use the last-four indexes below.
        Index("ix_payment_attempts_phone", "phone"),
        Index("ix_payment_attempts_paid_phone", "paid_phone"),
        # The practitioner filter: that practitioner's bookings' attempts in one environment.
        Index("ix_payment_attempts_booking_id_environment", "booking_id", "environment"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"), index=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(20))
    amount_kes: Mapped[int] = mapped_column(Integer)
    phone: Mapped[str] = mapped_column(String(12))
    environment: Mapped[str] = mapped_column(String(10))
    callback_secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    checkout_request_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    merchant_request_id: Mapped[str | None] = mapped_column(String(64))
    mpesa_receipt: Mapped[str | None] = mapped_column(String(20), unique=True)
    paid_amount_kes: Mapped[int | None] = mapped_column(Integer)
    paid_phone: Mapped[str | None] = mapped_column(String(12))
    transaction_time: Mapped[datetime | None]
    result_code: Mapped[str | None] = mapped_column(String(20))
    result_desc: Mapped[str | None] = mapped_column(String(300))
    review_reason: Mapped[str | None] = mapped_column(String(300))
    deadline_at: Mapped[datetime]
    next_check_at: Mapped[datetime | None]
    query_count: Mapped[int] = mapped_column(Integer, default=0)
    settled_at: Mapped[datetime | None]
    # The watchdog's lease (core.db.claims): one worker queries or re-pushes an attempt at a time.
    claimed_until: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(64))


def last_four(column: Any) -> Any:
    """``substr(col, length(col) - 3, 4)``: the last four characters, read alike by SQLite and
    PostgreSQL (their negative-start ``substr`` and ``right`` differ). Literals, not bound
    parameters, so a query spelling it this way matches the expression indexes below."""
    return func.substr(column, func.length(column) - literal_column("3"), literal_column("4"))


# Search by the last 4-8 digits of a phone: seek the last four, then compare the longer suffix.
Index("ix_payment_attempts_phone_last4", last_four(PaymentAttempt.phone))
Index("ix_payment_attempts_paid_phone_last4", last_four(PaymentAttempt.paid_phone))


# The columns whose repeat the inbox ignores (INSERT … ON CONFLICT DO NOTHING).
INBOX_UNIQUE = ("provider", "provider_id")


class CallbackInbox(Base):
    """Raw provider callbacks, stored before processing; the provider id de-duplicates."""

    __tablename__ = "callback_inbox"
    __table_args__ = (UniqueConstraint(*INBOX_UNIQUE),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    provider_id: Mapped[str] = mapped_column(String(100))
    raw_body: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(300))
    # M-Pesa STK rows: the fields the intake parsed, so settlement does not parse the body
    # again (migration 0006). result_code NULL: not stored (older rows, odd amounts) -> parse.
    checkout_request_id: Mapped[str | None] = mapped_column(String(100))
    result_code: Mapped[str | None] = mapped_column(String(64))
    result_desc: Mapped[str | None] = mapped_column(Text)
    amount: Mapped[int | None] = mapped_column(BigInteger)
    receipt: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    transaction_time: Mapped[datetime | None]
    # Settlement's claim: a worker owns the row until claimed_until (a lease that lapses when
    # the worker dies), so several workers never settle one row twice.
    claimed_by: Mapped[str | None] = mapped_column(String(40))
    claimed_until: Mapped[datetime | None]


class Outbox(Base):
    """Messages to send, written in the same transaction as the change that causes them."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_due", "status", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(10))
    recipient: Mapped[str] = mapped_column(String(254))
    template: Mapped[str] = mapped_column(String(60))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    dedupe_key: Mapped[str] = mapped_column(String(120), unique=True)
    status: Mapped[str] = mapped_column(String(10), default="PENDING")
    due_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_until: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(64))  # the dispatcher holding the lease
    last_error: Mapped[str | None] = mapped_column(String(300))
    provider_message_id: Mapped[str | None] = mapped_column(String(100), index=True)
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Reminder(Base):
    __tablename__ = "reminders"
    __table_args__ = (
        UniqueConstraint("booking_id", "kind"),
        Index("ix_reminders_status_due", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"))
    kind: Mapped[str] = mapped_column(String(4))
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(10), default="PENDING")
    claimed_until: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    sent_at: Mapped[datetime | None]


class AuditEntry(Base):
    """Append-only, hash-chained log: hash = SHA-256(prev_hash ‖ canonical JSON)."""

    __tablename__ = "audit_entries"
    # One attempt's or booking's timeline on the admin detail page.
    __table_args__ = (Index("ix_audit_entries_subject", "subject_type", "subject_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(60))
    action: Mapped[str] = mapped_column(String(60), index=True)
    subject_type: Mapped[str | None] = mapped_column(String(30))
    subject_id: Mapped[str | None] = mapped_column(String(40))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class DialogState(Base):
    """Where each chat user is in the conversation; ``version`` rejects stale writes."""

    __tablename__ = "dialog_states"
    __table_args__ = (UniqueConstraint("channel", "user_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(10))
    user_key: Mapped[str] = mapped_column(String(64))
    step: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class AdminUser(Base):
    __tablename__ = "admin_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(60), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    last_login_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Logging out ends every session of the admin issued before this moment (cookies cannot be recalled).
    sessions_revoked_at: Mapped[datetime | None]


class AdminLoginFailure(Base):
    """One failed admin login, kept ~30 minutes for throttling (core/domain/throttle.py).

    ``account_key`` is the SHA-256 of the lower-cased username tried, so unknown names
    lock like real ones and what people typed is not kept; ``ip`` is the caller's address.
    """

    __tablename__ = "admin_login_failures"
    __table_args__ = (
        Index("ix_admin_login_failures_account_at", "account_key", "at"),
        Index("ix_admin_login_failures_ip_at", "ip", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    account_key: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str] = mapped_column(String(45))


class Setting(Base):
    """Runtime settings changed by admins; secrets are stored encrypted."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(60), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(60))


class TelegramProgress(Base):
    """A chat's live payment-progress message, shared by every process (``bot/progress.py``).

    ``phase`` is ``following`` while the attempt waits (the worker holding the lease edits it),
    then ``offered`` while the message shows a failure with "Retry payment"
    (``bot/retry_offers.py``); the row goes once the result is final. A lease (``owner``,
    ``lease_until``) lets exactly one process follow it, and another take over when that one dies.
    """

    __tablename__ = "telegram_progress"
    __table_args__ = (Index("ix_telegram_progress_phase_lease", "phase", "lease_until"),)

    attempt_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    booking_id: Mapped[int | None] = mapped_column(index=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[int] = mapped_column(BigInteger)
    base_text: Mapped[str] = mapped_column(Text, default="")
    options: Mapped[list[list[str]]] = mapped_column(JSON, default=list)  # [[label, value], …]
    phase: Mapped[str] = mapped_column(String(16))
    lang: Mapped[str] = mapped_column(String(8), default="en", server_default="en")  # the chat's language
    owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
