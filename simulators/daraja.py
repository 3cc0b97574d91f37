"""A local stand-in for Safaricom's Daraja API (OAuth, M-Pesa Express STK Push and Query).

Self-contained on purpose: it imports nothing from the product, so it stays honest to
the wire protocol (the little validation it needs is duplicated here, not shared).

Endpoints (relative to wherever the app is mounted; standalone they sit at the root,
in local mode the service mounts this app under ``/sim/daraja``):

* ``GET  /oauth/v1/generate?grant_type=client_credentials`` — Basic auth with the
  consumer key/secret; answers ``{"access_token": ..., "expires_in": "3599"}`` (a string,
  like Daraja). Wrong credentials: 400 ``400.008.01`` "Invalid Authentication passed".
* ``POST /mpesa/stkpush/v1/processrequest`` — Bearer token (404 ``404.001.03``
  "Invalid Access Token" when missing, unknown or expired); field validation with
  Daraja-shaped errors (400 ``400.002.02`` "Bad Request - Invalid <Field>"); wrong
  Password → 500 ``500.001.1001`` "[MerchantValidate] - Wrong credentials"; unknown
  BusinessShortCode → 500 ``500.001.1001`` "Merchant does not exist".
* ``POST /mpesa/stkpushquery/v1/query`` — while a push is pending: 500 ``500.001.1001``
  "The transaction is being processed"; afterwards 200 with ``ResultCode`` as a string.

After an accepted push the simulator POSTs the exact Daraja callback body
``{"Body": {"stkCallback": {...}}}`` to the CallBackURL (ResultCode an int; on success
CallbackMetadata with Amount, MpesaReceiptNumber, Balance without Value,
TransactionDate as a number ``YYYYMMDDHHmmss`` in Nairobi time, PhoneNumber as a
number). By default it never retries a callback, whatever the receiver answers (see
"Callback retries" below to make it retry).

Outcome of a push: the next queued ``POST /control/next-outcome`` if any (FIFO, one per
push), otherwise the last digit of the phone number:

=====  ====================  ===========================================================
digit  outcome               what happens
=====  ====================  ===========================================================
0,8,9  success               callback ResultCode 0 after ``callback_delay`` (254708374149)
1      insufficient          callback ResultCode 1 (balance insufficient)
2      cancelled             callback ResultCode 1032 (cancelled by user)
3      wrong_pin             callback ResultCode 2001 (initiator information invalid)
4      unreachable           callback ResultCode 1037 (DS timeout, user not reached)
5      no_callback           paid, but no callback is ever sent (find it by query)
6      duplicate_callback    the same success body is POSTed twice
7      delayed_callback      success, callback sent ``late_delay`` s after acceptance
=====  ====================  ===========================================================

Outcomes available only through the control API: ``expired`` (1019),
``subscriber_busy`` (1001), ``system_error`` (1025), ``unknown_code`` (1031, not in the
product's catalogue), ``string_code`` ("SFC_IC0003", a non-numeric ResultCode),
``hold`` (nothing happens until ``POST /control/resolve``), ``late_success`` (STK Query
answers 1037 "user cannot be reached" until, ``late_delay`` s after acceptance, a success
callback arrives after all: money reported after a failure), ``early_callback`` (a success
callback delivered before the push is answered) and ``amount_mismatch`` (a success whose
callback Amount is one shilling less than the push asked for).

Per-phone plans (``POST /control/plan``, :mod:`simulators.daraja_plan`) script each push to
a number: its outcome, HTTP 503 answers first, a 500 or a slow answer after processing. A
planned phone's script wins over the queued next-outcome and the last-digit rule.

Callback retries: Safaricom is observed to send a callback again when the receiver does not
answer 200; set the faults ``callback_retries`` (how many more tries) and
``callback_retry_delay`` (seconds before the first retry, doubled each time). The default,
0, never retries.

Interactive mode (the phone page ``/sim/``): a push to a number marked as handled by a
person (``POST /control/interactive`` or :meth:`DarajaSimulator.claim_phones`) waits for
that person's decision instead of the last-digit rule — ``POST /control/decide``
``{"CheckoutRequestID": ..., "choice": "pay"}`` with ``pay`` (0), ``cancel`` (1032),
``wrong_pin`` (2001) or ``insufficient`` (1); with no decision within ``prompt_timeout``
seconds the push ends like an unanswered prompt does: 1037. A queued next-outcome still
wins, so scripts keep full control.

STK Query becomes final ``delay`` seconds after acceptance (``callback_delay`` unless
next-outcome gave a ``delay``) for every outcome: ``no_callback`` then reports
ResultCode 0 although no callback was sent; ``delayed_callback`` reports 0 at
``callback_delay`` (the customer paid on time, the callback is what is late);
``hold`` stays pending until resolved.

Control API (JSON; not part of Daraja):

* ``POST /control/next-outcome`` ``{"outcome": "cancelled", "delay": 0.1}`` — queue one.
* ``POST /control/faults`` ``{"push_503": true, "slow_seconds": 5, "oauth_down": true}``
  — merge switches; ``GET /control/faults`` shows them. Switches: ``push_503`` (push
  answers 503), ``push_500`` (the push is processed — prompt and callback happen — but
  the answer is a 500: the "outcome unknown" case), ``push_busy`` (500 ``500.003.02``
  system busy), ``query_503``, ``oauth_down`` (OAuth answers 503), ``invalid_token``
  (every bearer token is refused), ``subscriber_lock`` (a second push to a phone with a
  pending push gets 500 ``500.001.1001`` "Unable to lock subscriber..."),
  ``query_pending_4999`` (pending queries answer 200 with ResultCode "4999" instead),
  ``slow_seconds`` (push answers after this many seconds; the push itself is processed
  at once), ``query_slow_seconds``, ``callback_retries`` and ``callback_retry_delay``.
* ``POST /control/plan`` ``{"phone": "2547...", "pushes": [{"outcome": "success",
  "push_503": 2, "answer": "slow", "slow_s": 4}]}`` — queue scripted pushes for a number;
  ``GET`` shows how many scripts are waiting.
* ``POST /control/resolve`` ``{"CheckoutRequestID": "...", "outcome": "success"}`` —
  finish a ``hold`` push now.
* ``POST /control/expire-tokens`` — every issued token becomes invalid.
* ``GET /control/log[?since=SEQ]`` — requests and callback deliveries, each with the
  HTTP status answered (callbacks: the status the receiver answered, or ``error``).
* ``GET /control/transactions`` — pushes seen so far.
* ``POST /control/interactive`` ``{"phone": "2547...", "interactive": true,
  "prompt_timeout": 60}`` — mark (or unmark) a number as handled by a person; optionally
  set the prompt time-out for every push. ``GET`` shows the numbers and the time-out.
* ``POST /control/decide`` ``{"CheckoutRequestID": "...", "choice": "pay"}`` — a person's
  answer to a prompt (only the choice: there is no PIN field). ``GET /control/prompts``
  lists the prompts waiting for one.
* ``POST /control/reset`` — forget transactions, log, queued outcomes, faults and
  interactive numbers (issued tokens stay valid).

The simulator never asks for, receives or stores an M-Pesa PIN (Property 48): the
prompt is "approved" by the outcome rules above or by a person's choice (never a PIN).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import itertools
import json
import logging
import math
import re
import secrets
import string
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from simulators.daraja_plan import PushPlans, PushScript, parse_script

log = logging.getLogger(__name__)

NAIROBI = ZoneInfo("Africa/Nairobi")
SANDBOX_SHORT_CODE = "174379"
# The simulator's own published credentials (DESIGN.md §4 local mode); not secrets.
SIMULATOR_CONSUMER_KEY = "simulator-consumer-key"
SIMULATOR_CONSUMER_SECRET = "simulator-consumer-secret"
SANDBOX_PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"

ACCEPTED_MESSAGE = "Success. Request accepted for processing"
QUERY_ACCEPTED = "The service request has been accepted successsfully"  # sic, as Daraja spells it
BEING_PROCESSED = "The transaction is being processed"

# outcome -> (ResultCode, ResultDesc) of the payment itself.
RESULTS: dict[str, tuple[int | str, str]] = {
    "success": (0, "The service request is processed successfully."),
    "insufficient": (1, "The balance is insufficient for the transaction."),
    "cancelled": (1032, "Request canceled by user."),
    "wrong_pin": (2001, "The initiator information is invalid."),
    "unreachable": (1037, "DS timeout user cannot be reached"),
    "expired": (1019, "Transaction has expired"),
    "subscriber_busy": (1001, "Unable to lock subscriber, a transaction is already in process"),
    "system_error": (1025, "An error occurred while sending a push request"),
    "unknown_code": (1031, "Request cancelled by user"),
    "string_code": ("SFC_IC0003", "The operator does not exist."),
}
# Outcomes that change delivery rather than the result (the payment succeeds).
DELIVERY_OUTCOMES = (
    "no_callback",
    "duplicate_callback",
    "delayed_callback",
    "late_success",
    "early_callback",
    "amount_mismatch",
)
OUTCOMES: tuple[str, ...] = (*RESULTS, *DELIVERY_OUTCOMES, "hold")

BY_LAST_DIGIT: dict[str, str] = {
    "0": "success",
    "1": "insufficient",
    "2": "cancelled",
    "3": "wrong_pin",
    "4": "unreachable",
    "5": "no_callback",
    "6": "duplicate_callback",
    "7": "delayed_callback",
    "8": "success",
    "9": "success",
}

# A person's choice on the phone page's M-Pesa prompt -> the outcome it causes.
CHOICES: dict[str, str] = {
    "pay": "success",
    "cancel": "cancelled",
    "wrong_pin": "wrong_pin",
    "insufficient": "insufficient",
}
PERSON = "person"  # take_outcome's answer for a number a person handles (held, awaiting_person)
PROMPT_TIMEOUT_S = 60.0  # an unanswered prompt ends with 1037, as on a real handset

DEFAULT_FAULTS: dict[str, bool | float] = {
    "push_503": False,
    "push_500": False,
    "push_busy": False,
    "query_503": False,
    "oauth_down": False,
    "invalid_token": False,
    "subscriber_lock": False,
    "query_pending_4999": False,
    "slow_seconds": 0.0,
    "query_slow_seconds": 0.0,
    "callback_retries": 0.0,
    "callback_retry_delay": 1.0,
}

_MAX_LOG = 5000
_MAX_TRANSACTIONS = 10_000
_MAX_BODY = 64 * 1024
_PHONE = re.compile(r"254[17]\d{8}")
_SHORT_CODE = re.compile(r"\d{5,7}")
_TIMESTAMP = re.compile(r"\d{14}")
_ACCOUNT_REFERENCE = re.compile(r"[A-Za-z0-9]{1,12}")
_MAX_AMOUNT = 250_000
_CALLBACK_TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass
class SimTransaction:
    """One accepted push as the simulator tracks it (there is no PIN anywhere)."""

    merchant_request_id: str
    checkout_request_id: str
    phone: str
    amount: int
    callback_url: str
    account_reference: str
    transaction_desc: str
    outcome: str
    delay: float
    accepted_at: float  # loop time
    final_at: float  # loop time from which Query reports the result (inf while on hold)
    receipt: str
    transaction_date: int | None = None
    callbacks_sent: int = 0
    awaiting_person: bool = False  # interactive: on hold until a decision or the prompt timeout
    query_override: tuple[int | str, str] | None = None  # late_success: what Query says meanwhile

    @property
    def result(self) -> tuple[int | str, str]:
        """(ResultCode, ResultDesc) the payment ends with."""
        return RESULTS.get(self.outcome, RESULTS["success"])

    def summary(self) -> dict[str, Any]:
        """JSON-friendly view for the control API."""
        code, desc = self.result
        return {
            "MerchantRequestID": self.merchant_request_id,
            "CheckoutRequestID": self.checkout_request_id,
            "phone": self.phone,
            "amount": self.amount,
            "callback_url": self.callback_url,
            "account_reference": self.account_reference,
            "transaction_desc": self.transaction_desc,
            "outcome": self.outcome,
            "result_code": code,
            "result_desc": desc,
            "receipt": self.receipt if code == 0 else None,
            "callbacks_sent": self.callbacks_sent,
            "awaiting_person": self.awaiting_person,
        }


class DarajaSimulator:
    """The simulator's state: tokens, transactions, queued outcomes, faults and the log."""

    def __init__(
        self,
        *,
        consumer_key: str,
        consumer_secret: str,
        short_code: str,
        passkey: str,
        callback_delay: float,
        token_ttl: int,
        late_delay: float,
        prompt_timeout: float = PROMPT_TIMEOUT_S,
    ) -> None:
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.short_code = short_code
        self.passkey = passkey
        self.callback_delay = callback_delay
        self.token_ttl = token_ttl
        self.late_delay = late_delay
        self.prompt_timeout = prompt_timeout
        self.interactive: dict[str, int] = {}  # phone -> how many pages/scripts claim it
        self.tokens: dict[str, float] = {}
        self.transactions: OrderedDict[str, SimTransaction] = OrderedDict()
        self.next_outcomes: deque[tuple[str, float | None]] = deque()
        self.faults: dict[str, bool | float] = dict(DEFAULT_FAULTS)
        self.log: deque[dict[str, Any]] = deque(maxlen=_MAX_LOG)
        self._seq = itertools.count(1)
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self.plans = PushPlans()
        self.callbacks_in_flight = 0  # callback POSTs under way (a chaos run kills during a burst)
        self.callbacks_started = 0  # callback POSTs begun, retries included

    # -- log ---------------------------------------------------------------------------
    def record(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Append a log entry and return it (handlers fill in the status when they answer)."""
        entry = {"seq": next(self._seq), "at": datetime.now(UTC).isoformat(), "kind": kind}
        entry.update(fields)
        self.log.append(entry)
        return entry

    def entries(self, *, kind: str | None = None, endpoint: str | None = None) -> list[dict]:
        """Log entries, optionally only one kind ("request"/"callback") or endpoint."""
        return [
            e
            for e in self.log
            if (kind is None or e["kind"] == kind) and (endpoint is None or e.get("endpoint") == endpoint)
        ]

    # -- tokens ------------------------------------------------------------------------
    def issue_token(self) -> str:
        """Mint a bearer token valid for ``token_ttl`` seconds."""
        alphabet = string.ascii_letters + string.digits
        token = "".join(secrets.choice(alphabet) for _ in range(28))
        self.tokens[token] = _now() + self.token_ttl
        return token

    def token_ok(self, header: str) -> bool:
        """True for ``Bearer <token>`` with a token we issued that has not expired."""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or self.faults["invalid_token"]:
            return False
        expiry = self.tokens.get(token.strip())
        return expiry is not None and _now() < expiry

    def basic_ok(self, header: str) -> bool:
        """True when the Basic credentials are this simulator's consumer key and secret."""
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        key, sep, secret = decoded.partition(":")
        return bool(sep) and (
            secrets.compare_digest(key.encode(), self.consumer_key.encode())
            & secrets.compare_digest(secret.encode(), self.consumer_secret.encode())
        )

    def password_ok(self, password: object, timestamp: str) -> bool:
        """True when Password is base64(shortcode + passkey + timestamp)."""
        expected = base64.b64encode(f"{self.short_code}{self.passkey}{timestamp}".encode())
        return isinstance(password, str) and secrets.compare_digest(password.encode(), expected)

    # -- outcomes ----------------------------------------------------------------------
    def take_outcome(self, phone: str) -> tuple[str, float]:
        """The queued outcome if any, else hold for a person, else the last digit; plus the delay."""
        if self.next_outcomes:
            outcome, delay = self.next_outcomes.popleft()
            return outcome, self.callback_delay if delay is None else delay
        if self.interactive.get(phone):
            return PERSON, self.callback_delay
        return BY_LAST_DIGIT[phone[-1]], self.callback_delay

    # -- interactive mode ----------------------------------------------------------------
    def claim_phones(self, phones: list[str]) -> None:
        """Pushes to these numbers wait for a person's decision (until released)."""
        for phone in phones:
            self.interactive[phone] = self.interactive.get(phone, 0) + 1

    def release_phones(self, phones: list[str]) -> None:
        """Undo one :meth:`claim_phones`; the last-digit rule applies again when none is left."""
        for phone in phones:
            left = self.interactive.get(phone, 0) - 1
            if left > 0:
                self.interactive[phone] = left
            else:
                self.interactive.pop(phone, None)

    def prompts(self) -> list[SimTransaction]:
        """Pushes waiting for a person's decision, oldest first."""
        return [t for t in self.transactions.values() if t.awaiting_person and t.outcome == "hold"]

    def decide(self, tx: SimTransaction, choice: str) -> None:
        """A person answered the prompt (``CHOICES``); the callback follows at once."""
        tx.awaiting_person = False
        self.resolve(tx, CHOICES[choice])

    async def _prompt_timeout(self, tx: SimTransaction) -> None:
        await asyncio.sleep(self.prompt_timeout)
        if tx.awaiting_person and tx.outcome == "hold":
            tx.awaiting_person = False
            self.resolve(tx, "unreachable")

    def pending_for(self, phone: str) -> bool:
        """True when this phone has a push whose result is not known yet."""
        now = _now()
        return any(t.phone == phone and now < t.final_at for t in self.transactions.values())

    def create_transaction(self, body: dict[str, Any], outcome: str, delay: float) -> SimTransaction:
        """Register an accepted push."""
        phone = str(body["PhoneNumber"])
        now = _now()
        person = outcome == PERSON
        outcome = "hold" if person else outcome
        tx = SimTransaction(
            merchant_request_id=f"{secrets.randbelow(90000) + 10000}-{next(self._ids):08d}-1",
            checkout_request_id=self._checkout_id(phone),
            phone=phone,
            amount=_whole(body["Amount"]) or 0,
            callback_url=body["CallBackURL"],
            account_reference=body["AccountReference"],
            transaction_desc=body["TransactionDesc"],
            outcome=outcome,
            delay=delay,
            accepted_at=now,
            final_at=math.inf if outcome == "hold" else now + delay,
            receipt=_receipt(),
            awaiting_person=person,
            query_override=RESULTS["unreachable"] if outcome == "late_success" else None,
        )
        self.transactions[tx.checkout_request_id] = tx
        while len(self.transactions) > _MAX_TRANSACTIONS:
            self.transactions.popitem(last=False)
        return tx

    def _checkout_id(self, phone: str) -> str:
        # 2023-style: ws_CO_ + DDMMYYYYHHMMSS + 3 digits + the phone's last 9 digits.
        stamp = datetime.now(NAIROBI).strftime("%d%m%Y%H%M%S")
        for n in itertools.count(next(self._ids)):
            suffix = f"{n % 1000:03d}"  # always 3 digits, like Daraja's (a clash tries the next n)
            candidate = f"ws_CO_{stamp}{suffix}{phone[-9:]}"
            if candidate not in self.transactions:
                return candidate
        raise AssertionError("unreachable")  # pragma: no cover

    # -- callbacks ---------------------------------------------------------------------
    def schedule(self, tx: SimTransaction) -> None:
        """Complete the push in the background after its delay (a held one: only its prompt timeout)."""
        if tx.outcome == "hold":
            if tx.awaiting_person:
                self._spawn(self._prompt_timeout(tx))
            return
        self._spawn(self._complete(tx))

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def resolve(self, tx: SimTransaction, outcome: str) -> None:
        """Finish a held push now with ``outcome``."""
        tx.outcome = outcome
        tx.delay = 0.0
        tx.final_at = _now()
        self.schedule(tx)

    async def _complete(self, tx: SimTransaction) -> None:
        await asyncio.sleep(max(0.0, tx.delay))
        tx.transaction_date = int(datetime.now(NAIROBI).strftime("%Y%m%d%H%M%S"))
        if tx.outcome == "no_callback":
            return
        if tx.outcome in ("delayed_callback", "late_success"):
            await asyncio.sleep(max(0.0, self.late_delay - tx.delay))
            tx.query_override = None
        body = self.callback_body(tx)
        await self._deliver(tx, body)
        if tx.outcome == "duplicate_callback":
            await self._deliver(tx, body)

    def callback_body(self, tx: SimTransaction) -> dict[str, Any]:
        """The exact body Safaricom POSTs to the CallBackURL."""
        code, desc = tx.result
        stk: dict[str, Any] = {
            "MerchantRequestID": tx.merchant_request_id,
            "CheckoutRequestID": tx.checkout_request_id,
            "ResultCode": code,
            "ResultDesc": desc,
        }
        if code == 0:
            stk["CallbackMetadata"] = {
                "Item": [
                    {"Name": "Amount", "Value": tx.amount - (tx.outcome == "amount_mismatch")},
                    {"Name": "MpesaReceiptNumber", "Value": tx.receipt},
                    {"Name": "Balance"},
                    {"Name": "TransactionDate", "Value": tx.transaction_date},
                    {"Name": "PhoneNumber", "Value": int(tx.phone)},
                ]
            }
        return {"Body": {"stkCallback": stk}}

    async def deliver_now(self, tx: SimTransaction) -> None:
        """``early_callback``: the result is final at once and its callback is sent now."""
        tx.final_at = _now()
        tx.transaction_date = int(datetime.now(NAIROBI).strftime("%Y%m%d%H%M%S"))
        await self._deliver(tx, self.callback_body(tx))

    async def _deliver(self, tx: SimTransaction, body: dict[str, Any]) -> None:
        """POST the callback; retried (when ``callback_retries`` is set) until a 200."""
        retries = int(self.faults["callback_retries"])
        delay = float(self.faults["callback_retry_delay"])
        self.callbacks_in_flight += 1
        try:
            for attempt in range(retries + 1):
                if await self._deliver_once(tx, body, retry=attempt) == 200:
                    return
                if attempt < retries:
                    await asyncio.sleep(delay * 2**attempt)
        finally:
            self.callbacks_in_flight -= 1

    async def _deliver_once(self, tx: SimTransaction, body: dict[str, Any], *, retry: int) -> int | None:
        tx.callbacks_sent += 1
        self.callbacks_started += 1
        started = datetime.now(UTC).isoformat()
        status: int | None = None
        error: str | None = None
        answer: str | None = None
        try:
            if self._session is None or self._session.closed:
                self._session = aiohttp.ClientSession(timeout=_CALLBACK_TIMEOUT)
            async with self._session.post(tx.callback_url, json=body) as response:
                status = response.status
                answer = (await response.text(errors="replace"))[:1000]
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        entry = self.record(
            "callback",
            checkout_request_id=tx.checkout_request_id,
            url=tx.callback_url,
            attempt=tx.callbacks_sent,
            body=body,
            status=status,
            response=answer,
            error=error,
            retry=retry,
        )
        entry["sent_at"] = started
        # Like Safaricom's, our CheckoutRequestIDs end with the subscriber number: log the
        # MerchantRequestID instead.
        log.info("daraja-sim callback %s -> status=%s error=%s", tx.merchant_request_id, status, error)
        return status

    async def close(self) -> None:
        """Cancel pending callbacks and close the HTTP session."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    def reset(self) -> None:
        """Forget transactions, log, queued outcomes, faults and interactive numbers (tokens stay valid)."""
        for task in self._tasks:
            task.cancel()
        self.transactions.clear()
        self.next_outcomes.clear()
        self.faults = dict(DEFAULT_FAULTS)
        self.log.clear()
        self.interactive.clear()
        self.plans.clear()


DARAJA_SIMULATOR: web.AppKey[DarajaSimulator] = web.AppKey("daraja_simulator", DarajaSimulator)


def simulator_state(app: web.Application) -> DarajaSimulator:
    """The state object of an app made by ``create_app`` (for in-process tests and tools)."""
    return app[DARAJA_SIMULATOR]


# -- helpers ---------------------------------------------------------------------------
def _now() -> float:
    return asyncio.get_running_loop().time()


def _request_id() -> str:
    return f"{secrets.randbelow(9000) + 1000}-{secrets.randbelow(90_000_000) + 10_000_000}-1"


def _daraja_error(status: int, code: str, message: str) -> web.Response:
    body = {"requestId": _request_id(), "errorCode": code, "errorMessage": message}
    return web.json_response(body, status=status)


def _bad_request(field: str) -> web.Response:
    return _daraja_error(400, "400.002.02", f"Bad Request - Invalid {field}")


def _invalid_token() -> web.Response:
    return _daraja_error(404, "404.001.03", "Invalid Access Token")


def _receipt() -> str:
    # Like real receipts: year letter (2006 = A), month letter, day (1-9, A=10...), 7 more.
    today = datetime.now(NAIROBI)
    year = string.ascii_uppercase[(today.year - 2006) % 26]
    month = string.ascii_uppercase[today.month - 1]
    day = (string.digits[1:] + string.ascii_uppercase)[today.day - 1]
    alphabet = string.ascii_uppercase + string.digits
    return year + month + day + "".join(secrets.choice(alphabet) for _ in range(7))


def _digits(value: object) -> str | None:
    """Daraja takes numeric fields as JSON numbers or digit strings."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return value
    return None


def _whole(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def _valid_timestamp(value: object) -> bool:
    if not isinstance(value, str) or not _TIMESTAMP.fullmatch(value):
        return False
    try:
        datetime.strptime(value, "%Y%m%d%H%M%S")  # noqa: DTZ007 - format check only
    except ValueError:
        return False
    return True


def _valid_callback_url(value: object) -> bool:
    if not isinstance(value, str) or not value or not value.isascii():
        return False
    if any(ch.isspace() for ch in value) or "mpesa" in value.lower().replace("-", ""):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


async def _json_body(request: web.Request) -> Any:
    """The decoded JSON body, or None when it is missing, too large or not JSON."""
    if request.content_length is not None and request.content_length > _MAX_BODY:
        return None
    try:
        raw = await request.read()  # bounded by the app's client_max_size as well
    except (web.HTTPRequestEntityTooLarge, RequestPayloadError, HttpProcessingError):
        return None  # too large, or broken framing/compression
    if len(raw) > _MAX_BODY:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return None


def _common_error(body: Any) -> web.Response | None:
    """Checks shared by push and query: shape, shortcode, timestamp, password."""
    if not isinstance(body, dict):
        return _daraja_error(400, "400.002.02", "Bad Request - Invalid JSON")
    short_code = _digits(body.get("BusinessShortCode"))
    if short_code is None or not _SHORT_CODE.fullmatch(short_code):
        return _bad_request("BusinessShortCode")
    if not isinstance(body.get("Password"), str) or not body["Password"]:
        return _bad_request("Password")
    if not _valid_timestamp(body.get("Timestamp")):
        return _bad_request("Timestamp")
    return None


def _merchant_error(sim: DarajaSimulator, body: dict[str, Any]) -> web.Response | None:
    if _digits(body.get("BusinessShortCode")) != sim.short_code:
        return _daraja_error(500, "500.001.1001", "Merchant does not exist")
    if not sim.password_ok(body.get("Password"), body["Timestamp"]):
        return _daraja_error(500, "500.001.1001", "[MerchantValidate] - Wrong credentials")
    return None


def _push_field_error(body: dict[str, Any]) -> web.Response | None:
    if body.get("TransactionType") not in ("CustomerPayBillOnline", "CustomerBuyGoodsOnline"):
        return _bad_request("TransactionType")
    amount = _whole(body.get("Amount"))
    if amount is None or not 1 <= amount <= _MAX_AMOUNT:
        return _bad_request("Amount")
    party_a = _digits(body.get("PartyA"))
    if party_a is None or not _PHONE.fullmatch(party_a):
        return _bad_request("PartyA")
    party_b = _digits(body.get("PartyB"))
    if party_b is None or not _SHORT_CODE.fullmatch(party_b):
        return _bad_request("PartyB")
    phone = _digits(body.get("PhoneNumber"))
    if phone is None or not _PHONE.fullmatch(phone):
        return _bad_request("PhoneNumber")
    if not _valid_callback_url(body.get("CallBackURL")):
        return _bad_request("CallBackURL")
    reference = body.get("AccountReference")
    if not isinstance(reference, str) or not _ACCOUNT_REFERENCE.fullmatch(reference):
        return _bad_request("AccountReference")
    desc = body.get("TransactionDesc")
    if not isinstance(desc, str) or not 1 <= len(desc) <= 13:
        return _bad_request("TransactionDesc")
    return None


def _finish(entry: dict[str, Any], response: web.Response) -> web.Response:
    entry["status"] = response.status
    if response.body is not None and isinstance(response.body, bytes):
        with contextlib.suppress(ValueError):
            entry["response"] = json.loads(response.body)
    return response


def _auth_kind(request: web.Request) -> str:
    # Log the scheme only: a simulator log must not become a token store.
    header = request.headers.get("Authorization", "")
    return header.partition(" ")[0].lower() or "none"


def _state(request: web.Request) -> DarajaSimulator:
    return request.config_dict[DARAJA_SIMULATOR]


# -- Daraja endpoints ------------------------------------------------------------------
async def oauth(request: web.Request) -> web.Response:
    """GET /oauth/v1/generate?grant_type=client_credentials (Basic auth)."""
    sim = _state(request)
    entry = sim.record(
        "request",
        endpoint="oauth",
        method=request.method,
        path=request.path,
        auth=_auth_kind(request),
        body=None,
        status=None,
    )
    if sim.faults["oauth_down"]:
        return _finish(entry, _daraja_error(503, "503.001.01", "Service Unavailable"))
    if request.query.get("grant_type") != "client_credentials":
        return _finish(entry, _daraja_error(400, "400.008.02", "Invalid grant type passed"))
    if not sim.basic_ok(request.headers.get("Authorization", "")):
        return _finish(entry, _daraja_error(400, "400.008.01", "Invalid Authentication passed"))
    token = sim.issue_token()
    entry["status"] = 200
    # The token itself is not logged.
    return web.json_response({"access_token": token, "expires_in": str(sim.token_ttl)})


async def _logged_request(request: web.Request, endpoint: str) -> tuple[DarajaSimulator, Any, dict[str, Any]]:
    """The state, the JSON body and a log entry (its status filled in by ``_finish``)."""
    sim = _state(request)
    body = await _json_body(request)
    entry = sim.record(
        "request",
        endpoint=endpoint,
        method=request.method,
        path=request.path,
        auth=_auth_kind(request),
        body=body,
        status=None,
    )
    return sim, body, entry


async def stk_push(request: web.Request) -> web.Response:
    """POST /mpesa/stkpush/v1/processrequest."""
    sim, body, entry = await _logged_request(request, "stk_push")
    if not sim.token_ok(request.headers.get("Authorization", "")):
        return _finish(entry, _invalid_token())
    if sim.faults["push_503"]:
        return _finish(entry, _daraja_error(503, "503.001.01", "Service Unavailable"))
    if sim.faults["push_busy"]:
        return _finish(
            entry,
            _daraja_error(500, "500.003.02", "System is busy. Please try again in few minutes."),
        )
    error = _common_error(body) or _push_field_error(body) or _merchant_error(sim, body)
    if error is not None:
        return _finish(entry, error)
    phone = str(body["PhoneNumber"])
    if sim.faults["subscriber_lock"] and sim.pending_for(phone):
        return _finish(
            entry,
            _daraja_error(
                500,
                "500.001.1001",
                "Unable to lock subscriber, a transaction is already in process for the current subscriber",
            ),
        )
    script = sim.plans.head(phone)
    if script is not None and script.push_503 > 0:
        script.push_503 -= 1  # this push never happened; the next one takes the same script
        return _finish(entry, _daraja_error(503, "503.001.01", "Service Unavailable"))
    script = sim.plans.take(phone)
    if script is not None:
        outcome, delay = script.outcome, sim.callback_delay if script.delay is None else script.delay
    else:
        outcome, delay = sim.take_outcome(phone)
    tx = sim.create_transaction(body, outcome, delay)
    entry["checkout_request_id"] = tx.checkout_request_id
    if outcome == "early_callback":
        await sim.deliver_now(tx)  # the callback arrives before the push is answered
    else:
        sim.schedule(tx)  # the prompt is on its way whatever happens to our answer below
    if sim.faults["push_500"] or (script is not None and script.answer == "500"):
        response = _daraja_error(500, "500.003.1001", "Internal Server Error")
    else:
        response = web.json_response(
            {
                "MerchantRequestID": tx.merchant_request_id,
                "CheckoutRequestID": tx.checkout_request_id,
                "ResponseCode": "0",
                "ResponseDescription": ACCEPTED_MESSAGE,
                "CustomerMessage": ACCEPTED_MESSAGE,
            }
        )
    slow = float(sim.faults["slow_seconds"])
    if script is not None and script.answer == "slow":
        slow = max(slow, script.slow_s)
    if slow > 0:
        await asyncio.sleep(slow)
    return _finish(entry, response)


async def stk_query(request: web.Request) -> web.Response:
    """POST /mpesa/stkpushquery/v1/query."""
    sim, body, entry = await _logged_request(request, "stk_query")
    if not sim.token_ok(request.headers.get("Authorization", "")):
        return _finish(entry, _invalid_token())
    if sim.faults["query_503"]:
        return _finish(entry, _daraja_error(503, "503.001.01", "Service Unavailable"))
    error = _common_error(body)
    if error is None:
        checkout = body.get("CheckoutRequestID")
        if not isinstance(checkout, str) or checkout not in sim.transactions:
            error = _bad_request("CheckoutRequestID")
    error = error or _merchant_error(sim, body)
    if error is not None:
        return _finish(entry, error)
    slow = float(sim.faults["query_slow_seconds"])
    if slow > 0:
        await asyncio.sleep(slow)
    tx = sim.transactions[body["CheckoutRequestID"]]
    entry["checkout_request_id"] = tx.checkout_request_id
    answer: dict[str, Any] = {
        "ResponseCode": "0",
        "ResponseDescription": QUERY_ACCEPTED,
        "MerchantRequestID": tx.merchant_request_id,
        "CheckoutRequestID": tx.checkout_request_id,
    }
    if _now() < tx.final_at:
        if not sim.faults["query_pending_4999"]:
            return _finish(entry, _daraja_error(500, "500.001.1001", BEING_PROCESSED))
        answer |= {"ResultCode": "4999", "ResultDesc": "The transaction is still under processing"}
        return _finish(entry, web.json_response(answer))
    code, desc = tx.query_override or tx.result
    answer |= {"ResultCode": str(code), "ResultDesc": desc}
    return _finish(entry, web.json_response(answer))


# -- control API -----------------------------------------------------------------------
def _control_error(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


async def control_next_outcome(request: web.Request) -> web.Response:
    """POST /control/next-outcome {"outcome": ..., "delay": seconds?}."""
    sim = _state(request)
    body = await _json_body(request)
    if not isinstance(body, dict) or body.get("outcome") not in OUTCOMES:
        return _control_error(f"outcome must be one of: {', '.join(OUTCOMES)}")
    delay = body.get("delay")
    if delay is not None and (
        isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay < 86400
    ):
        return _control_error("delay must be a number of seconds >= 0")
    sim.next_outcomes.append((body["outcome"], None if delay is None else float(delay)))
    return web.json_response({"queued": [o for o, _ in sim.next_outcomes]})


async def control_faults(request: web.Request) -> web.Response:
    """POST /control/faults merges switches; GET shows them."""
    sim = _state(request)
    if request.method == "POST":
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _control_error("body must be a JSON object")
        updated = dict(sim.faults)
        for key, value in body.items():
            if key not in DEFAULT_FAULTS:
                return _control_error(f"unknown fault {key!r}; known: {', '.join(DEFAULT_FAULTS)}")
            if isinstance(DEFAULT_FAULTS[key], bool):
                if not isinstance(value, bool):
                    return _control_error(f"{key} must be true or false")
                updated[key] = value
            else:
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    return _control_error(f"{key} must be a number of seconds >= 0")
                updated[key] = float(value)
        sim.faults = updated
    return web.json_response({"faults": sim.faults})


async def control_resolve(request: web.Request) -> web.Response:
    """POST /control/resolve {"CheckoutRequestID": ..., "outcome": ...} for a held push."""
    sim = _state(request)
    body = await _json_body(request)
    if not isinstance(body, dict):
        return _control_error("body must be a JSON object")
    tx = sim.transactions.get(str(body.get("CheckoutRequestID")))
    if tx is None:
        return web.json_response({"error": "unknown CheckoutRequestID"}, status=404)
    if tx.outcome != "hold":
        return web.json_response({"error": "this push is not on hold"}, status=409)
    outcome = body.get("outcome")
    if outcome not in OUTCOMES or outcome == "hold":
        return _control_error("outcome must be one of the outcomes other than hold")
    sim.resolve(tx, outcome)
    return web.json_response({"resolved": tx.checkout_request_id, "outcome": outcome})


async def control_interactive(request: web.Request) -> web.Response:
    """POST /control/interactive {"phone", "interactive", "prompt_timeout"?}; GET shows the state."""
    sim = _state(request)
    if request.method == "POST":
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _control_error("body must be a JSON object")
        timeout = body.get("prompt_timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 600
        ):
            return _control_error("prompt_timeout must be a number of seconds, more than 0 and at most 600")
        phone = body.get("phone")
        if phone is not None:
            digits = _digits(phone)
            flag = body.get("interactive")
            if digits is None or not _PHONE.fullmatch(digits) or not isinstance(flag, bool):
                return _control_error('give "phone" as 2547XXXXXXXX and "interactive" as true or false')
            if flag:
                sim.interactive[digits] = max(1, sim.interactive.get(digits, 0))
            else:
                sim.interactive.pop(digits, None)
        if timeout is not None:
            sim.prompt_timeout = float(timeout)
    return web.json_response({"interactive": sorted(sim.interactive), "prompt_timeout": sim.prompt_timeout})


async def control_prompts(request: web.Request) -> web.Response:
    """GET /control/prompts: pushes waiting for a person's decision."""
    return web.json_response({"prompts": [t.summary() for t in _state(request).prompts()]})


async def control_decide(request: web.Request) -> web.Response:
    """POST /control/decide {"CheckoutRequestID": ..., "choice": one of ``CHOICES``}."""
    sim = _state(request)
    body = await _json_body(request)
    if not isinstance(body, dict) or body.get("choice") not in CHOICES:
        return _control_error(f"choice must be one of: {', '.join(CHOICES)}")
    tx = sim.transactions.get(str(body.get("CheckoutRequestID")))
    if tx is None:
        return web.json_response({"error": "unknown CheckoutRequestID"}, status=404)
    if not tx.awaiting_person:
        return web.json_response({"error": "this prompt is no longer waiting for an answer"}, status=409)
    sim.decide(tx, body["choice"])
    return web.json_response({"decided": tx.checkout_request_id, "outcome": tx.outcome})


async def control_plan(request: web.Request) -> web.Response:
    """POST /control/plan {"phone": "2547...", "pushes": [script, ...]}; GET: scripts waiting."""
    sim = _state(request)
    if request.method == "POST":
        body = await _json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("pushes"), list):
            return _control_error('give {"phone": "2547XXXXXXXX", "pushes": [{"outcome": ...}, ...]}')
        digits = _digits(body.get("phone"))
        if digits is None or not _PHONE.fullmatch(digits):
            return _control_error('"phone" must be 2547XXXXXXXX or 2541XXXXXXXX')
        scripts: list[PushScript] = []
        for item in body["pushes"]:
            parsed = parse_script(item, OUTCOMES)
            if isinstance(parsed, str):
                return _control_error(parsed)
            scripts.append(parsed)
        return web.json_response({"phone_waiting": sim.plans.add(digits, scripts)})
    return web.json_response({"waiting": sim.plans.waiting()})


async def control_expire_tokens(request: web.Request) -> web.Response:
    """POST /control/expire-tokens: every issued token stops working."""
    sim = _state(request)
    sim.tokens.clear()
    return web.json_response({"expired": True})


async def control_log(request: web.Request) -> web.Response:
    """GET /control/log[?since=SEQ]."""
    sim = _state(request)
    try:
        since = int(request.query.get("since", "0"))
    except ValueError:
        return _control_error("since must be an integer")
    return web.json_response({"entries": [e for e in sim.log if e["seq"] > since]})


async def control_transactions(request: web.Request) -> web.Response:
    """GET /control/transactions."""
    sim = _state(request)
    return web.json_response({"transactions": [t.summary() for t in sim.transactions.values()]})


async def control_reset(request: web.Request) -> web.Response:
    """POST /control/reset."""
    _state(request).reset()
    return web.json_response({"reset": True})


async def _close_state(app: web.Application) -> None:
    await app[DARAJA_SIMULATOR].close()


def create_app(
    *,
    consumer_key: str = SIMULATOR_CONSUMER_KEY,
    consumer_secret: str = SIMULATOR_CONSUMER_SECRET,
    short_code: str = SANDBOX_SHORT_CODE,
    passkey: str = SANDBOX_PASSKEY,
    callback_delay: float = 1.0,
    token_ttl: int = 3599,
    late_delay: float = 130.0,
    prompt_timeout: float = PROMPT_TIMEOUT_S,
) -> web.Application:
    """Build the simulator app; mount it anywhere (``add_subapp``) or serve it standalone."""
    app = web.Application()
    app[DARAJA_SIMULATOR] = DarajaSimulator(
        consumer_key=consumer_key,
        consumer_secret=consumer_secret,
        short_code=short_code,
        passkey=passkey,
        callback_delay=callback_delay,
        token_ttl=token_ttl,
        late_delay=late_delay,
        prompt_timeout=prompt_timeout,
    )
    app.router.add_get("/oauth/v1/generate", oauth)
    app.router.add_post("/mpesa/stkpush/v1/processrequest", stk_push)
    app.router.add_post("/mpesa/stkpushquery/v1/query", stk_query)
    app.router.add_post("/control/next-outcome", control_next_outcome)
    app.router.add_get("/control/faults", control_faults)
    app.router.add_post("/control/faults", control_faults)
    app.router.add_post("/control/resolve", control_resolve)
    app.router.add_get("/control/interactive", control_interactive)
    app.router.add_post("/control/interactive", control_interactive)
    app.router.add_get("/control/prompts", control_prompts)
    app.router.add_post("/control/decide", control_decide)
    app.router.add_post("/control/expire-tokens", control_expire_tokens)
    app.router.add_get("/control/plan", control_plan)
    app.router.add_post("/control/plan", control_plan)
    app.router.add_get("/control/log", control_log)
    app.router.add_get("/control/transactions", control_transactions)
    app.router.add_post("/control/reset", control_reset)
    # on_shutdown runs before the server closes connections: stop callbacks first.
    app.on_shutdown.append(_close_state)
    return app


def run_standalone(host: str, port: int, **kwargs: Any) -> None:
    """Serve the simulator at the root of http://host:port until interrupted (blocking)."""
    web.run_app(create_app(**kwargs), host=host, port=port)


def main(argv: list[str] | None = None) -> None:
    """``python -m simulators.daraja --port 8090``."""
    parser = argparse.ArgumentParser(description="Local Daraja (M-Pesa) simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--callback-delay", type=float, default=1.0)
    parser.add_argument("--late-delay", type=float, default=130.0)
    parser.add_argument("--token-ttl", type=int, default=3599)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    run_standalone(
        args.host,
        args.port,
        callback_delay=args.callback_delay,
        late_delay=args.late_delay,
        token_ttl=args.token_ttl,
    )


if __name__ == "__main__":
    main()
