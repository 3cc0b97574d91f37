"""The live payment-progress message (Properties 15, 16, 17, 18).

When the engine sends a reply tagged ``payment_progress:<attempt id>``, the message it
became is followed here: while the attempt is QUEUED / AWAITING_CUSTOMER / UNCLEAR the
message is edited at least every ``interval`` seconds (< 3 s) with the elapsed time and a
"typing…" chat action is kept up; when the payment service reports a change
(``runtime.wake(Wake.PAYMENTS)``, set by ``PaymentService.on_change`` and by settlement) the
status is read at once and the same message is edited to the result — paid with the
receipt, or the failure reason with "Retry payment" (``v1:pay:<booking id>``) and "Use
another number" (``v1:chphone:<booking id>``). That edit is the client's one failure
message: the outbox's failure notice, held a few seconds on Telegram, is taken over first
(:mod:`core.services.notifications.payment_failed`); if it went out already, the progress
message says so in a neutral line without buttons, and if the edit fails it is given back.
At the attempt's deadline (120 s) it says the payment is being checked, then keeps
watching (every ``slow_interval`` s and on every wake-up) for ``watch_after_deadline`` s.

Kept in memory: after a restart the message stays as it was (the outbox's notice, no
longer taken over by anyone, delivers the result as its own message). A failure's buttons
are taken off again when the booking is paid after all (``bot/retry_offers.py``). The
engine's text carries the TEST MODE marker; results written here add it for test attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from telegram import InlineKeyboardMarkup

from bot.delivery import ChatUnreachable, TelegramOut
from bot.render import escape, inline_keyboard
from bot.retry_offers import RetryOffers
from core.dialog import values
from core.dialog.messages import DEFAULT_LANGUAGE, label, price, say
from core.dialog.messages import reason as reason_in
from core.dialog.types import Option
from core.dialog.values import pay_value
from core.domain.states import PaymentStatus
from core.runtime import Runtime, Wake
from core.services.notifications import payment_failed
from core.services.payments.initiate import PaymentService, PaymentView

log = logging.getLogger(__name__)

PAYMENTS_WAKEUP = Wake.PAYMENTS
OUTBOX_WAKEUP = Wake.OUTBOX
WAITING = frozenset({PaymentStatus.QUEUED, PaymentStatus.AWAITING_CUSTOMER, PaymentStatus.UNCLEAR})
MAX_TRACKED = 2000
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


@dataclass
class _Followed:
    attempt_id: int
    chat_id: int
    message_id: int
    base_text: str
    options: tuple[Option, ...]
    poke: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    shown: str | None = None
    shown_at: float = 0.0
    typing_at: float = 0.0
    overdue_shown: bool = False
    gone: bool = False  # the message was deleted: results go in a new message
    lang: str = DEFAULT_LANGUAGE  # the chat's language (the engine's reply carried it)


class PaymentProgress:
    """Follows payment-progress messages and edits them until the attempt settles."""

    def __init__(
        self,
        runtime: Runtime,
        payments: PaymentService,
        out: TelegramOut,
        *,
        interval: float = 2.5,
        typing_every: float = 4.5,
        slow_interval: float = 10.0,
        watch_after_deadline: float = 600.0,
        min_edit_gap: float = 1.0,
    ) -> None:
        if interval >= 3.0:
            raise ValueError("interval must be under 3 s (Property 15)")
        self.runtime = runtime
        self.payments = payments
        self.out = out
        self.interval = interval
        self.typing_every = typing_every
        self.slow_interval = slow_interval
        self.watch_after_deadline = watch_after_deadline
        self.min_edit_gap = min(min_edit_gap, interval)
        self._followed: dict[int, _Followed] = {}
        self._listener: asyncio.Task[None] | None = None
        self._stopping = False
        # Failure messages whose "Retry payment" must go once the booking is paid.
        self._chat_lang: dict[int, str] = {}  # the language each followed chat was last written in
        self.retry_offers = RetryOffers(runtime, payments, out, self._result_html)

    def _result_html(self, view: PaymentView, chat_id: int) -> str:
        return escape(result_text(view, self._chat_lang.get(chat_id, DEFAULT_LANGUAGE))[0])

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Listen for payment wake-ups (call inside the running loop)."""
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="telegram-payment-progress")

    async def stop(self) -> None:
        self._stopping = True
        tasks = [t for t in (self._listener, *(f.task for f in self._followed.values())) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.retry_offers.stop()
        self._followed.clear()
        self._listener = None

    @property
    def followed(self) -> dict[int, tuple[int, int]]:
        """attempt id → (chat id, message id) of the messages being followed now."""
        return {a: (f.chat_id, f.message_id) for a, f in self._followed.items()}

    # -- API for the reply delivery ----------------------------------------------------------
    def track(
        self,
        attempt_id: int,
        chat_id: int,
        message_id: int,
        base_text: str,
        options: Sequence[Option] = (),
        lang: str = DEFAULT_LANGUAGE,
    ) -> None:
        """Follow ``message_id`` as the progress message of ``attempt_id`` (replacing an older one)."""
        if self._stopping:
            return
        if len(self._chat_lang) >= MAX_TRACKED and chat_id not in self._chat_lang:
            self._chat_lang.clear()  # bounded: a forgotten chat falls back to English
        self._chat_lang[chat_id] = lang
        current = self._followed.get(attempt_id)
        if current is not None and current.task is not None and not current.task.done():
            if current.message_id != message_id:
                old_chat, old_id = current.chat_id, current.message_id
                asyncio.get_running_loop().create_task(self._forget_message(old_chat, old_id))
            current.chat_id, current.message_id = chat_id, message_id
            current.base_text, current.options, current.lang = base_text, tuple(options), lang
            current.shown, current.overdue_shown = None, False
            current.poke.set()
            return
        if len(self._followed) >= MAX_TRACKED:
            log.warning("too many payment progress messages; not following", extra={"attempt": attempt_id})
            return
        entry = _Followed(attempt_id, chat_id, message_id, base_text, tuple(options), lang=lang)
        entry.shown_at = time.monotonic()  # the message was just sent with the engine's text
        self._followed[attempt_id] = entry
        entry.task = asyncio.get_running_loop().create_task(
            self._follow(entry), name=f"progress-{attempt_id}"
        )

    def pressed(self, chat_id: int, message_id: int) -> None:
        """A button of ``message_id`` was pressed and its keyboard removed: later edits keep it off."""
        for entry in self._followed.values():
            if (entry.chat_id, entry.message_id) == (chat_id, message_id):
                entry.options = ()

    def notify(self, attempt_id: int | None = None) -> None:
        """Re-read one attempt (or all) now; PaymentService.on_change may call this directly."""
        for entry in list(self._followed.values()):
            if attempt_id is None or entry.attempt_id == attempt_id:
                entry.poke.set()

    # -- internals ----------------------------------------------------------------------------
    async def _forget_message(self, chat_id: int, message_id: int) -> None:
        with contextlib.suppress(ChatUnreachable):
            await self.out.delete(chat_id, message_id)

    async def _listen(self) -> None:
        wake = self.runtime.wakeup(PAYMENTS_WAKEUP)
        while True:
            await wake.wait()
            wake.clear()
            self.notify()
            self.retry_offers.check_soon()

    async def _follow(self, entry: _Followed) -> None:
        errors = 0
        try:
            while True:
                entry.poke.clear()
                try:
                    view = await self.payments.status(entry.attempt_id)
                    errors = 0
                except Exception:
                    errors += 1
                    log.exception("payment status read failed", extra={"attempt": entry.attempt_id})
                    if errors >= 10:
                        return
                    await self._pause(entry, self.interval)
                    continue
                if view.status not in WAITING:
                    await self._show_result(entry, view)
                    return
                now = self.runtime.clock()
                if now < view.deadline_at:
                    elapsed = max(0, int((now - view.created_at).total_seconds()))
                    text = f"{entry.base_text}\n\n{waiting_line(view, elapsed, entry.lang)}"
                    await self._show(entry, escape(text), inline_keyboard(entry.options))
                    await self._keep_typing(entry)
                    await self._pause(entry, max(0.05, entry.shown_at + self.interval - time.monotonic()))
                    continue
                if not entry.overdue_shown:
                    await self._show(entry, escape(overdue_text(view, entry.lang)), None, force=True)
                    entry.overdue_shown = True
                if (now - view.deadline_at).total_seconds() > self.watch_after_deadline:
                    return
                await self._pause(entry, self.slow_interval)
        except ChatUnreachable:
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("payment progress follower failed", extra={"attempt": entry.attempt_id})
        finally:
            if self._followed.get(entry.attempt_id) is entry:
                del self._followed[entry.attempt_id]

    async def _pause(self, entry: _Followed, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(entry.poke.wait(), seconds)

    async def _keep_typing(self, entry: _Followed) -> None:
        if time.monotonic() - entry.typing_at >= self.typing_every:
            entry.typing_at = time.monotonic()
            await self.out.typing(entry.chat_id)

    async def _show(
        self, entry: _Followed, html: str, markup: InlineKeyboardMarkup | None, *, force: bool = False
    ) -> None:
        if html == entry.shown or entry.gone:
            return
        if not force and time.monotonic() - entry.shown_at < self.min_edit_gap:
            return  # wake-ups for other payments must not flood this chat with edits
        result = await self.out.edit(entry.chat_id, entry.message_id, html, markup)
        entry.shown_at = time.monotonic()  # also after a failure: no tight retry loop
        if result in ("edited", "unchanged"):
            entry.shown = html
        elif result == "gone":
            entry.gone = True

    async def _show_result(self, entry: _Followed, view: PaymentView) -> None:
        text, options = result_text(view, entry.lang)
        notice: payment_failed.Takeover = "none"
        if options:  # a failure: one message tells it (core/services/notifications/payment_failed.py)
            notice = await self._take_over_notice(view.attempt_id)
            if notice == "already_out":
                text, options = told_elsewhere_text(view, entry.lang), ()
        html, markup = escape(text), inline_keyboard(options)
        result = "gone" if entry.gone else await self.out.edit(entry.chat_id, entry.message_id, html, markup)
        message_id: int | None = entry.message_id
        if result == "gone":  # the progress message was deleted: tell the result in a new one
            sent = await self.out.send(entry.chat_id, html, markup)
            message_id = sent.message_id if sent else None
            result = "edited" if sent else "failed"
        log.info("payment progress settled", extra={"attempt": entry.attempt_id, "status": str(view.status)})
        if result == "failed" and notice == "taken":
            await self._give_notice_back(view.attempt_id)  # the client must be told somewhere
        elif (options or notice == "already_out") and message_id is not None:
            # Remembered also when the notice carries the buttons: a late success clears it too.
            self.retry_offers.offered(view.attempt_id, view.booking_id, entry.chat_id, message_id)
        elif view.status == PaymentStatus.PAID:
            await self.retry_offers.booking_paid(view.booking_id)

    async def _take_over_notice(self, attempt_id: int) -> payment_failed.Takeover:
        try:
            async with self.runtime.uow() as uow:
                outcome = await payment_failed.take_over(uow.session, attempt_id, now=self.runtime.clock())
                await uow.commit()
            return outcome
        except Exception:  # the database is away: show the failure here; the notice may follow
            log.warning("could not take over the failure notice", extra={"attempt": attempt_id})
            return "none"

    async def _give_notice_back(self, attempt_id: int) -> None:
        try:
            async with self.runtime.uow() as uow:
                await payment_failed.give_back(uow.session, attempt_id, now=self.runtime.clock())
                await uow.commit()
        except Exception:
            log.exception("could not give the failure notice back", extra={"attempt": attempt_id})
            return
        self.runtime.wake(OUTBOX_WAKEUP)
