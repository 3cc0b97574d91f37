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

The map attempt → message lives in the database (``bot/progress_store.py``), so the result
edits the original message after a restart and from another process. Which process edits:
one that *follows* (``follow=True``: roles ``all`` and ``worker``), holding a short lease on the
row that it renews while it edits; a process that only records (the ``web`` role handling
Telegram's webhook) stores the row and wakes the followers, and a follower adopts rows nobody
holds, on every payments wake-up and every ``adopt_every`` seconds (a killed worker's messages
are adopted once its lease, ``lease_s``, runs out). A failure's buttons are taken off again
when the booking is paid after all (``bot/retry_offers.py``). The engine's text carries the
TEST MODE marker; results written here add it for test attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from telegram import InlineKeyboardMarkup

from bot import progress_store as store
from bot.delivery import ChatUnreachable, TelegramOut
from bot.progress_text import (
    failure_options,
    mode_marker,
    overdue_text,
    result_text,
    told_elsewhere_text,
    waiting_line,
)
from bot.render import escape, inline_keyboard
from bot.retry_offers import RetryOffers
from core.dialog.messages import DEFAULT_LANGUAGE
from core.dialog.types import Option
from core.domain.states import PaymentStatus
from core.runtime import Runtime, Wake
from core.services.notifications import payment_failed
from core.services.payments.initiate import PaymentService, PaymentView

log = logging.getLogger(__name__)
__all__ = [
    "PaymentProgress", "failure_options", "mode_marker", "overdue_text", "result_text",
    "told_elsewhere_text", "waiting_line",
]

PAYMENTS_WAKEUP = Wake.PAYMENTS
OUTBOX_WAKEUP = Wake.OUTBOX
OFFER_SWEEP_TICKS = 15  # × adopt_every (2 s): offers of other processes are looked at every 30 s
WAITING = frozenset({PaymentStatus.QUEUED, PaymentStatus.AWAITING_CUSTOMER, PaymentStatus.UNCLEAR})
MAX_TRACKED = 2000


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
    to_record: bool = False  # sent by this process: store it (and take the lease) first
    renewed_at: float = 0.0
    lang: str = DEFAULT_LANGUAGE  # the chat's language (the engine's reply carried it; stored with the row)


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
        follow: bool = True,
        lease_s: float = 10.0,
        adopt_every: float = 2.0,
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
        self.follow = follow
        self.owner = store.new_owner()
        self.lease = timedelta(seconds=lease_s)
        self.adopt_every = adopt_every
        self._followed: dict[int, _Followed] = {}
        self._listener: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        # Failure messages whose "Retry payment" must go once the booking is paid.
        self._chat_lang: dict[int, str] = {}  # the language each followed chat was last written in
        self.retry_offers = RetryOffers(runtime, payments, out, self._result_html)

    def _result_html(self, view: PaymentView, chat_id: int) -> str:
        return escape(result_text(view, self._chat_lang.get(chat_id, DEFAULT_LANGUAGE))[0])

    def _remember_lang(self, chat_id: int, lang: str) -> None:
        if len(self._chat_lang) >= MAX_TRACKED and chat_id not in self._chat_lang:
            self._chat_lang.clear()  # bounded: a forgotten chat falls back to English
        self._chat_lang[chat_id] = lang

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Listen for payment wake-ups and adopt unheld messages (call inside the running loop)."""
        if self._listener is None and self.follow:
            self._listener = asyncio.create_task(self._listen(), name="telegram-payment-progress")

    async def stop(self) -> None:
        self._stopping = True
        followed = list(self._followed.values())
        tasks = [t for t in (self._listener, *(f.task for f in followed), *self._side_tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.retry_offers.stop()
        for entry in followed:  # hand them on now rather than when the lease runs out
            with contextlib.suppress(Exception):
                await store.release(self.runtime, entry.attempt_id, self.owner)
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
        self._remember_lang(chat_id, lang)
        if not self.follow:  # record it for a follower in another process
            self._spawn(self._record_only(attempt_id, chat_id, message_id, base_text, tuple(options), lang))
            return
        current = self._followed.get(attempt_id)
        if current is not None and current.task is not None and not current.task.done():
            if current.message_id != message_id:
                old_chat, old_id = current.chat_id, current.message_id
                asyncio.get_running_loop().create_task(self._forget_message(old_chat, old_id))
            current.chat_id, current.message_id = chat_id, message_id
            current.base_text, current.options, current.lang = base_text, tuple(options), lang
            current.shown, current.overdue_shown = None, False
            current.to_record = True
            current.poke.set()
            return
        if len(self._followed) >= MAX_TRACKED:
            log.warning("too many payment progress messages; not following", extra={"attempt": attempt_id})
            return
        entry = _Followed(
            attempt_id, chat_id, message_id, base_text, tuple(options), to_record=True, lang=lang
        )
        entry.shown_at = time.monotonic()  # the message was just sent with the engine's text
        self._start_following(entry)

    def pressed(self, chat_id: int, message_id: int) -> None:
        """A button of ``message_id`` was pressed and its keyboard removed: later edits keep it off."""
        for entry in self._followed.values():
            if (entry.chat_id, entry.message_id) == (chat_id, message_id):
                entry.options = ()
        self._spawn(self._clear_options(chat_id, message_id))

    def notify(self, attempt_id: int | None = None) -> None:
        """Re-read one attempt (or all) now; PaymentService.on_change may call this directly."""
        for entry in list(self._followed.values()):
            if attempt_id is None or entry.attempt_id == attempt_id:
                entry.poke.set()

    # -- internals ----------------------------------------------------------------------------
    def _start_following(self, entry: _Followed) -> None:
        self._followed[entry.attempt_id] = entry
        entry.task = asyncio.get_running_loop().create_task(
            self._follow(entry), name=f"progress-{entry.attempt_id}"
        )

    def _spawn(self, work: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _record_only(
        self, attempt_id: int, chat_id: int, message_id: int, base_text: str, options: tuple[Option, ...],
        lang: str,
    ) -> None:
        try:
            previous = await store.record(
                self.runtime, attempt_id, chat_id, message_id, base_text,
                [(o.label, o.value) for o in options], owner=None, lease=self.lease, lang=lang,
            )
        except Exception:
            log.exception("could not record a payment progress message", extra={"attempt": attempt_id})
            return
        self.runtime.wake(PAYMENTS_WAKEUP)  # a follower (worker) adopts it now
        if previous is not None:
            await self._forget_message(*previous)

    async def _clear_options(self, chat_id: int, message_id: int) -> None:
        try:
            await store.clear_options(self.runtime, chat_id, message_id)
        except Exception:
            log.warning("could not record a pressed progress message", extra={"telegram_user": chat_id})

    async def _adopt(self) -> None:
        """Follow the messages nobody holds (recorded by a web process, or left by a dead worker)."""
        if self._stopping:
            return
        try:
            rows = await store.claim(self.runtime, self.owner, self.lease, exclude=set(self._followed))
        except Exception:
            log.warning("could not adopt payment progress messages")
            return
        for row in rows:
            if self._stopping or row.attempt_id in self._followed:
                continue
            options = tuple(Option(label_, value) for label_, value in row.options)
            entry = _Followed(
                row.attempt_id, row.chat_id, row.message_id, row.base_text, options, lang=row.lang
            )
            self._remember_lang(row.chat_id, row.lang)
            entry.renewed_at = time.monotonic()
            log.info("payment progress adopted", extra={"attempt": row.attempt_id})
            self._start_following(entry)

    async def _hold(self, entry: _Followed) -> bool:
        """Store a message this process sent, or renew the lease; False when another holds it now."""
        if entry.to_record:
            entry.to_record = False
            options = [(o.label, o.value) for o in entry.options]
            previous = await store.record(
                self.runtime, entry.attempt_id, entry.chat_id, entry.message_id, entry.base_text, options,
                owner=self.owner, lease=self.lease, lang=entry.lang,
            )
            entry.renewed_at = time.monotonic()
            if previous is not None and previous != (entry.chat_id, entry.message_id):
                self._spawn(self._forget_message(*previous))
            return True
        if time.monotonic() - entry.renewed_at < self.lease.total_seconds() / 3:
            return True
        row = await store.renew(self.runtime, entry.attempt_id, self.owner, self.lease)
        entry.renewed_at = time.monotonic()
        if row is None:
            return False
        if (row.chat_id, row.message_id) != (entry.chat_id, entry.message_id):  # moved by another process
            entry.chat_id, entry.message_id, entry.base_text = row.chat_id, row.message_id, row.base_text
            entry.shown, entry.gone = None, False
        entry.options = tuple(Option(label_, value) for label_, value in row.options)
        return True

    async def _forget_message(self, chat_id: int, message_id: int) -> None:
        with contextlib.suppress(ChatUnreachable):
            await self.out.delete(chat_id, message_id)

    async def _listen(self) -> None:
        wake = self.runtime.wakeup(PAYMENTS_WAKEUP)
        await self._adopt()  # messages followed before a restart, or recorded by a web process
        ticks = 0
        while True:
            woken = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.adopt_every)
                woken = True
            if woken:
                wake.clear()
                self.notify()
                self.retry_offers.check_soon()
            else:  # now and then, look for offers another (or a dead) process made
                ticks += 1
                if ticks % OFFER_SWEEP_TICKS == 0:
                    self.retry_offers.check_soon(anyway=True)
            await self._adopt()

    async def _follow(self, entry: _Followed) -> None:
        errors = 0
        try:
            while True:
                entry.poke.clear()
                try:
                    if not await self._hold(entry):
                        log.info("payment progress taken over elsewhere", extra={"attempt": entry.attempt_id})
                        return
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
                    await self._finish(entry.attempt_id)
                    return
                await self._pause(entry, self.slow_interval)
        except ChatUnreachable:
            await self._finish(entry.attempt_id)
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
            await self.retry_offers.offered(view.attempt_id, view.booking_id, entry.chat_id, message_id)
            return
        await self._finish(view.attempt_id)
        if view.status == PaymentStatus.PAID:
            await self.retry_offers.booking_paid(view.booking_id)

    async def _finish(self, attempt_id: int) -> None:
        try:
            await store.finish(self.runtime, attempt_id)
        except Exception:  # the row stays; its lease runs out and a follower finds it settled
            log.warning("could not forget a payment progress message", extra={"attempt": attempt_id})

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
