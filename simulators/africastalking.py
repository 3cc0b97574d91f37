"""A local stand-in for Africa's Talking's SMS API, speaking its wire protocol.

Mounted by ``serve`` at ``/sim/at`` in local mode, so the SDK's base URL is
``http://127.0.0.1:PORT/sim/at`` (AT_API_BASE_URL semantics: before ``/version1``).

- ``POST /version1/messaging``: form fields ``username``, ``to`` (comma-separated
  ``+254…``), ``message``, optional ``from``, ``bulkSMSMode``, ``enqueue``; header
  ``apiKey``. Answers HTTP 201 with ``{"SMSMessageData": {"Message": "Sent to 1/1 Total
  Cost: KES 0.8000", "Recipients": [{"statusCode": 101, "number": …, "status": "Success",
  "cost": …, "messageId": "ATXid_…"}]}}`` (Content-Type exactly ``application/json``, as
  AT sends it). Wrong key or username → 401 text, missing fields → 400 text.
- Fault switches: :meth:`AfricasTalkingSimulator.fail_next` (HTTP 5xx/4xx for the next
  requests) and :meth:`set_recipient_status` (a per-number status such as 403
  InvalidPhoneNumber or 406 UserInBlacklist).
- Delivery reports: :meth:`send_delivery_report` posts AT's form (``id``, ``status``,
  ``phoneNumber``, ``networkCode``, ``failureReason``, ``retryCount``) to the configured
  URL; ``POST /control/delivery-report`` does the same from the browser page ``GET /``.
- ``GET /messages.json``: the log of every message (tests and the phone page read it).

Imports nothing from the product: it is an outside system.
"""

from __future__ import annotations

import html
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

STATUS_NAMES = {
    100: "Processed", 101: "Success", 102: "Queued",
    401: "RiskHold", 402: "InvalidSenderId", 403: "InvalidPhoneNumber", 404: "UnsupportedNumberType",
    405: "InsufficientBalance", 406: "UserInBlacklist", 407: "CouldNotRoute", 409: "DoNotDisturbRejection",
    500: "InternalServerError", 501: "GatewayError", 502: "RejectedByGateway",
}
DELIVERY_FAILURE_REASONS = (
    "InsufficientCredit", "InvalidLinkId", "UserIsInactive", "UserInBlackList", "UserAccountSuspended",
    "NotNetworkSubcriber", "UserNotSubscribedToProduct", "UserDoesNotExist", "DeliveryFailure",
)
_NUMBER = re.compile(r"^\+\d{1,3}\d{3,}$")
COST_PER_PART = "0.8000"


@dataclass
class SimulatedSms:
    message_id: str
    username: str
    to: str
    message: str
    sender: str | None
    status_code: int
    status: str
    cost: str
    received_at: str
    delivery_reports: list[dict[str, str]] = field(default_factory=list)


class AfricasTalkingSimulator:
    """State of the simulated AT account: credentials, sent messages, fault switches."""

    def __init__(
        self,
        *,
        username: str = "sandbox",
        api_key: str = "simulator-at-api-key",
        delivery_report_url: str | None = None,
        network_code: str = "63902",
        sender_ids: Iterable[str] | None = None,
    ) -> None:
        self.username = username
        self.api_key = api_key
        self.delivery_report_url = delivery_report_url
        self.network_code = network_code
        self.sender_ids = set(sender_ids) if sender_ids is not None else None  # None: any ``from``
        self.messages: list[SimulatedSms] = []
        self.requests = 0
        self._http_faults: list[int] = []
        self._recipient_status: dict[str, int] = {}

    # -- fault switches -----------------------------------------------------------------
    def fail_next(self, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` messaging requests with HTTP ``status``."""
        self._http_faults.extend([status] * times)

    def set_recipient_status(self, number: str, status_code: int | None) -> None:
        """Give ``number`` (+254… or 254…) a per-recipient status (e.g. 406); None clears it."""
        key = "+" + number.lstrip("+")
        if status_code is None:
            self._recipient_status.pop(key, None)
        else:
            self._recipient_status[key] = status_code

    def clear_faults(self) -> None:
        self._http_faults.clear()
        self._recipient_status.clear()

    # -- reading the log ----------------------------------------------------------------
    def sent_to(self, number: str) -> list[SimulatedSms]:
        """Messages accepted for ``number`` (+254… or 254…)."""
        key = "+" + number.lstrip("+")
        return [m for m in self.messages if m.to == key and m.status_code in (100, 101, 102)]

    def find(self, message_id: str) -> SimulatedSms | None:
        return next((m for m in self.messages if m.message_id == message_id), None)

    # -- the API ------------------------------------------------------------------------
    def _accept(self, form: dict[str, str], api_key: str | None) -> tuple[int, Any]:
        self.requests += 1
        if self._http_faults:
            status = self._http_faults.pop(0)
            return status, f"Simulated failure (HTTP {status})"
        if api_key != self.api_key or form.get("username") != self.username:
            return 401, "The supplied authentication is invalid"
        to, message = form.get("to", "").strip(), form.get("message", "")
        if not to or not message:
            return 400, "Request is missing required form field 'to' or 'message'"
        recipients: list[dict[str, Any]] = []
        for number in [n.strip() for n in to.split(",") if n.strip()]:
            code = self._recipient_status.get(number, 101)
            if not _NUMBER.match(number):
                code = 403
            elif self.sender_ids is not None and form.get("from") and form["from"] not in self.sender_ids:
                code = 402
            parts = _parts(message)
            sent = code in (100, 101, 102)
            cost = f"KES {float(COST_PER_PART) * parts:.4f}" if sent else "0"
            sms = SimulatedSms(
                message_id=("ATXid_" + secrets.token_hex(16)) if sent else "None",
                username=self.username, to=number, message=message, sender=form.get("from") or None,
                status_code=code, status=STATUS_NAMES.get(code, "Failed"), cost=cost,
                received_at=datetime.now(UTC).isoformat(),
            )
            self.messages.append(sms)
            recipients.append({
                "statusCode": code, "number": number, "status": sms.status, "cost": cost,
                "messageId": sms.message_id,
            })
        ok = sum(1 for r in recipients if r["statusCode"] in (100, 101, 102))
        total = sum(float(r["cost"].split()[-1]) for r in recipients if r["cost"] != "0")
        summary = f"Sent to {ok}/{len(recipients)} Total Cost: KES {total:.4f}"
        return 201, {"SMSMessageData": {"Message": summary, "Recipients": recipients}}

    async def send_delivery_report(
        self,
        message_id: str,
        *,
        status: str = "Success",
        failure_reason: str | None = None,
        url: str | None = None,
        retry_count: int = 0,
    ) -> int:
        """POST a delivery report for ``message_id`` like AT does; returns the HTTP status."""
        target = url or self.delivery_report_url
        if not target:
            raise RuntimeError("no delivery report URL configured")
        sms = self.find(message_id)
        form = {
            "id": message_id,
            "status": status,
            "phoneNumber": sms.to if sms else "",
            "networkCode": self.network_code,
            "retryCount": str(retry_count),
        }
        if failure_reason and status in ("Failed", "Rejected"):
            form["failureReason"] = failure_reason
        async with aiohttp.ClientSession() as client, client.post(target, data=form) as response:
            if sms is not None:
                sms.delivery_reports.append({**form, "answered": str(response.status)})
            return response.status

    def app(self) -> web.Application:
        return create_app(self)


def _parts(message: str) -> int:
    return 1 if len(message) <= 160 else -(-len(message) // 153)


def create_app(simulator: AfricasTalkingSimulator) -> web.Application:
    """The aiohttp sub-application (mount it at ``/sim/at``)."""
    app = web.Application()

    async def read_form(request: web.Request) -> dict[str, str] | None:
        """The posted form, or None when the body cannot be read as one (the caller's fault: 400)."""
        try:
            return {k: str(v) for k, v in (await request.post()).items()}
        except (ValueError, LookupError, RequestPayloadError, HttpProcessingError):
            return None  # no boundary, unknown charset, broken framing or compression

    async def messaging(request: web.Request) -> web.Response:
        form = await read_form(request)
        if form is None:
            return web.Response(status=400, text="The request body is not a readable form")
        status, body = simulator._accept(form, request.headers.get("apiKey"))
        if isinstance(body, str):
            return web.Response(status=status, text=body, content_type="text/plain")
        # Exactly "application/json", no charset: what AT sends and what the SDK requires to parse JSON.
        return web.Response(
            status=status, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )

    async def messages_json(_request: web.Request) -> web.Response:
        return web.json_response([asdict(m) for m in simulator.messages])

    async def control_delivery(request: web.Request) -> web.Response:
        form = await read_form(request)
        if form is None:
            return web.Response(status=400, text="The request body is not a readable form")
        try:
            code = await simulator.send_delivery_report(
                str(form.get("id", "")), status=str(form.get("status", "Success")),
                failure_reason=str(form.get("failureReason") or "") or None,
            )
        except (RuntimeError, aiohttp.ClientError) as exc:
            return web.Response(status=409, text=f"delivery report not sent: {exc}")
        raise web.HTTPSeeOther(location=f"{request.app.router['at_home'].url_for()}?report={code}")

    async def home(request: web.Request) -> web.Response:
        page = _page(simulator.messages, request.query.get("report"))
        return web.Response(text=page, content_type="text/html")

    app.router.add_post("/version1/messaging", messaging)
    app.router.add_get("/messages.json", messages_json)
    app.router.add_post("/control/delivery-report", control_delivery)
    app.router.add_get("/", home, name="at_home")
    return app


def _page(messages: Iterable[SimulatedSms], report: str | None) -> str:
    rows = []
    for m in reversed(list(messages)):
        rows.append(
            "<tr><td>{at}</td><td>{to}</td><td>{sender}</td><td>{status}</td><td><pre>{text}</pre></td>"
            "<td><form method='post' action='control/delivery-report'>"
            "<input type='hidden' name='id' value='{id}'>"
            "<select name='status'><option>Success</option><option>Failed</option><option>Rejected</option>"
            "</select><input name='failureReason' placeholder='failureReason'>"
            "<button>Send delivery report</button></form></td></tr>".format(
                at=html.escape(m.received_at), to=html.escape(m.to), sender=html.escape(m.sender or ""),
                status=html.escape(f"{m.status_code} {m.status}"), text=html.escape(m.message),
                id=html.escape(m.message_id, quote=True),
            )
        )
    note = f"<p>Delivery report answered HTTP {html.escape(report)}.</p>" if report else ""
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Africa's Talking simulator</title></head>"
        f"<body><h1>SMS sent through the Africa's Talking simulator</h1>{note}"
        "<table border='1' cellpadding='4'><tr><th>received</th><th>to</th><th>from</th><th>status</th>"
        f"<th>message</th><th></th></tr>{''.join(rows)}</table></body></html>"
    )
