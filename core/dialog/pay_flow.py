"""Paying an APPROVED booking with M-Pesa: choose the phone, push, "check your phone".

Properties: 5 (only APPROVED bookings), 7/9 (phone validation and the error naming the
accepted formats), 11 ("check your phone", tagged ``payment_progress:<attempt id>`` so the
Telegram adapter can edit it as the payment progresses), 27/29/31 (a failed payment's
retry pushes again at once to the last number and offers another number), 55 (M-Pesa
unavailable: retried after 30 s), 78 (TEST MODE on every payment message), 79 (the
sandbox test number offered as a one-tap choice). DESIGN §4: after a failure the client may
retry or use another number; a number typed (or a contact shared) outside the phone step by a
client with one payable booking pays it (confirmed when it is not the last number used), and
the typed PAY after an earlier attempt offers the same number or another one.
"""

from __future__ import annotations

import re

from core.dialog import messages, values
from core.dialog.turn import PAY_NUMBER, PHONE, PROMPT, Outcome, Turn
from core.dialog.types import Option, Reply
from core.domain.phone import InvalidPhoneNumber, is_probably_safaricom, mask_phone, normalise_phone
from core.domain.states import LIVE_PAYMENT_STATUSES, BookingStatus, PaymentStatus
from core.services.booking.queries import client_booking, last_payment_phone, payable_bookings
from core.services.booking.types import BookingView
from core.services.payments.initiate import RETRY_UNAVAILABLE_AFTER, PaymentRefused, PaymentView

SANDBOX_TEST_MSISDN = "254708374149"  # Safaricom's published sandbox test number
MAX_PAYABLE_SHOWN = 5
_PHONE_LIKE = re.compile(r"^\+?\d[\d\s().-]{7,18}$")  # looks like a number, not a word or a choice


def progress_tag(attempt_id: int) -> str:
    return f"payment_progress:{attempt_id}"


async def start(turn: Turn, booking_id: int | None, *, offer_choice: bool = False) -> Outcome:
    """PAY / "Pay with M-Pesa" / "Retry payment": pick the booking, then the phone or push.

    ``offer_choice`` (the typed PAY / /pay): after an earlier attempt, offer the same number or
    another one instead of pushing at once (a button's "Retry payment" pushes at once).
    """
    client = await turn.client()
    if booking_id is None:
        payable = await payable_bookings(turn.runtime, client.id)
        if not payable:
            return turn.idle(_paid_reply(turn, "nothing_to_pay"))
        if len(payable) > 1:
            options = tuple(
                Option(
                    turn.say(
                        "pay_which_line",
                        reference=b.reference,
                        when=turn.when(b.starts_at),
                        price=turn.price(b.price_kes),
                    ),
                    values.action(values.PAY, b.id),
                )
                for b in payable[:MAX_PAYABLE_SHOWN]
            )
            return turn.idle(Reply(text=turn.paymark(turn.say("choose_booking_to_pay")), options=options))
        booking: BookingView | None = payable[0]
    else:
        booking = await client_booking(turn.runtime, client.id, booking_id)
    blocked = await _not_now(turn, booking)
    if blocked is not None:
        return turn.idle(blocked)
    assert booking is not None
    last = await last_payment_phone(turn.runtime, client_id=client.id, booking_id=booking.id)
    if last and offer_choice:
        return turn.idle(_which_number(turn, booking, last))
    if last:  # a retry: push again at once to the same number (Property 29)
        return _push(turn, booking, last, retry=True)
    return await _ask_phone(turn, booking)


async def typed_number(turn: Turn, raw: str) -> Outcome | None:
    """A number typed (or a contact shared) outside the phone step: "pay with this number".

    Only for a client with exactly one payable booking; None (not a payment) otherwise.
    A number other than the one of the client's last payment is confirmed first.
    """
    if not _PHONE_LIKE.match(raw.strip()):
        return None
    try:
        msisdn = normalise_phone(raw)
    except InvalidPhoneNumber:
        return None
    if await turn.therapist() is not None:
        return None
    client = await turn.client()
    payable = await payable_bookings(turn.runtime, client.id)
    if len(payable) != 1:
        return None
    booking = payable[0]
    blocked = await _not_now(turn, booking)
    if blocked is not None:
        return turn.idle(blocked)
    last = await last_payment_phone(turn.runtime, client_id=client.id)
    if last is None or last == msisdn:
        return _push(turn, booking, msisdn)
    shown = messages.display_phone(msisdn)
    text = turn.say(
        "pay_confirm_number",
        price=turn.price(booking.price_kes),
        reference=booking.reference,
        phone=shown,
        last=messages.display_phone(last),
    )
    choices = [
        (turn.say("pay_from_number", phone=shown), values.PAY_NUMBER, "yes"),
        (turn.label("dont_pay"), values.PAY_NUMBER, "no"),
    ]
    data = {"booking_id": booking.id, "msisdn": msisdn}
    return turn.menu(PAY_NUMBER, turn.paymark(text), choices, data=data)


async def on_choice(turn: Turn, choice: values.Choice) -> Outcome | None:
    """The answer to "pay from this number?"; None when the choice is not one of this step."""
    if choice.kind != values.PAY_NUMBER or turn.step != PAY_NUMBER or choice.arg not in ("yes", "no"):
        return None
    if choice.arg == "no":
        return turn.idle(_paid_reply(turn, "pay_number_declined"))
    client = await turn.client()
    booking = await client_booking(turn.runtime, client.id, int(turn.data.get("booking_id") or 0))
    blocked = await _not_now(turn, booking)
    if blocked is not None:
        return turn.idle(blocked)
    assert booking is not None
    try:
        msisdn = normalise_phone(str(turn.data.get("msisdn") or ""))
    except InvalidPhoneNumber:
        return turn.idle(_paid_reply(turn, "invalid_phone", formats=messages.phone_formats(turn.lang)))
    return _push(turn, booking, msisdn)


async def change_phone(turn: Turn, booking_id: int | None) -> Outcome:
    """ "Use another number": ask for a phone (unless a prompt is still open on the old one)."""
    client = await turn.client()
    booking = await client_booking(turn.runtime, client.id, booking_id) if booking_id else None
    refusal = _refusal(turn, booking)
    if refusal is not None:
        return turn.idle(refusal)
    assert booking is not None
    if booking.payment_status in LIVE_PAYMENT_STATUSES:
        view = await turn.payments.latest_for_booking(booking.id)
        phone = view.phone_masked if view else ""
        text = turn.paymark(turn.say("pay_change_live", phone=phone))
        again = Option(turn.label("change_phone"), values.action(values.CHANGE_PHONE, booking.id))
        return turn.idle(Reply(text=text, options=(again,)))
    return await _ask_phone(turn, booking)


async def on_phone(turn: Turn, raw: str) -> Outcome:
    """A number typed, shared or picked at the phone step."""
    try:
        msisdn = normalise_phone(raw)
    except InvalidPhoneNumber:
        invalid = turn.say("invalid_phone", formats=messages.phone_formats(turn.lang))
        return turn.reprompt(invalid, compact=True, payment=True)
    client = await turn.client()
    booking = await client_booking(turn.runtime, client.id, int(turn.data.get("booking_id") or 0))
    refusal = _refusal(turn, booking)
    if refusal is not None:
        return turn.idle(refusal)
    assert booking is not None
    return _push(turn, booking, msisdn)


# -- internals ------------------------------------------------------------------------------------


async def _not_now(turn: Turn, booking: BookingView | None) -> Reply | None:
    """Why no prompt may be pushed for ``booking`` now, or None when one may."""
    refusal = _refusal(turn, booking)
    if refusal is not None or booking is None:
        return refusal
    if booking.payment_status in LIVE_PAYMENT_STATUSES:
        return await _already_waiting(turn, booking)
    if booking.payment_status is PaymentStatus.NEEDS_REVIEW:  # money may have arrived: never push again
        return _paid_reply(turn, "pay_state_NEEDS_REVIEW")
    return None


def _which_number(turn: Turn, booking: BookingView, last: str) -> Reply:
    """Same number or another one (the typed PAY after an earlier attempt)."""
    text = turn.say("pay_which_number", price=turn.price(booking.price_kes), reference=booking.reference)
    same = turn.say("pay_same_number", phone=messages.display_phone(last))
    options = (
        Option(same, values.action(values.PAY, booking.id)),
        Option(turn.label("change_phone"), values.action(values.CHANGE_PHONE, booking.id)),
    )
    return Reply(text=turn.paymark(text), options=options)


async def _ask_phone(turn: Turn, booking: BookingView) -> Outcome:
    client = await turn.client()
    suggestions: list[str] = []
    for candidate in (client.phone, await last_payment_phone(turn.runtime, client_id=client.id)):
        if candidate and candidate not in suggestions:
            suggestions.append(candidate)
    if turn.test_mode and SANDBOX_TEST_MSISDN not in suggestions:
        suggestions.append(SANDBOX_TEST_MSISDN)  # Property 79
    text = turn.say("ask_phone", price=turn.price(booking.price_kes), reference=booking.reference)
    if turn.test_mode and not turn.sms:
        text = f"{text}\n{turn.say('test_number_hint')}"
    reply = Reply(
        text=turn.paymark(text), ask_phone=True, phone_suggestions=tuple(suggestions), says_typing=True
    )
    return Outcome([reply], PHONE, {"booking_id": booking.id, PROMPT: reply.text})


def _push(turn: Turn, booking: BookingView, msisdn: str, *, retry: bool = False) -> Outcome:
    """Claim the turn (idle), then start the payment."""

    async def effect() -> Outcome:
        client = await turn.client()
        before: list[Reply] = []
        if not is_probably_safaricom(msisdn):
            before.append(Reply(text=turn.paymark(turn.say("not_safaricom", phone=mask_phone(msisdn)))))
        try:
            view = await turn.payments.initiate_payment(booking.id, client.id, msisdn)
        except PaymentRefused as exc:
            return turn.idle(*before, await _refused(turn, booking, exc))
        except InvalidPhoneNumber:
            return turn.idle(
                Reply(text=turn.paymark(turn.say("invalid_phone", formats=messages.phone_formats(turn.lang))))
            )
        return turn.idle(*before, *_progress(turn, booking, view, msisdn, retry=retry))

    return Outcome([], "idle", {}, effect=effect)


def _progress(
    turn: Turn, booking: BookingView, view: PaymentView, msisdn: str, *, retry: bool
) -> list[Reply]:
    shown = messages.display_phone(msisdn)
    tag = progress_tag(view.attempt_id)
    price = turn.price(view.amount_kes)
    retry_option = (  # a failure offers both (DESIGN §4)
        Option(turn.label("retry"), values.action(values.PAY, booking.id)),
        Option(turn.label("change_phone"), values.action(values.CHANGE_PHONE, booking.id)),
    )
    if view.reused:
        return [
            Reply(
                text=turn.paymark(
                    turn.say("already_waiting", reference=booking.reference, phone=view.phone_masked)
                ),
                tag=tag,
            )
        ]
    status = view.status
    if status is PaymentStatus.AWAITING_CUSTOMER:
        text = turn.say("check_phone", price=price, reference=booking.reference, phone=shown)
        if retry:
            text = f"{turn.say('retrying', phone=shown)}\n{text}"
        options = (
            (Option(turn.label("change_phone"), values.action(values.CHANGE_PHONE, booking.id)),)
            if retry
            else ()
        )
        return [Reply(text=turn.paymark(text), options=options, tag=tag)]
    if status is PaymentStatus.QUEUED:
        seconds = int(RETRY_UNAVAILABLE_AFTER.total_seconds())
        return [Reply(text=turn.paymark(turn.say("pay_queued", seconds=seconds)), tag=tag)]
    if status is PaymentStatus.UNCLEAR:
        return [Reply(text=turn.paymark(turn.say("pay_unclear", phone=shown)), tag=tag)]
    if status is PaymentStatus.PAID:
        return [Reply(text=turn.paymark(turn.say("pay_already_paid", reference=booking.reference)), tag=tag)]
    if status is PaymentStatus.FAILED:
        return [Reply(text=turn.paymark(turn.say("pay_failed_now")), options=retry_option, tag=tag)]
    key = f"pay_state_{status.value}"
    return [Reply(text=turn.paymark(turn.say(key)), options=retry_option, tag=tag)]


async def _already_waiting(turn: Turn, booking: BookingView) -> Reply:
    view = await turn.payments.latest_for_booking(booking.id)
    phone = view.phone_masked if view else ""
    tag = progress_tag(view.attempt_id) if view else None
    return Reply(
        text=turn.paymark(turn.say("already_waiting", reference=booking.reference, phone=phone)), tag=tag
    )


def _refusal(turn: Turn, booking: BookingView | None) -> Reply | None:
    """Why this booking cannot be paid now (Property 5), or None when it can."""
    if booking is None:
        return _paid_reply(turn, "pay_not_found")
    status = booking.status
    if status in (BookingStatus.CONFIRMED, BookingStatus.COMPLETED):
        return _paid_reply(turn, "pay_already_paid", reference=booking.reference)
    if status is BookingStatus.PENDING_APPROVAL:
        return _paid_reply(turn, "pay_not_approved", reference=booking.reference)
    if status is not BookingStatus.APPROVED:
        return _paid_reply(turn, "pay_not_payable", reference=booking.reference)
    return None


async def _refused(turn: Turn, booking: BookingView, exc: PaymentRefused) -> Reply:
    retry = (Option(turn.label("retry"), values.action(values.PAY, booking.id)),)
    if exc.code == "not_approved":
        client = await turn.client()
        fresh = await client_booking(turn.runtime, client.id, booking.id)
        return _refusal(turn, fresh) or _paid_reply(turn, "pay_not_payable", reference=booking.reference)
    if exc.code == "already_paid":
        return _paid_reply(turn, "pay_already_paid", reference=booking.reference)
    if exc.code == "too_late":
        return _paid_reply(turn, "pay_not_payable", reference=booking.reference)
    if exc.code == "not_found":
        return _paid_reply(turn, "pay_not_found")
    if exc.code == "busy":
        return _paid_reply(turn, "pay_busy")
    return Reply(text=turn.paymark(turn.say("pay_unavailable")), options=retry)


def _paid_reply(turn: Turn, key: str, **fields: object) -> Reply:
    return Reply(text=turn.paymark(turn.say(key, **fields)))
