"""Routes of the phone simulator (mounted at ``/sim/phone``; the page itself is served at ``/sim/``).

* ``GET  /api/config`` — which stand-ins are here, the personas, the shortcode.
* ``GET  /api/events?handle=2547…,2547…`` — Server-Sent Events: ``change`` with the sources that
  changed (``telegram``, ``prompts``, ``daraja``, ``sms``, ``mail``). While the stream is open the
  numbers in ``handle`` are answered by the person at the page (Daraja interactive mode).
* ``GET  /api/prompts``; ``POST /api/prompts/{CheckoutRequestID}`` ``{"choice": "pay"}`` — the
  M-Pesa prompts waiting for that person, and their answer. The body holds the choice and nothing
  else: a PIN never leaves the page (Property 48), and a body with any other field is refused.
* ``GET  /api/sms?number=…``; ``POST /api/sms`` ``{"from": "0712…", "text": "…"}`` — an SMS thread.
* ``GET  /api/mail``; ``GET /api/mail/{id}/html`` — the mailbox; the HTML body alone, with its own
  CSP (no script, no network) for a sandboxed frame.
* ``GET  /static/…`` — the page's script and style.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from simulators.africastalking import AfricasTalkingSimulator
from simulators.daraja import CHOICES, DarajaSimulator
from simulators.phone.sms import MAX_SMS_CHARS, BadNumber, SmsThreads, kenyan_number
from simulators.smtp import Mailbox
from simulators.telegram_api import TelegramApiSimulator

STATIC = Path(__file__).parent / "static"
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# The e-mail's own page: styles inline as e-mail has them, nothing else; sandboxed even if opened alone.
MAIL_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"
CLIENTS = (
    {"telegram_id": 1001, "name": "Wanjiru", "phone": "254708374149"},
    {"telegram_id": 1002, "name": "Otieno", "phone": "254722000118"},
)
TICK_S = 0.25
HEARTBEAT_S = 5.0  # also how soon a closed page gives its number back to the last-digit rule


@dataclass
class PhoneSources:
    """The stand-ins the page shows (None: configured for real, not shown)."""

    telegram: TelegramApiSimulator | None
    daraja: DarajaSimulator | None
    at: AfricasTalkingSimulator | None
    mailbox: Mailbox | None
    sms_inbound_url: str | None
    shortcode: str = "22384"
    merchant_name: str = "SMILING STEPS"


PHONE_SOURCES = web.AppKey("phone_sources", PhoneSources)
SMS_THREADS = web.AppKey("sms_threads", SmsThreads)
STOPPING = web.AppKey("phone_stopping", asyncio.Event)


def _headers(response: web.StreamResponse, csp: str = PAGE_CSP) -> web.StreamResponse:
    response.headers["Content-Security-Policy"] = csp
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


async def page(_request: web.Request) -> web.StreamResponse:
    """The phone page (static HTML; its links are relative to ``/sim/``)."""
    return _headers(web.FileResponse(STATIC / "index.html"))


async def _to_page(request: web.Request) -> web.Response:
    raise web.HTTPFound("../")  # the page lives one level up (its links are relative to /sim/)


def _sources(request: web.Request) -> PhoneSources:
    return request.config_dict[PHONE_SOURCES]


def _error(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)


# What reading a body may raise when the caller sent garbage (bad JSON, charset, nesting,
# framing or compression, size): the caller's fault, a 400.
_UNREADABLE = (
    ValueError,
    LookupError,
    RecursionError,
    RequestPayloadError,
    HttpProcessingError,
    web.HTTPRequestEntityTooLarge,
)


async def _json(request: web.Request) -> dict[str, Any] | None:
    """The JSON object sent, or None for anything else."""
    with contextlib.suppress(*_UNREADABLE):
        body = json.loads(await request.read())
        if isinstance(body, dict):
            return body
    return None


async def config(request: web.Request) -> web.Response:
    src = _sources(request)
    return web.json_response(
        {
            "telegram": src.telegram is not None,
            "daraja": src.daraja is not None,
            "sms": src.sms_inbound_url is not None,
            "mail": src.mailbox is not None,
            "shortcode": src.shortcode,
            "merchant_name": src.merchant_name,
            "clients": CLIENTS,
        }
    )


# -- live updates ------------------------------------------------------------------------------
def _signatures(src: PhoneSources, threads: SmsThreads) -> dict[str, object]:
    daraja = src.daraja
    return {
        "telegram": src.telegram.version if src.telegram else None,
        "prompts": tuple(t.checkout_request_id for t in daraja.prompts()) if daraja else None,
        "daraja": daraja.log[-1]["seq"] if daraja and daraja.log else None,
        "sms": threads.version,
        "mail": src.mailbox.messages[-1].id if src.mailbox and src.mailbox.messages else None,
    }


def _handled_numbers(request: web.Request) -> list[str]:
    numbers: set[str] = set()
    for raw in request.query.get("handle", "").split(",")[:10]:
        with contextlib.suppress(BadNumber):
            numbers.add(kenyan_number(raw))
    return sorted(numbers)


async def events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: one ``change`` event naming the sources that changed."""
    src, threads = _sources(request), request.config_dict[SMS_THREADS]
    stopping = request.config_dict[STOPPING]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    _headers(response)
    await response.prepare(request)
    handled = _handled_numbers(request)
    if src.daraja is not None:
        src.daraja.claim_phones(handled)
    try:
        seen = _signatures(src, threads)
        await response.write(f"event: hello\ndata: {json.dumps({'handled': handled})}\n\n".encode())
        idle = 0.0
        while not stopping.is_set():
            await asyncio.sleep(TICK_S)
            now = _signatures(src, threads)
            changed = [name for name, value in now.items() if value != seen.get(name)]
            seen = now
            idle += TICK_S
            if changed:
                await response.write(f"event: change\ndata: {json.dumps({'sources': changed})}\n\n".encode())
                idle = 0.0
            elif idle >= HEARTBEAT_S:
                await response.write(b": still here\n\n")
                idle = 0.0
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        if src.daraja is not None:
            src.daraja.release_phones(handled)
    return response


# -- M-Pesa prompts ----------------------------------------------------------------------------
async def prompts(request: web.Request) -> web.Response:
    src = _sources(request)
    waiting = src.daraja.prompts() if src.daraja else []
    return web.json_response(
        {
            "prompts": [
                {
                    "checkout_request_id": t.checkout_request_id,
                    "phone": t.phone,
                    "amount": t.amount,
                    "account_reference": t.account_reference,
                    "merchant_name": src.merchant_name,
                }
                for t in waiting
            ]
        }
    )


async def decide(request: web.Request) -> web.Response:
    src = _sources(request)
    body = await _json(request)
    if body is None or set(body) != {"choice"} or body["choice"] not in CHOICES:
        return _error(f'send only {{"choice": ...}} with one of: {", ".join(CHOICES)}')
    tx = src.daraja.transactions.get(request.match_info["checkout"]) if src.daraja else None
    if tx is None:
        return _error("no such M-Pesa prompt", 404)
    if not tx.awaiting_person:
        return _error("this prompt is no longer waiting for an answer", 409)
    src.daraja.decide(tx, body["choice"])  # type: ignore[union-attr]  # tx came from it
    return web.json_response({"decided": body["choice"]})


# -- SMS -----------------------------------------------------------------------------------------
async def sms_thread(request: web.Request) -> web.Response:
    try:
        number = kenyan_number(request.query.get("number"))
    except BadNumber as exc:
        return _error(str(exc))
    return web.json_response({"number": number, "messages": request.config_dict[SMS_THREADS].thread(number)})


async def sms_send(request: web.Request) -> web.Response:
    body = await _json(request)
    if body is None or not isinstance(body.get("text"), str):
        return _error('send {"from": "0712…", "text": "…"}')
    text = body["text"].strip()
    if not text or len(text) > MAX_SMS_CHARS:
        return _error(f"an SMS here is 1 to {MAX_SMS_CHARS} characters")
    try:
        number = kenyan_number(body.get("from"))
        status = await request.config_dict[SMS_THREADS].send(number, text)
    except BadNumber as exc:
        return _error(str(exc))
    except RuntimeError as exc:
        return _error(str(exc), 409)
    except (OSError, TimeoutError) as exc:
        return _error(f"the service's SMS hook did not answer ({type(exc).__name__})", 502)
    return web.json_response({"number": number, "hook_status": status})


# -- mail ----------------------------------------------------------------------------------------
async def mail_list(request: web.Request) -> web.Response:
    box = _sources(request).mailbox
    return web.json_response(
        {
            "messages": [
                {
                    "id": m.id,
                    "from": str(m.message.get("From", "")),
                    "to": m.rcpt_tos,
                    "subject": m.subject,
                    "received_at": m.received_at.isoformat(),
                    "text": m.text,
                    "has_html": m.html is not None,
                    "attachments": [
                        {"name": n, "type": t, "size": len(data)} for n, t, data in m.attachments
                    ],
                }
                for m in reversed(box.messages if box else [])
            ]
        }
    )


async def mail_html(request: web.Request) -> web.StreamResponse:
    box = _sources(request).mailbox
    try:
        mail = box.get(int(request.match_info["mail_id"])) if box else None
    except ValueError:
        mail = None
    if mail is None or mail.html is None:
        raise web.HTTPNotFound(text="no such HTML e-mail")
    return _headers(web.Response(text=mail.html, content_type="text/html"), MAIL_CSP)


ROUTES: tuple[tuple[str, str, Callable[[web.Request], Any]], ...] = (
    ("GET", "/api/config", config),
    ("GET", "/api/events", events),
    ("GET", "/api/prompts", prompts),
    ("POST", "/api/prompts/{checkout}", decide),
    ("GET", "/api/sms", sms_thread),
    ("POST", "/api/sms", sms_send),
    ("GET", "/api/mail", mail_list),
    ("GET", "/api/mail/{mail_id}/html", mail_html),
)


def create_app(sources: PhoneSources) -> web.Application:
    """The sub-application to mount at ``/sim/phone`` (and :func:`page` at ``/sim/``)."""
    app = web.Application()
    app[PHONE_SOURCES] = sources
    app[SMS_THREADS] = SmsThreads(sources.at, sources.sms_inbound_url, sources.shortcode)
    app[STOPPING] = asyncio.Event()
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    app.router.add_static("/static", STATIC)
    app.router.add_get("/", _to_page)

    async def stop(_app: web.Application) -> None:
        app[STOPPING].set()
        await app[SMS_THREADS].close()

    app.on_shutdown.append(stop)
    return app
