"""Africa's Talking SMS callbacks: inbound messages (the SMS conversation) and delivery reports.

``POST /hooks/sms/{AT_WEBHOOK_SECRET}/inbound`` (form fields ``from``, ``to``, ``text``,
``date``, ``id``, ``linkId``; optional ``networkCode``, ``keyword``):

1. wrong secret → 404 (constant-time compare);
2. bad form (not a form, missing ``from``/``id``, oversized) → 400 with the reason;
3. ``from`` that is not a Kenyan mobile number → 200, ignored (we cannot answer it);
4. de-duplicated on AT's message ``id`` (``callback_inbox``, provider ``at_sms``): a
   repeat → 200, nothing done;
5. the conversation engine answers; the replies become one SMS with numbered choices
   (:func:`core.dialog.sms.render_sms`), queued in the outbox (template ``chat_reply``)
   in the transaction that marks the inbound message processed; then the outbox is woken.

The answer is 200 as soon as the reply is queued or after :data:`REPLY_WAIT_S` seconds,
whichever is first (the turn then finishes in the background). Messages from one number
are handled one at a time, in arrival order, within a process. A message stored but never
answered (the process died mid-turn, possibly after the 200 went out, so Africa's Talking will
not send it again) is handled again by :meth:`SmsWebhook.sweep_lost` every
:data:`SWEEP_INTERVAL_S` seconds once it is :data:`STALE_AFTER` old (found by the chaos run).

``POST /hooks/sms/{secret}/delivery`` (``id``, ``status``, ``failureReason``…) records
the report on the SMS it is about. Nothing a caller sends yields a 5xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import zlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qsl

from aiohttp import web
from sqlalchemy import select, update

from core.db.models import INBOX_UNIQUE, CallbackInbox
from core.db.statements import insert_ignore
from core.db.uow import UnitOfWork
from core.dialog.engine import DialogEngine
from core.dialog.sms import CHAT_REPLY_TEMPLATE, ensure_chat_reply_template, render_sms
from core.dialog.types import Inbound
from core.domain.phone import InvalidPhoneNumber, mask_phone, normalise_phone
from core.runtime import Runtime, Wake
from core.services.notifications.notify import enqueue, record_delivery_report
from webhooks.request_body import BodyRejected, read_body
from webhooks.security_log import SECURITY_LOG, install_security_log
from webhooks.source_address import caller_address

log = logging.getLogger(__name__)

PROVIDER = "at_sms"
MAX_FORM_BYTES = 16 * 1024
MAX_TEXT_CHARS = 1000
MAX_ID_CHARS = 100
REPLY_WAIT_S = 2.0
STALE_AFTER = timedelta(seconds=60)  # an unprocessed inbound older than this was lost in a crash
MAX_TRIES = 3
SWEEP_INTERVAL_S = 15.0
SWEEP_BATCH = 50
_LOCK_STRIPES = 64


class BadForm(ValueError):
    """A callback body we cannot use; the message is returned with the status (400 unless said)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


@dataclass
class SmsWebhook:
    """The two AT routes, bound to a runtime, an engine and the path secret."""

    runtime: Runtime
    engine: DialogEngine | None  # may be set once the application has started (see setup_sms_routes)
    secret: str
    reply_wait_s: float = REPLY_WAIT_S
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _locks: list[asyncio.Lock] = field(default_factory=lambda: [asyncio.Lock() for _ in range(_LOCK_STRIPES)])

    # -- routes ----------------------------------------------------------------------------------

    async def inbound(self, request: web.Request) -> web.Response:
        self._check_secret(request)
        try:
            form = await _read_form(request)
            sender = _required(form, "from")
            message_id = _required(form, "id")
            if len(message_id) > MAX_ID_CHARS:
                raise BadForm(f"field 'id' is longer than {MAX_ID_CHARS} characters")
        except BadForm as exc:
            return web.Response(status=exc.status, text=f"bad request: {exc}")
        try:
            msisdn = normalise_phone(sender)
        except InvalidPhoneNumber:
            log.info("inbound SMS from a non-Kenyan number ignored", extra={"sms_id": message_id})
            return web.Response(text="ignored: not a Kenyan mobile number")
        if self.engine is None:  # not wired yet: AT retries later, nothing was stored
            log.error("inbound SMS before the conversation engine was set")
            return web.Response(status=503, text="not ready")
        text = (form.get("text") or "")[:MAX_TEXT_CHARS]
        link_id = (form.get("linkId") or "").strip()
        if not await self._claim(message_id, form):
            return web.Response(text="duplicate: already received")
        task = asyncio.create_task(
            self._process(msisdn, text, message_id, link_id), name=f"sms-in-{message_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await asyncio.wait({task}, timeout=self.reply_wait_s)
        return web.Response(text="OK")

    async def delivery(self, request: web.Request) -> web.Response:
        self._check_secret(request)
        try:
            form = await _read_form(request)
            message_id = _required(form, "id")
            status = _required(form, "status")
        except BadForm as exc:
            return web.Response(status=exc.status, text=f"bad request: {exc}")
        reason = (form.get("failureReason") or "").strip() or None
        async with self.runtime.uow() as uow:
            known = await record_delivery_report(
                uow.session,
                provider_message_id=message_id[:MAX_ID_CHARS],
                status=status[:40],
                failure_reason=reason[:200] if reason else None,
            )
            await uow.commit()
        if not known:
            log.info(
                "delivery report for an unknown SMS", extra={"provider_message_id": message_id[:MAX_ID_CHARS]}
            )
        return web.Response(text="OK")

    # -- internals ---------------------------------------------------------------------------------

    def _check_secret(self, request: web.Request) -> None:
        given = request.match_info.get("secret", "").encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(given, self.secret.encode()):
            request.app[SECURITY_LOG].warning(
                "unknown_sms_secret", "SMS callback with a wrong path secret", source=caller_address(request)
            )
            raise web.HTTPNotFound()

    async def _claim(self, message_id: str, form: Mapping[str, str]) -> bool:
        """Store the message in the inbox; False when it was seen before (and is not lost)."""
        now = self.runtime.clock()
        raw = json.dumps(dict(form), ensure_ascii=False)
        async with self.runtime.uow() as uow:
            session = uow.session
            stmt = (
                insert_ignore(session, CallbackInbox, unique=INBOX_UNIQUE)
                .values(provider=PROVIDER, provider_id=message_id, raw_body=raw, received_at=now, attempts=0)
                .returning(CallbackInbox.id)
            )
            if (await session.execute(stmt)).scalar_one_or_none() is not None:
                await uow.commit()
                return True
            row = await session.scalar(
                select(CallbackInbox).where(
                    CallbackInbox.provider == PROVIDER, CallbackInbox.provider_id == message_id
                )
            )
            if row is None or row.processed_at is not None:
                return False
            return await self._retake(uow, row.id, row.attempts, row.received_at, message_id)

    async def _retake(
        self, uow: UnitOfWork, row_id: int, attempts: int, received_at: datetime, message_id: str
    ) -> bool:
        """Claim a stored, unanswered message for another try (one process wins); commits."""
        if attempts >= MAX_TRIES or received_at > self.runtime.clock() - STALE_AFTER * (attempts + 1):
            return False  # given up on, or probably still being handled
        taken = await uow.session.execute(
            update(CallbackInbox)
            .where(
                CallbackInbox.id == row_id,
                CallbackInbox.processed_at.is_(None),
                CallbackInbox.attempts == attempts,
            )
            .values(attempts=attempts + 1)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            return False
        await uow.commit()
        log.warning("re-handling an inbound SMS that was never answered", extra={"sms_id": message_id})
        return True

    async def sweep_lost(self) -> int:
        """Handle again every inbound SMS stored but never answered; returns how many were taken."""
        if self.engine is None:
            return 0
        async with self.runtime.uow() as uow:
            rows = (
                await uow.session.execute(
                    select(CallbackInbox.id, CallbackInbox.provider_id, CallbackInbox.raw_body,
                           CallbackInbox.attempts, CallbackInbox.received_at)
                    .where(
                        CallbackInbox.provider == PROVIDER,
                        CallbackInbox.processed_at.is_(None),
                        CallbackInbox.attempts < MAX_TRIES,
                        CallbackInbox.received_at <= self.runtime.clock() - STALE_AFTER,
                    )
                    .order_by(CallbackInbox.id)
                    .limit(SWEEP_BATCH)
                )
            ).all()
        taken = 0
        for row in rows:
            form = _stored_form(row.raw_body)
            async with self.runtime.uow() as uow:
                if not await self._retake(uow, row.id, row.attempts, row.received_at, row.provider_id):
                    continue
            taken += 1
            try:
                msisdn = normalise_phone(form.get("from", ""))
            except InvalidPhoneNumber:
                continue
            text, link_id = form.get("text", "")[:MAX_TEXT_CHARS], form.get("linkId", "").strip()
            await self._process(msisdn, text, row.provider_id, link_id)
        return taken

    async def _process(self, msisdn: str, text: str, message_id: str, link_id: str) -> None:
        lock = self._locks[zlib.crc32(msisdn.encode()) % _LOCK_STRIPES]
        try:
            async with lock:
                assert self.engine is not None
                replies = await self.engine.handle(
                    Inbound(
                        channel="sms",
                        user_key=msisdn,
                        text=text,
                        extras={"sms_id": message_id, "link_id": link_id},
                    )
                )
                body = render_sms(replies)
                route: dict[str, object] = {"role": "sms_reply"}
                if link_id:
                    route["link_id"] = link_id
                async with self.runtime.uow() as uow:
                    await enqueue(
                        uow.session,
                        channel="sms",
                        recipient=msisdn,
                        template=CHAT_REPLY_TEMPLATE,
                        data={"text": body, "_route": route},
                        dedupe_key=f"sms:{message_id}:reply",
                    )
                    await uow.session.execute(
                        update(CallbackInbox)
                        .where(CallbackInbox.provider == PROVIDER, CallbackInbox.provider_id == message_id)
                        .values(processed_at=self.runtime.clock(), attempts=CallbackInbox.attempts + 1)
                        .execution_options(synchronize_session=False)
                    )
                    await uow.commit()
            self.runtime.wake(Wake.OUTBOX)
        except Exception as exc:
            log.error(
                "inbound SMS not answered",
                extra={"sms_id": message_id, "phone": mask_phone(msisdn), "error_type": type(exc).__name__},
                exc_info=True,
            )

    async def drain(self, within_s: float = 5.0) -> None:
        """Wait for turns still running (application shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=within_s)


async def _read_form(request: web.Request) -> Mapping[str, str]:
    """The whole form (capped at MAX_FORM_BYTES, read within the body time limit)."""
    try:
        if request.content_type == "application/x-www-form-urlencoded":
            body = await read_body(request, MAX_FORM_BYTES)
            pairs = parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
            return {key: value for key, value in pairs}
        if request.content_type == "multipart/form-data":
            body = await read_body(request, MAX_FORM_BYTES)
            return _multipart_fields(request.headers.get("Content-Type", ""), body)
    except BodyRejected as exc:
        raise BadForm(exc.reason, exc.status) from None
    except Exception:
        raise BadForm("the body is not a readable form") from None
    raise BadForm("expected an application/x-www-form-urlencoded form")


def _multipart_fields(content_type: str, body: bytes) -> dict[str, str]:
    """The text fields of a multipart/form-data body already read whole (files are ignored)."""
    head = b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n"
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart() or message.defects:
        raise BadForm("the body is not a readable form")
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and part.get_filename() is None and isinstance(payload, bytes):
            fields[name] = payload.decode(part.get_content_charset() or "utf-8", errors="replace")
    return fields


def _required(form: Mapping[str, str], name: str) -> str:
    value = (form.get(name) or "").strip()
    if not value:
        raise BadForm(f"missing field '{name}'")
    return value


SMS_WEBHOOK = web.AppKey("sms_webhook", SmsWebhook)


def _stored_form(raw: str) -> dict[str, str]:
    try:
        form = json.loads(raw)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in form.items()} if isinstance(form, dict) else {}


async def _sweep_forever(hook: SmsWebhook) -> None:
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_S)
        try:
            await hook.sweep_lost()
        except Exception as exc:  # the database may be down for a moment: try again next time
            log.warning("inbound SMS sweep failed", extra={"error_type": type(exc).__name__})


def setup_sms_routes(
    app: web.Application, runtime: Runtime, engine: DialogEngine | None, secret: str
) -> SmsWebhook:
    """Register ``POST /hooks/sms/{secret}/inbound`` and ``…/delivery``; returns the handler object.

    ``engine`` may be None when the PaymentService is only built at start-up: set
    ``app[SMS_WEBHOOK].engine`` there (until then inbound SMS get 503 and AT retries).
    """
    if not secret:
        raise ValueError("AT_WEBHOOK_SECRET must not be empty")
    ensure_chat_reply_template()
    hook = SmsWebhook(runtime, engine, secret)
    app[SMS_WEBHOOK] = hook
    install_security_log(app)
    app.router.add_post("/hooks/sms/{secret}/inbound", hook.inbound)
    app.router.add_post("/hooks/sms/{secret}/delivery", hook.delivery)

    async def drain(_app: web.Application) -> AsyncIterator[None]:
        sweeper = asyncio.create_task(_sweep_forever(hook), name="sms-sweep")
        yield
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        with contextlib.suppress(Exception):
            await hook.drain()

    app.cleanup_ctx.append(drain)
    return hook
