"""What the payment-progress message says: the waiting line, the result, the failure's buttons.

Every sentence comes from the catalogue (core/dialog/messages.py, "tg_progress_*"); results
written here add the TEST MODE marker for test attempts.
"""

from __future__ import annotations

from core.dialog import values
from core.dialog.messages import DEFAULT_LANGUAGE, label, price, say
from core.dialog.messages import reason as reason_in
from core.dialog.types import Option
from core.dialog.values import pay_value
from core.domain.states import PaymentStatus
from core.services.payments.initiate import PaymentView

# Every sentence shown here comes from the catalogue (core/dialog/messages.py, "tg_progress_*").
_WAITING_KEYS: dict[PaymentStatus, str] = {
    PaymentStatus.QUEUED: "tg_progress_queued",
    PaymentStatus.UNCLEAR: "tg_progress_unclear",
}


def mode_marker(lang: str = DEFAULT_LANGUAGE) -> str:
    """The TEST MODE marker as a line of its own (the catalogue's ``test_mark``)."""
    return say("test_mark", lang=lang).strip()


def _marked(view: PaymentView, text: str, lang: str) -> str:
    return f"{mode_marker(lang)}\n{text}" if view.test_mode else text


def waiting_line(view: PaymentView, elapsed: int, lang: str = DEFAULT_LANGUAGE) -> str:
    """The status line under the engine's text while we wait."""
    return say(_WAITING_KEYS.get(view.status, "tg_progress_waiting"), lang=lang, seconds=elapsed)


def result_text(view: PaymentView, lang: str = DEFAULT_LANGUAGE) -> tuple[str, tuple[Option, ...]]:
    """Plain text and options for a settled attempt, in ``lang`` (the chat's language)."""
    if view.status == PaymentStatus.PAID:
        amount = price(view.amount_kes, lang)
        if view.receipt:
            text = say("tg_progress_paid", lang=lang, price=amount, receipt=view.receipt)
        else:
            text = say("tg_progress_paid_no_receipt", lang=lang, price=amount)
        return _marked(view, text, lang), ()
    if view.status == PaymentStatus.NEEDS_REVIEW:
        return _marked(view, say("tg_progress_needs_review", lang=lang), lang), ()
    reason = reason_in(view.client_message, lang) if view.client_message else None
    reason = reason or say("tg_progress_failed_generic", lang=lang)
    failed = say("tg_progress_failed", lang=lang, reason=reason)
    return _marked(view, failed, lang), failure_options(view.booking_id, lang)


def failure_options(booking_id: int, lang: str = DEFAULT_LANGUAGE) -> tuple[Option, ...]:
    """What a failure offers (DESIGN §4): "Retry payment" and "Use another number"."""
    return (
        Option(label("retry", lang), pay_value(booking_id)),
        Option(label("change_phone", lang), values.action(values.CHANGE_PHONE, booking_id)),
    )


def told_elsewhere_text(view: PaymentView, lang: str = DEFAULT_LANGUAGE) -> str:
    """The progress message when the outbox's failure notice (with the buttons) went out first."""
    return _marked(view, say("tg_progress_failed_see_notice", lang=lang), lang)


def overdue_text(view: PaymentView, lang: str = DEFAULT_LANGUAGE) -> str:
    """The message once the attempt's deadline has passed without an answer."""
    return _marked(view, say("tg_progress_overdue", lang=lang), lang)
