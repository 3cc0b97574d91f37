"""The client's "my sessions" view (status and payment status; Property 6) and cancelling.

Each card offers "Reschedule" too when the booking may be moved (core/dialog/reschedule_flow.py).

A client may cancel a booking that is waiting for approval or payment; a paid (CONFIRMED)
one only until ``CLIENT_CANCEL_WINDOW_HOURS`` before it starts (unset: never), and then
the practice arranges the refund (:func:`core.services.booking.lifecycle.client_cancel_refusal`).
"""

from __future__ import annotations

from core.dialog import reschedule_flow, values
from core.dialog.turn import CANCEL, Outcome, Turn
from core.dialog.types import Option, Reply
from core.domain.states import FAILED_PAYMENT_STATUSES, LIVE_PAYMENT_STATUSES, BookingStatus
from core.services.booking.lifecycle import cancel_booking, client_cancel_refusal
from core.services.booking.queries import client_booking, list_client_bookings
from core.services.booking.types import BookingError, BookingView

SHOWN = {"sms": 4, "telegram": 10}


async def my_sessions(turn: Turn) -> Outcome:
    """Each upcoming booking with its status; an APPROVED one offers "Pay with M-Pesa"."""
    client = await turn.client()
    bookings = await list_client_bookings(turn.runtime, client.id, limit=SHOWN.get(turn.channel, 10))
    if not bookings:
        return turn.main_menu(turn.say("my_none"))
    replies = [turn.reply("my_header")]
    for booking in bookings:
        replies.append(_card(turn, booking))
    return turn.idle(*replies)


def _card(turn: Turn, b: BookingView) -> Reply:
    status_key = f"status_{b.status.value}"
    status = turn.say(status_key, price=turn.price(b.price_kes), receipt=b.receipt or "-")
    options: list[Option] = []
    payment_message = False
    if b.status is BookingStatus.APPROVED:
        payment_message = True
        if b.payment_status is not None:
            status = f"{status} {turn.say(f'pay_state_{b.payment_status.value}')}"
        if b.payment_status in FAILED_PAYMENT_STATUSES:
            options.append(Option(turn.label("retry"), values.action(values.PAY, b.id)))
            options.append(Option(turn.label("change_phone"), values.action(values.CHANGE_PHONE, b.id)))
        elif b.payment_status is None:
            options.append(Option(turn.label("pay"), values.action(values.PAY, b.id)))
    if _refusal(turn, b) is None and b.payment_status not in LIVE_PAYMENT_STATUSES:
        options.append(Option(turn.label("cancel_booking"), values.action(values.CANCEL_BOOKING, b.id)))
    if reschedule_flow.can_move(turn, b):
        options.append(Option(turn.label("reschedule"), values.action(values.RESCHEDULE, b.id)))
    text = turn.say(
        "my_line",
        reference=b.reference,
        session_type=b.session_type_name,
        therapist=b.therapist_name,
        when=turn.when(b.starts_at),
        status=status,
    )
    if payment_message:
        text = turn.paymark(text)
    return Reply(text=text, options=tuple(options))


async def ask_cancel(turn: Turn, booking_id: int | None) -> Outcome:
    """ "Cancel booking": ask before cancelling."""
    client = await turn.client()
    booking = await client_booking(turn.runtime, client.id, booking_id) if booking_id else None
    if booking is None:
        return turn.idle(turn.reply("pay_not_found"))
    refusal = _refusal(turn, booking)
    if refusal is not None:
        return turn.idle(_refused(turn, refusal, booking.reference))
    when = turn.when(booking.starts_at)
    if booking.paid:
        question = turn.paymark(
            turn.say(
                "cancel_confirm_paid",
                reference=booking.reference,
                when=when,
                price=turn.price(booking.price_kes),
            )
        )
    else:
        question = turn.say("cancel_confirm", reference=booking.reference, when=when)
    return turn.menu(
        CANCEL,
        question,
        [
            (turn.label("yes_cancel"), values.CANCEL_YES, booking.id),
            (turn.label("keep"), values.CANCEL_NO, 0),
        ],
        data={"booking_id": booking.id},
        edit=True,
    )


def on_choice(turn: Turn, choice: values.Choice) -> Outcome | None:
    if turn.step != CANCEL:
        return None
    if choice.kind == values.CANCEL_NO:
        return turn.idle(turn.reply("cancel_kept"))
    if choice.kind != values.CANCEL_YES or choice.int_arg() != turn.data.get("booking_id"):
        return None
    booking_id = int(turn.data["booking_id"])

    async def effect() -> Outcome:
        client = await turn.client()
        try:
            booking = await cancel_booking(turn.runtime, booking_id=booking_id, client_id=client.id)
        except BookingError as exc:
            reference = exc.reference or ""
            if exc.code == "payment_in_progress":
                return turn.idle(turn.reply("cancel_payment_live", reference=reference))
            if exc.code == "not_found":
                return turn.idle(turn.reply("pay_not_found"))
            return turn.idle(_refused(turn, exc.detail, reference))
        if booking.paid:
            done = turn.say(
                "cancel_done_refund",
                reference=booking.reference,
                price=turn.price(booking.price_kes),
                receipt=booking.receipt or "-",
            )
            return turn.idle(Reply(text=turn.paymark(done)))
        return turn.idle(turn.reply("cancel_done", reference=booking.reference))

    return Outcome([], "idle", {}, effect=effect)


def _refusal(turn: Turn, booking: BookingView) -> str | None:
    """Why this client may not cancel ``booking`` now (None: they may)."""
    window = turn.runtime.settings.client_cancel_window
    return client_cancel_refusal(booking.status, booking.starts_at, now=turn.runtime.clock(), window=window)


def _refused(turn: Turn, refusal: str, reference: str) -> Reply:
    """The catalogue's answer to a refused cancellation (refusal codes of client_cancel_refusal)."""
    hours = turn.runtime.settings.client_cancel_window_hours
    if refusal == "paid":
        return turn.reply("cancel_paid_not_allowed", reference=reference)
    if refusal == "too_late" and hours:
        window = turn.say("one_hour") if hours == 1 else turn.say("hours", count=hours)
        return turn.reply("cancel_too_late", reference=reference, window=window)
    return turn.reply("cancel_not_allowed", reference=reference)
