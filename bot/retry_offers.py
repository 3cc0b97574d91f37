""""Retry payment" buttons that no longer apply are taken off once the booking is paid.

Two kinds of Telegram message offer "Retry payment" (``v1:pay:<booking id>``): the progress
message edited to a failure (``bot/progress.py`` records each one here) and the outbox's
"payment not completed" notice (``payment_failed_client``; its Telegram message id is the
outbox row's ``provider_message_id``). When a failed attempt later succeeds (a late success
after CANCELLED), or another attempt pays the booking, both lose the button: the progress
message of the attempt that succeeded is edited to its result, every other message keeps its
text and loses its keyboard.

Offers are kept in the database (``telegram_progress`` rows in phase ``offered``, for
``OFFER_WATCH_S``; ``bot/progress_store.py``), so a restarted worker, or another worker, still
withdraws them; the one process whose conditional delete removed an offer edits the message.
This process also keeps the offers it made in memory (:attr:`RetryOffers.offers`, at most
``MAX_OFFERS``) for inspection. A press on an old button the service no longer knows of still
gets the dialog's safe "already paid" answer (``core/dialog/pay_flow.py``) and starts nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from bot import progress_store as store
from bot.delivery import ChatUnreachable, TelegramOut
from core.domain.states import PaymentStatus
from core.runtime import Runtime
from core.services.notifications.outbox_store import sent_telegram_messages
from core.services.payments.initiate import PaymentService, PaymentView

log = logging.getLogger(__name__)

MAX_OFFERS = 2000
OFFER_WATCH_S = 24 * 3600.0  # late successes come within minutes; a day is generous
FAILED_NOTICE_TEMPLATE = "payment_failed_client"
SETTLED_FOR_GOOD = frozenset({PaymentStatus.PAID, PaymentStatus.NEEDS_REVIEW})


@dataclass(frozen=True)
class RetryOffer:
    attempt_id: int
    booking_id: int
    chat_id: int
    message_id: int
    offered_at: float  # time.monotonic()


class RetryOffers:
    """Remembers progress messages showing "Retry payment" and withdraws buttons once paid."""

    def __init__(
        self,
        runtime: Runtime,
        payments: PaymentService,
        out: TelegramOut,
        result_html: Callable[[PaymentView, int], str],  # (view, chat id): in that chat's language
        *,
        watch_s: float = OFFER_WATCH_S,
        limit: int = MAX_OFFERS,
    ) -> None:
        self.runtime, self.payments, self.out = runtime, payments, out
        self._result_html = result_html
        self._watch_s, self._limit = watch_s, limit
        self._offers: dict[tuple[int, int], RetryOffer] = {}
        self._withdrawn: deque[tuple[int, int]] = deque(maxlen=limit)  # notices already cleared
        self._task: asyncio.Task[None] | None = None
        self._again = False
        # Whether the table may hold offers: true at start (offers made before a restart) and
        # after each offer; a read that finds none clears it, so wake-ups cost no query then.
        self._maybe = True

    @property
    def offers(self) -> list[RetryOffer]:
        return list(self._offers.values())

    async def offered(self, attempt_id: int, booking_id: int, chat_id: int, message_id: int) -> None:
        """A progress message now shows a failure of ``attempt_id`` with a Retry button."""
        self._offers[(chat_id, message_id)] = RetryOffer(
            attempt_id, booking_id, chat_id, message_id, time.monotonic()
        )
        self._maybe = True
        while len(self._offers) > self._limit:
            del self._offers[next(iter(self._offers))]  # the oldest
        try:
            await store.offer(self.runtime, attempt_id, booking_id, chat_id, message_id)
        except Exception:  # the database is away: a press on the button still gets the safe answer
            log.warning("could not store a retry offer", extra={"attempt": attempt_id})
            return
        # A late success settled between the failure edit and this commit woke a check that
        # could not see the offer yet (and no wake-up follows): look once more, now it is stored.
        self.check_soon(anyway=True)

    def check_soon(self, *, anyway: bool = False) -> None:
        """Re-read the offered attempts (a payment changed somewhere); coalesces bursts.

        ``anyway`` also looks when this process saw no offers (another process may have made some).
        """
        if not (self._maybe or anyway):
            return
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._check_loop(), name="retry-offers")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def booking_paid(self, booking_id: int) -> None:
        """Take "Retry payment" off every message about ``booking_id`` that still shows it."""
        for key, offer in list(self._offers.items()):
            if offer.booking_id == booking_id:
                del self._offers[key]
        try:
            for chat_id, message_id in await store.take_offers_of_booking(self.runtime, booking_id):
                await self._remove_buttons(chat_id, message_id)
            async with self.runtime.uow() as uow:
                notices = await sent_telegram_messages(
                    uow.session, template=FAILED_NOTICE_TEMPLATE, booking_id=booking_id
                )
        except Exception:  # the database is away: a press still gets the safe answer
            log.warning("could not withdraw the retry offers", extra={"booking": booking_id})
            return
        for chat_id, message_id in notices:
            if (chat_id, message_id) not in self._withdrawn:
                self._withdrawn.append((chat_id, message_id))
                await self._remove_buttons(chat_id, message_id)

    # -- internals ----------------------------------------------------------------------------
    async def _check_loop(self) -> None:
        self._again = True
        while self._again:
            self._again = False
            await self._check()

    async def _check(self) -> None:
        now = time.monotonic()
        for key, mine in list(self._offers.items()):
            if now - mine.offered_at > self._watch_s:
                self._offers.pop(key, None)
        try:
            since = self.runtime.clock() - timedelta(seconds=self._watch_s)
            standing = await store.offers(self.runtime, since=since)
            self._maybe = bool(standing)
        except Exception:
            log.warning("could not read the retry offers")
            return
        for offer in standing:
            try:
                view = await self.payments.status(offer.attempt_id)
            except Exception:
                log.warning("payment status read failed", extra={"attempt": offer.attempt_id})
                continue
            if view.status not in SETTLED_FOR_GOOD:
                continue
            if not await store.take_offer(self.runtime, offer.attempt_id):
                continue  # another process withdrew it first
            self._offers.pop((offer.chat_id, offer.message_id), None)
            # The attempt this message failed for has a final result after all: show it here.
            with contextlib.suppress(ChatUnreachable):
                html = self._result_html(view, offer.chat_id)
                await self.out.edit(offer.chat_id, offer.message_id, html, None)
            log.info("retry offer withdrawn", extra={"attempt": offer.attempt_id, "status": str(view.status)})
            if view.status == PaymentStatus.PAID:
                await self.booking_paid(view.booking_id)

    async def _remove_buttons(self, chat_id: int, message_id: int) -> None:
        with contextlib.suppress(ChatUnreachable):
            await self.out.remove_buttons(chat_id, message_id)
