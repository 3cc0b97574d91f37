"""SMS through Africa's Talking, with the official ``africastalking`` SDK.

The SDK is blocking (``requests``), so every call runs in a worker thread. Two small
adaptations, by subclassing its SMS service:

- ``AT_API_BASE_URL`` (which ends before ``/version1``) replaces both of the SDK's hosts
  (``api.…`` and ``content.…``); in local mode it points at the simulator (``/sim/at``).
- The SDK turns any HTTP error into an exception holding only the body text, and parses
  JSON only when Content-Type is exactly ``application/json``. We keep the SDK's URL,
  headers and form fields but read the HTTP status and parse JSON ourselves, because
  whether to retry depends on them.

Per-recipient ``statusCode`` (AT's documented table): 100 Processed, 101 Sent, 102 Queued
→ sent; 401 RiskHold, 402 InvalidSenderId, 403 InvalidPhoneNumber, 404 UnsupportedNumberType,
406 UserInBlacklist, 407 CouldNotRoute → permanent; 405 InsufficientBalance, 409
DoNotDisturbRejection → operator problem, retried later; 5xx → retried.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol, runtime_checkable

import requests
from africastalking.Service import DEFAULT_TIMEOUT_S
from africastalking.SMS import SMSService

from core.config import Settings
from core.domain.phone import mask_phone
from core.services.notifications.outbox_types import RenderedMessage, SendResult

log = logging.getLogger(__name__)

# Local mode: credentials the simulator is started with (simulators/africastalking.py).
SIMULATOR_AT_USERNAME = "sandbox"
SIMULATOR_AT_API_KEY = "simulator-at-api-key"

AT_STATUS_NAMES = {
    100: "Processed", 101: "Sent", 102: "Queued",
    401: "RiskHold", 402: "InvalidSenderId", 403: "InvalidPhoneNumber", 404: "UnsupportedNumberType",
    405: "InsufficientBalance", 406: "UserInBlacklist", 407: "CouldNotRoute", 409: "DoNotDisturbRejection",
    500: "InternalServerError", 501: "GatewayError", 502: "RejectedByGateway",
}
SENT_CODES = frozenset({100, 101, 102})
PERMANENT_CODES = frozenset({401, 402, 403, 404, 406, 407})
OPERATOR_CODES = frozenset({405, 409})
OPERATOR_RETRY_AFTER_S = 15 * 60.0


class AtHttpError(Exception):
    """Africa's Talking answered with a non-2xx HTTP status."""

    def __init__(self, status: int, body: str) -> None:
        self.status, self.body = status, body
        super().__init__(f"HTTP {status}: {body[:200]}")


class _SmsService(SMSService):
    """The SDK's SMS service with an overridable base URL and HTTP status preserved."""

    def __init__(self, username: str, api_key: str, *, base_url: str | None, timeout: Any) -> None:
        self._base_override = base_url.rstrip("/") if base_url else None
        self._timeout = timeout
        super().__init__(username, api_key)

    def _init_service(self) -> None:
        super()._init_service()
        if self._base_override:
            self._baseUrl = self._base_override + "/version1"
            self._contentUrl = self._base_override + "/version1"

    def _make_request(  # same signature as the SDK's; synchronous path only
        self, url: str, method: str, headers: dict[str, str], data: Any, params: Any,
        callback: Any = None, timeout: Any = DEFAULT_TIMEOUT_S,
    ) -> Any:
        if callback is not None:
            raise RuntimeError("callbacks are not used")
        response = requests.request(
            method.upper(), url, headers=headers, data=data, params=params, timeout=self._timeout or timeout
        )
        if not 200 <= response.status_code < 300:
            raise AtHttpError(response.status_code, response.text)
        try:
            return response.json()
        except ValueError:
            return response.text


@runtime_checkable
class SmsGateway(Protocol):
    """Sends one text to one normalised Kenyan number (``2547…``); never raises for provider errors."""

    async def send_sms(self, phone: str, text: str) -> SendResult: ...


class AfricasTalkingGateway:
    """``SmsGateway`` over the africastalking SDK (``POST {base}/version1/messaging``)."""

    def __init__(
        self,
        *,
        username: str,
        api_key: str,
        sender_id: str | None = None,
        base_url: str | None = None,
        timeout: Any = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.sender_id = sender_id
        self._service = _SmsService(username, api_key, base_url=base_url, timeout=timeout)

    @property
    def messaging_url(self) -> str:
        return str(self._service._make_url("/messaging"))

    async def send_sms(self, phone: str, text: str) -> SendResult:
        to = "+" + phone.lstrip("+")
        try:
            body = await asyncio.to_thread(self._service.send, text, [to], sender_id=self.sender_id)
        except ValueError as exc:  # the SDK's own phone validation
            return SendResult.give_up(f"invalid phone number ({mask_phone(phone)}): {type(exc).__name__}")
        except AtHttpError as exc:
            return _http_error(exc)
        except requests.RequestException as exc:
            return SendResult.retry(f"Africa's Talking unreachable: {type(exc).__name__}")
        return _interpret(body, phone)


def _http_error(exc: AtHttpError) -> SendResult:
    body = " ".join(exc.body.split())[:150]
    if exc.status in (401, 403):
        return SendResult.retry(f"AT rejected our credentials (HTTP {exc.status}): {body}",
                                retry_after=OPERATOR_RETRY_AFTER_S)
    if exc.status == 429 or exc.status >= 500:
        return SendResult.retry(f"AT HTTP {exc.status}: {body}")
    return SendResult.give_up(f"AT HTTP {exc.status}: {body}")


def _interpret(body: Any, phone: str) -> SendResult:
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return SendResult.retry(f"AT answered with something that is not JSON: {body[:100]!r}")
    try:
        data = body["SMSMessageData"]
        recipients = data.get("Recipients") or []
    except (KeyError, TypeError, AttributeError):
        return SendResult.retry("AT answer without SMSMessageData")
    if not recipients:
        message = str(data.get("Message", ""))[:150]
        if any(AT_STATUS_NAMES[c].lower() in message.lower() for c in PERMANENT_CODES):
            return SendResult.give_up(f"AT sent nothing: {message}")
        return SendResult.retry(f"AT sent nothing: {message}")
    recipient = recipients[0]
    try:
        code = int(recipient.get("statusCode"))
    except (TypeError, ValueError):
        code = 0
    status = str(recipient.get("status", AT_STATUS_NAMES.get(code, "unknown")))
    if code in SENT_CODES:
        return SendResult.sent(str(recipient.get("messageId") or "") or None)
    error = f"AT status {code} {status} for {mask_phone(phone)}"
    if code in PERMANENT_CODES:
        return SendResult.give_up(error)
    if code in OPERATOR_CODES:
        return SendResult.retry(error, retry_after=OPERATOR_RETRY_AFTER_S)
    return SendResult.retry(error)


class SmsSender:
    """The SMS channel's Sender: the rendered text through an :class:`SmsGateway`."""

    def __init__(self, gateway: SmsGateway) -> None:
        self.gateway = gateway

    async def send(self, recipient: str, message: RenderedMessage) -> SendResult:
        return await self.gateway.send_sms(recipient, message.text)


def at_base_url(settings: Settings) -> str | None:
    """AT_API_BASE_URL, else the simulator in local mode, else None (the SDK's own hosts)."""
    if settings.at_api_base_url:
        return settings.at_api_base_url.rstrip("/")
    if settings.local_mode:
        return f"{settings.stand_ins_url}/sim/at"
    return None


def build_sms_gateway(settings: Settings) -> AfricasTalkingGateway | None:
    """The AT gateway for ``settings``: AT_USERNAME/AT_API_KEY, or the simulator's in local mode."""
    username, api_key = settings.at_username, settings.at_api_key
    if not (username and api_key):
        if not settings.local_mode or settings.at_api_base_url:
            return None
        username, api_key = SIMULATOR_AT_USERNAME, SIMULATOR_AT_API_KEY
    return AfricasTalkingGateway(
        username=username, api_key=api_key, sender_id=settings.at_shortcode, base_url=at_base_url(settings)
    )
