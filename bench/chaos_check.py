"""The chaos run's end-of-run checks: the database against itself and against what the outside
systems saw (the stand-ins' logs). Each check returns violations as one-line strings.

Usable on any database (the smoke test plants a violation in a test database to prove the
checker can fail): :func:`check_database` needs only a URL; :class:`Evidence` is optional.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from core.config import load_settings
from core.db.models import AuditEntry, Booking, CallbackInbox, Outbox, PaymentAttempt, Reminder
from core.domain.states import FAILED_PAYMENT_STATUSES, BookingStatus, PaymentStatus
from core.runtime import build_runtime
from core.services.payments.secrets import callback_secret_hash

SENT_STATES = ("SENT", "DELIVERED")
UNKNOWN_PUSH_REASON = "push outcome unknown ("  # initiate._mark_unclear: read time-out or 5xx answer
_LIVE = {PaymentStatus.QUEUED, PaymentStatus.AWAITING_CUSTOMER, PaymentStatus.UNCLEAR}


@dataclass
class Evidence:
    """What the stand-ins saw (absent in a plain database check)."""

    secret_key: str
    callbacks: list[dict[str, Any]] = field(default_factory=list)  # Daraja stand-in log entries
    push_urls: list[str] = field(default_factory=list)  # CallBackURL of every processed push
    sms_to: Counter[str] = field(default_factory=Counter)  # recipient digits -> SMS accepted
    sms_ids: set[str] = field(default_factory=set)
    mail_to: Counter[str] = field(default_factory=Counter)  # address (lower case) -> e-mails
    telegram_sent: int | None = None  # None: Telegram not observed by the run


async def check_database(url: str, evidence: Evidence | None = None) -> tuple[list[str], dict[str, Any]]:
    """Every check; returns (violations, counts)."""
    runtime = build_runtime(load_settings({"DATABASE_URL": url}))
    try:
        async with runtime.uow() as uow:
            s = uow.session
            bookings = list((await s.scalars(select(Booking))).all())
            attempts = list((await s.scalars(select(PaymentAttempt))).all())
            inbox = list((await s.scalars(select(CallbackInbox))).all())
            outbox = list((await s.scalars(select(Outbox))).all())
            reminders = list((await s.scalars(select(Reminder))).all())
            audit = list(
                (await s.scalars(select(AuditEntry).where(AuditEntry.subject_type == "payment"))).all()
            )
    finally:
        await runtime.close()
    repeats = 0
    violations = check_bookings(bookings, attempts) + check_reminders(bookings, reminders)
    violations += check_outbox_settled(outbox) + check_inbox_settled(inbox)
    if evidence is not None:
        violations += check_callbacks(evidence, inbox)
        found, repeats = check_deliveries(evidence, outbox)
        violations += found
        violations += check_pushes(evidence, attempts, audit)
    counts = {
        "bookings": dict(Counter(b.status for b in bookings)),
        "attempts": dict(Counter(a.status for a in attempts)),
        "inbox_rows": len(inbox),
        "outbox_rows": dict(Counter(o.channel for o in outbox)),
        "reminders": len(reminders),
        "repeats_after_crash": repeats if evidence is not None else None,
    }
    return violations, counts


def check_bookings(bookings: Iterable[Booking], attempts: Iterable[PaymentAttempt]) -> list[str]:
    """Each booking ends CONFIRMED with one PAID attempt, APPROVED/EXPIRED with only failed
    ones, or with a NEEDS_REVIEW attempt and its reason; no double charge, no receipt twice."""
    by_booking: dict[int, list[PaymentAttempt]] = defaultdict(list)
    receipts: Counter[str] = Counter()
    for attempt in attempts:
        by_booking[attempt.booking_id].append(attempt)
        if attempt.mpesa_receipt:
            receipts[attempt.mpesa_receipt] += 1
    out = [f"receipt {r} recorded on {n} attempts" for r, n in receipts.items() if n > 1]
    for booking in bookings:
        own = by_booking.get(booking.id, [])
        states = [PaymentStatus(a.status) for a in own]
        paid = states.count(PaymentStatus.PAID)
        review = [a for a in own if a.status == PaymentStatus.NEEDS_REVIEW]
        where = f"booking {booking.id} ({booking.status}, attempts {sorted(states)})"
        if paid > 1:
            out.append(f"{where}: {paid} PAID attempts (double charge)")
        if any(s in _LIVE for s in states):
            out.append(f"{where}: an attempt is still live at the end")
        if any(not a.review_reason for a in review):
            out.append(f"{where}: NEEDS_REVIEW without a reason")
        if booking.status == BookingStatus.CONFIRMED:
            if paid != 1:
                out.append(f"{where}: CONFIRMED needs exactly one PAID attempt")
        elif booking.status in (BookingStatus.APPROVED, BookingStatus.EXPIRED):
            if not review and any(s not in FAILED_PAYMENT_STATUSES for s in states):
                out.append(f"{where}: unpaid booking with an attempt that did not fail")
        else:
            out.append(f"{where}: not an end state of the run")
    return out


def check_reminders(bookings: Iterable[Booking], reminders: Iterable[Reminder]) -> list[str]:
    """Reminders scheduled once per confirmed booking (per kind), none for other bookings."""
    kinds: dict[int, Counter[str]] = defaultdict(Counter)
    for reminder in reminders:
        kinds[reminder.booking_id][reminder.kind] += 1
    out = []
    for booking in bookings:
        seen = kinds.get(booking.id, Counter())
        if booking.status == BookingStatus.CONFIRMED and not seen:
            out.append(f"booking {booking.id}: CONFIRMED without reminders")
        if booking.status != BookingStatus.CONFIRMED and seen:
            out.append(f"booking {booking.id}: reminders for a {booking.status} booking")
        out += [f"booking {booking.id}: reminder {k} scheduled {n} times" for k, n in seen.items() if n > 1]
    return out


def check_outbox_settled(outbox: Iterable[Outbox]) -> list[str]:
    left = Counter(f"{o.channel}/{o.status}" for o in outbox if o.status not in SENT_STATES)
    return [f"outbox: {n} {what} rows left unsent" for what, n in sorted(left.items())]


def check_inbox_settled(inbox: Iterable[CallbackInbox]) -> list[str]:
    left = [row for row in inbox if row.processed_at is None]
    return [f"inbox: {len(left)} rows never settled ({left[0].provider})"] if left else []


def check_callbacks(evidence: Evidence, inbox: Iterable[CallbackInbox]) -> list[str]:
    """Every callback acknowledged (200) is in the inbox; every one answered 503 was accepted later."""
    stored = {row.provider_id.rsplit(":", 1)[0] for row in inbox if row.provider == "mpesa_stk"}
    accepted = {e["checkout_request_id"] for e in evidence.callbacks if e.get("status") == 200}
    refused = {e["checkout_request_id"] for e in evidence.callbacks if e.get("status") == 503}
    out = []
    if accepted - stored:
        out.append(f"{len(accepted - stored)} callback(s) acknowledged (200) but not in the inbox")
    if refused - accepted:
        out.append(f"{len(refused - accepted)} callback(s) answered 503 and never accepted on a retry")
    return out


def check_deliveries(evidence: Evidence, outbox: Iterable[Outbox]) -> tuple[list[str], int]:
    """Each outbox row sent at most once, except the documented repeat after a crash.

    The stand-ins may hold more messages for a recipient than rows were sent only where a row was
    claimed again after its lease ran out (``attempts`` > 1: the dispatcher's at-least-once
    guarantee, a crash between the provider's accept and the SENT mark); those are counted and
    returned, any other extra message is a violation. Returns (violations, repeats)."""
    rows = list(outbox)
    sent: dict[str, Counter[str]] = {"sms": Counter(), "email": Counter(), "telegram": Counter()}
    reclaimed: dict[str, Counter[str]] = {"sms": Counter(), "email": Counter(), "telegram": Counter()}
    for row in rows:
        if row.status in SENT_STATES and row.channel in sent:
            who = _recipient(row.channel, row.recipient)
            sent[row.channel][who] += 1
            reclaimed[row.channel][who] += max(0, row.attempts - 1)
    out, repeats = [], 0
    for channel, seen in (("sms", evidence.sms_to), ("email", evidence.mail_to)):
        for who, n in seen.items():
            extra = n - sent[channel][who]
            if extra > reclaimed[channel][who]:
                out.append(f"{channel}: {extra} more message(s) to one recipient than rows sent")
            elif extra > 0:
                repeats += extra
    for row in rows:
        if (
            row.channel == "sms"
            and row.status in SENT_STATES
            and row.provider_message_id not in evidence.sms_ids
        ):
            out.append(f"outbox {row.id}: SENT but Africa's Talking has no message {row.provider_message_id}")
    if evidence.telegram_sent is None and sent["telegram"]:
        out.append(f"telegram: {sum(sent['telegram'].values())} rows sent where the run cannot see them")
    return out, repeats


def check_pushes(
    evidence: Evidence, attempts: Iterable[PaymentAttempt], audit: Iterable[AuditEntry]
) -> list[str]:
    """Never re-pushed: at most one processed push per attempt, exactly one after an unknown outcome."""
    by_hash = Counter(
        callback_secret_hash(evidence.secret_key, url.rsplit("/", 1)[-1]) for url in evidence.push_urls
    )
    unknown = {
        int(e.subject_id or 0) for e in audit if UNKNOWN_PUSH_REASON in str(e.details.get("reason", ""))
    }
    out = []
    for attempt in attempts:
        pushes = by_hash.get(attempt.callback_secret_hash, 0)
        if pushes > 1:
            out.append(f"attempt {attempt.id}: {pushes} STK Pushes processed (re-pushed)")
        elif attempt.id in unknown and pushes != 1:
            out.append(f"attempt {attempt.id}: outcome unknown and {pushes} pushes reached Daraja")
    return out


def _recipient(channel: str, value: str) -> str:
    return value.lstrip("+") if channel == "sms" else value.lower()


# -- the log scan ------------------------------------------------------------------------------
_DIGIT_RUN = re.compile(r"\d{9,}")


def scan_logs(lines: Iterable[str], secrets: Iterable[str], phones: Iterable[str]) -> list[str]:
    """Log lines holding a secret, or a full phone number (also inside a longer digit run,
    e.g. a CheckoutRequestID, or in local 07… form). Returns one violation per kind and line."""
    secret_list = [s for s in secrets if s and len(s) >= 8]
    suffixes = {p[-9:] for p in phones}
    out = []
    for number, line in enumerate(lines, 1):
        out += [f"log line {number}: a secret/token ({s[:3]}…)" for s in secret_list if s in line]
        for run in _DIGIT_RUN.findall(line):
            if any(run[i : i + 9] in suffixes for i in range(len(run) - 8)):
                out.append(f"log line {number}: a full phone number")
                break
    return out
