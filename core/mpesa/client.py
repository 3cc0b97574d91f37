"""Async Daraja client: OAuth, STK Push and STK Query over one pooled httpx client.

Error model (see ``core.mpesa.errors`` and docs/daraja.md): every failure is a
``DarajaUnavailable`` (safe to retry later), ``DarajaOutcomeUnknown`` (may have reached
the phone: query, never push again) or ``DarajaRejected`` (refused, nothing sent).
OAuth and Query are retried with exponential back-off; an STK Push is never retried,
except the single replay after Daraja calls the token invalid (the request was refused
at the gateway, so it cannot have reached the phone).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import certifi
import httpx

from core.domain.phone import mask_phone
from core.mpesa.errors import (
    DarajaError,
    DarajaMerchantNotFound,
    DarajaOAuthError,
    DarajaOutcomeUnknown,
    DarajaRejected,
    DarajaSubscriberBusy,
    DarajaUnavailable,
    DarajaWrongCredentials,
    daraja_error_fields,
)
from core.mpesa.redact import redact_checkout_id
from core.mpesa.result_codes import STILL_PROCESSING, normalise_result_code
from core.mpesa.stk_request import (
    DEFAULT_ACCOUNT_REFERENCE,
    build_stk_push_payload,
    build_stk_query_payload,
)
from core.mpesa.timestamps import daraja_timestamp
from core.mpesa.token import DEFAULT_REFRESH_MARGIN, TokenManager

if TYPE_CHECKING:
    from core.config import Settings

log = logging.getLogger(__name__)

STK_PUSH_PATH = "/mpesa/stkpush/v1/processrequest"
STK_QUERY_PATH = "/mpesa/stkpushquery/v1/query"

INVALID_TOKEN = "404.001.03"
SYSTEM_BUSY = "500.003.02"
MERCHANT_VALIDATION = "500.001.1001"

# A push usually answers in 1-3 s; a read time-out makes the outcome unknown, so be patient.
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=10.0, pool=5.0)
DEFAULT_LIMITS = httpx.Limits(max_connections=50, max_keepalive_connections=10)

# Transport failures that prove the request never left this process (or never got a
# connection): nothing reached Daraja. Everything else may have been received.
_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StkPushAccepted:
    """Daraja accepted the push; the result comes later by callback or query."""

    merchant_request_id: str
    checkout_request_id: str
    response_code: int | str
    response_description: str
    customer_message: str


@dataclass(frozen=True, slots=True)
class StkQueryResult:
    """State of a push as STK Query reports it; ``pending`` means no result yet."""

    pending: bool
    result_code: int | str | None
    result_desc: str | None
    merchant_request_id: str | None = None
    checkout_request_id: str | None = None


@dataclass(frozen=True, slots=True)
class ConnectivityResult:
    """Outcome of the admin connectivity test (a fresh OAuth token)."""

    ok: bool
    latency_ms: float
    error: str | None = None


def make_ssl_context() -> ssl.SSLContext:
    """Verifying TLS context with Mozilla's CA bundle and TLS 1.2 as the floor (Property 44)."""
    context = ssl.create_default_context(cafile=certifi.where())
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@functools.cache
def _shared_ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle costs ~40 ms; every client in the process can share one context.
    return make_ssl_context()


class DarajaClient:
    """One per process: owns the pooled httpx client and the token manager."""

    def __init__(
        self,
        *,
        base_url: str,
        short_code: str,
        passkey: str,
        consumer_key: str,
        consumer_secret: str,
        till_number: str | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        max_attempts: int = 3,
        retry_base_delay: float = 0.5,
        token_refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        trust_env: bool = True,
    ) -> None:
        self.base_url = base_url.strip().rstrip("/")
        self.short_code = short_code
        self.till_number = till_number or None
        self._passkey = passkey
        self._max_attempts = max(1, max_attempts)
        self._retry_base_delay = retry_base_delay
        self.ssl_context = _shared_ssl_context()
        self._http = httpx.AsyncClient(
            base_url=self.base_url + "/",
            timeout=timeout,
            limits=DEFAULT_LIMITS,
            verify=self.ssl_context,
            transport=transport,
            follow_redirects=False,
            # HTTPS_PROXY/NO_PROXY from the environment are honoured by default (some hosts
            # need a proxy for egress); tests turn it off to stay on 127.0.0.1.
            trust_env=trust_env,
        )
        self.tokens = TokenManager(
            self._http,
            consumer_key=consumer_key,
            consumer_secret=consumer_secret,
            refresh_margin=token_refresh_margin,
            max_attempts=self._max_attempts,
            retry_base_delay=retry_base_delay,
            clock=clock,
        )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Self:
        """Build the client from validated settings (base URL and credentials by environment)."""
        values: dict[str, Any] = {
            "base_url": settings.daraja_base_url,
            "short_code": settings.daraja_short_code,
            "passkey": settings.daraja_passkey,
            "consumer_key": settings.daraja_consumer_key,
            "consumer_secret": settings.daraja_consumer_secret,
            "till_number": settings.mpesa_till_number,
        }
        values.update(overrides)
        return cls(**values)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._http.aclose()

    # -- STK Push ---------------------------------------------------------------------
    async def stk_push(
        self,
        *,
        phone: str,
        amount: int,
        callback_url: str,
        account_reference: str = DEFAULT_ACCOUNT_REFERENCE,
        transaction_desc: str,
    ) -> StkPushAccepted:
        """Send one STK Push (validated first; never retried, see module docstring)."""
        timestamp = daraja_timestamp()  # one timestamp for both Password and Timestamp
        payload = build_stk_push_payload(
            short_code=self.short_code,
            passkey=self._passkey,
            timestamp=timestamp,
            phone=phone,
            amount=amount,
            callback_url=callback_url,
            account_reference=account_reference,
            transaction_desc=transaction_desc,
            till_number=self.till_number,
        )
        masked = mask_phone(payload["PhoneNumber"])
        try:
            response, body = await self._post(STK_PUSH_PATH, payload)
            accepted = _accepted(response, body)
        except DarajaError as exc:
            log.warning(
                "stk push failed: %s error_code=%s request_id=%s phone=%s",
                type(exc).__name__,
                exc.error_code,
                exc.request_id,
                masked,
            )
            raise
        log.info(
            "stk push accepted checkout_request_id=%s merchant_request_id=%s phone=%s amount=%d",
            redact_checkout_id(accepted.checkout_request_id),
            accepted.merchant_request_id,
            masked,
            payload["Amount"],
        )
        return accepted

    # -- STK Query --------------------------------------------------------------------
    async def stk_query(self, checkout_request_id: str) -> StkQueryResult:
        """Ask Daraja for a push's result; "being processed" comes back as ``pending``."""
        return await self._with_retries(lambda: self._query_once(checkout_request_id))

    async def _query_once(self, checkout_request_id: str) -> StkQueryResult:
        payload = build_stk_query_payload(
            short_code=self.short_code,
            passkey=self._passkey,
            timestamp=daraja_timestamp(),
            checkout_request_id=checkout_request_id,
        )
        response, body = await self._post(STK_QUERY_PATH, payload)
        fields = daraja_error_fields(body)
        if _is_being_processed(fields):
            return StkQueryResult(True, None, None, checkout_request_id=checkout_request_id)
        if response.status_code == 200 and isinstance(body, dict) and "ResultCode" in body:
            code = normalise_result_code(body.get("ResultCode"))
            desc = body.get("ResultDesc")
            result = StkQueryResult(
                pending=code == STILL_PROCESSING,
                result_code=None if code == STILL_PROCESSING else code,
                result_desc=str(desc) if desc is not None else None,
                merchant_request_id=_opt_str(body.get("MerchantRequestID")),
                checkout_request_id=_opt_str(body.get("CheckoutRequestID")) or checkout_request_id,
            )
            log.info(
                "stk query checkout_request_id=%s pending=%s result_code=%s",
                redact_checkout_id(checkout_request_id),
                result.pending,
                result.result_code,
            )
            return result
        raise _error_for(response, body)

    # -- connectivity -----------------------------------------------------------------
    async def check_connectivity(self) -> ConnectivityResult:
        """Fetch a fresh token once and report ok / latency / error (Property 41)."""
        started = time.perf_counter()
        try:
            await self.tokens.fetch_fresh()
        except DarajaError as exc:
            elapsed = (time.perf_counter() - started) * 1000
            return ConnectivityResult(False, round(elapsed, 1), _describe(exc))
        elapsed = (time.perf_counter() - started) * 1000
        return ConnectivityResult(True, round(elapsed, 1), None)

    # -- plumbing ---------------------------------------------------------------------
    async def _post(self, path: str, payload: dict[str, Any]) -> tuple[httpx.Response, Any]:
        """POST with a bearer token; replay once if Daraja calls the token invalid."""
        replayed = False
        while True:
            token = await self.tokens.get_token()
            try:
                response = await self._http.post(
                    path, json=payload, headers={"Authorization": f"Bearer {token}"}
                )
            except _NOT_SENT as exc:
                raise DarajaUnavailable(f"Daraja not reached: {type(exc).__name__}") from None
            except httpx.HTTPError as exc:
                # Sent (or partly sent) but no answer: Daraja may have acted on it.
                raise DarajaOutcomeUnknown(
                    f"no answer from Daraja after sending: {type(exc).__name__}"
                ) from None
            body = _json_or_none(response)
            if daraja_error_fields(body)["error_code"] == INVALID_TOKEN:
                self.tokens.invalidate(token)
                if not replayed:
                    log.info("daraja called the token invalid; refreshing and replaying once")
                    replayed = True
                    continue
                raise DarajaUnavailable(
                    "Daraja refused a freshly issued token",
                    http_status=response.status_code,
                    **daraja_error_fields(body),
                )
            return response, body

    async def _with_retries(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run an idempotent operation, retrying unavailable/unknown with back-off."""
        for attempt in range(1, self._max_attempts + 1):
            try:
                return await operation()
            except DarajaOAuthError:
                raise  # the token manager already retried; don't multiply the attempts
            except (DarajaUnavailable, DarajaOutcomeUnknown) as exc:
                if attempt == self._max_attempts:
                    raise
                delay = self._retry_base_delay * 2 ** (attempt - 1)
                log.warning(
                    "daraja query attempt %d failed (%s %s); retrying in %.2fs",
                    attempt,
                    type(exc).__name__,
                    exc.error_code,
                    delay,
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover


def _accepted(response: httpx.Response, body: Any) -> StkPushAccepted:
    if response.status_code != 200:
        raise _error_for(response, body)
    if not isinstance(body, dict):
        raise DarajaOutcomeUnknown(
            "Daraja answered 200 without a JSON body", http_status=response.status_code
        )
    code = normalise_result_code(body.get("ResponseCode"))
    checkout = body.get("CheckoutRequestID")
    if code == 0 and isinstance(checkout, str) and checkout:
        return StkPushAccepted(
            merchant_request_id=str(body.get("MerchantRequestID") or ""),
            checkout_request_id=checkout,
            response_code=code,
            response_description=str(body.get("ResponseDescription") or ""),
            customer_message=str(body.get("CustomerMessage") or ""),
        )
    if code is None or code == 0:
        # "Accepted" without an id, or an answer we cannot read: it may be on the phone.
        raise DarajaOutcomeUnknown("Daraja answered 200 without a CheckoutRequestID", http_status=200)
    raise DarajaRejected(
        f"Daraja refused the push (ResponseCode {code})",
        error_code=str(code),
        error_message=_opt_str(body.get("ResponseDescription")),
        http_status=200,
    )


def _error_for(response: httpx.Response, body: Any) -> DarajaError:
    """Turn a non-success answer into the right error family (DESIGN.md §4)."""
    status = response.status_code
    fields = daraja_error_fields(body)
    code = fields["error_code"]
    message = (fields["error_message"] or "").lower()
    detail = f"HTTP {status} {code or ''} {fields['error_message'] or ''}".strip()
    if code == SYSTEM_BUSY or status in (429, 503):
        return DarajaUnavailable(f"Daraja unavailable: {detail}", http_status=status, **fields)
    if code == MERCHANT_VALIDATION:
        # One error code, three meanings: only the message tells them apart.
        if "wrong credentials" in message:
            return DarajaWrongCredentials(detail, http_status=status, **fields)
        if "merchant does not exist" in message:
            return DarajaMerchantNotFound(detail, http_status=status, **fields)
        if "lock subscriber" in message or "already in process" in message:
            return DarajaSubscriberBusy(detail, http_status=status, **fields)
    if 400 <= status < 500:
        return DarajaRejected(f"Daraja refused the request: {detail}", http_status=status, **fields)
    return DarajaOutcomeUnknown(f"Daraja error, outcome unknown: {detail}", http_status=status, **fields)


def _is_being_processed(fields: dict[str, str | None]) -> bool:
    return (
        fields["error_code"] == MERCHANT_VALIDATION
        and "being processed" in (fields["error_message"] or "").lower()
    )


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _describe(exc: DarajaError) -> str:
    parts = [str(exc)]
    if exc.error_code and exc.error_code not in str(exc):
        parts.append(f"{exc.error_code} {exc.error_message or ''}".strip())
    return " — ".join(parts)
