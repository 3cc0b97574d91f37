"""What the payment-progress message says: the waiting line, the result, the failure's buttons.

Every sentence comes from the catalogue (core/dialog/messages.py, "tg_progress_*"); results
written here add the TEST MODE marker for test attempts.
"""

from __future__ import annotations

from core.dialog import values
from core.dialog.messages import label, price, say
from core.dialog.types import Option
from core.dialog.values import pay_value
from core.domain.states import PaymentStatus
from core.services.payments.initiate import PaymentView

# Every sentence shown here comes from the catalogue (core/dialog/messages.py, "tg_progress_*").
_WAITING_KEYS: dict[PaymentStatus, str] = {
    PaymentStatus.QUEUED: "tg_progress_queued",
    PaymentStatus.UNCLEAR: "tg_progress_unclear",
}


def mode_marker() -> str:
    """The TEST MODE marker as a line of its own (the catalogue's ``test_mark``)."""
    return say("test_mark").strip()


def _marked(view: PaymentView, text: str) -> str:
    return f"{mode_marker()}\n{text}" if view.test_mode else text


def waiting_line(view: PaymentView, elapsed: int) -> str:
    """The status line under the engine's text while we wait."""
    return say(_WAITING_KEYS.get(view.status, "tg_progress_waiting"), seconds=elapsed)


def result_text(view: PaymentView) -> tuple[str, tuple[Option, ...]]:
    """Plain text and options for a settled attempt."""
    if view.status == PaymentStatus.PAID:
        amount = price(view.amount_kes)
        if view.receipt:
            text = say("tg_progress_paid", price=amount, receipt=view.receipt)
        else:
            text = say("tg_progress_paid_no_receipt", price=amount)
        return _marked(view, text), ()
    if view.status == PaymentStatus.NEEDS_REVIEW:
        return _marked(view, say("tg_progress_needs_review")), ()
    reason = view.client_message or say("tg_progress_failed_generic")
    return _marked(view, say("tg_progress_failed", reason=reason)), failure_options(view.booking_id)


def failure_options(booking_id: int) -> tuple[Option, ...]:
    """What a failure offers (DESIGN §4): "Retry payment" and "Use another number"."""
    return (
        Option(label("retry"), pay_value(booking_id)),
        Option(label("change_phone"), values.action(values.CHANGE_PHONE, booking_id)),
    )


def told_elsewhere_text(view: PaymentView) -> str:
    """The progress message when the outbox's failure notice (with the buttons) went out first."""
    return _marked(view, say("tg_progress_failed_see_notice"))


def overdue_text(view: PaymentView) -> str:
    """The message once the attempt's deadline has passed without an answer."""
    return _marked(view, say("tg_progress_overdue"))
