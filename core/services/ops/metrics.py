"""Operational counts for ``GET /metrics`` (Prometheus text format): states, backlogs, nothing personal."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import AuditEntry, Booking, CallbackInbox, Outbox, PaymentAttempt, Reminder
from core.domain.states import BookingStatus, PaymentStatus
from core.runtime import Runtime
from core.services.notifications import reminders
from core.services.notifications.outbox_store import STATUSES as OUTBOX_STATUSES

REMINDER_STATUSES = (reminders.PENDING, reminders.SENT, reminders.SKIPPED)


@dataclass(frozen=True)
class Metrics:
    """One snapshot of the counts; every status of each state machine is present (0 when none)."""

    payment_attempts: dict[str, int]
    bookings: dict[str, int]
    outbox: dict[str, int]
    reminders: dict[str, int]
    callbacks_unsettled: int
    audit_entries: int
    components: dict[str, str] = field(default_factory=dict)


async def _by_status(session: AsyncSession, column: object, known: Iterable[str]) -> dict[str, int]:
    rows = (await session.execute(select(column, func.count()).group_by(column))).all()  # type: ignore[call-overload]
    counts = dict.fromkeys(known, 0)
    counts.update({str(status): int(n) for status, n in rows})
    return counts


async def collect(runtime: Runtime) -> Metrics:
    """Read the counts in one short read-only unit of work."""
    async with runtime.uow() as uow:
        session = uow.session
        return Metrics(
            payment_attempts=await _by_status(
                session, PaymentAttempt.status, (s.value for s in PaymentStatus)
            ),
            bookings=await _by_status(session, Booking.status, (s.value for s in BookingStatus)),
            outbox=await _by_status(session, Outbox.status, OUTBOX_STATUSES),
            reminders=await _by_status(session, Reminder.status, REMINDER_STATUSES),
            callbacks_unsettled=int(
                await session.scalar(
                    select(func.count()).select_from(CallbackInbox).where(CallbackInbox.processed_at.is_(None))
                )
                or 0
            ),
            audit_entries=int(await session.scalar(select(func.count()).select_from(AuditEntry)) or 0),
            components=dict(runtime.components),
        )


def _family(name: str, help_text: str, label: str | None, values: Mapping[str, int | float]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    if label is None:
        lines.append(f"{name} {values['']}")
    else:
        lines.extend(f'{name}{{{label}="{key}"}} {value}' for key, value in sorted(values.items()))
    return lines


def render_prometheus(metrics: Metrics) -> str:
    """The snapshot in the Prometheus text exposition format (version 0.0.4)."""
    up = {name: 1 if state in ("ok", "disabled") else 0 for name, state in metrics.components.items()}
    lines = [
        *_family(
            "smiling_steps_payment_attempts", "Payment attempts by status.", "status",
            metrics.payment_attempts,
        ),
        *_family("smiling_steps_bookings", "Bookings by status.", "status", metrics.bookings),
        *_family("smiling_steps_outbox_messages", "Outbox messages by status.", "status", metrics.outbox),
        *_family("smiling_steps_reminders", "Session reminders by status.", "status", metrics.reminders),
        *_family(
            "smiling_steps_callbacks_unsettled",
            "Stored M-Pesa callbacks not yet settled.",
            None,
            {"": metrics.callbacks_unsettled},
        ),
        *_family(
            "smiling_steps_audit_entries", "Entries in the audit trail.", None, {"": metrics.audit_entries}
        ),
        *_family("smiling_steps_component_up", "1 when a started component is up.", "component", up),
    ]
    return "\n".join(lines) + "\n"
