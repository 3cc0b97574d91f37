"""Typed errors of the Daraja client.

The three families tell the payment engine what it may do next (DESIGN.md §4):

* ``DarajaUnavailable`` — the request provably did not reach Daraja, or Daraja said it
  is unavailable: nothing was sent to the phone, so a later retry is safe.
* ``DarajaOutcomeUnknown`` — the request may have been processed (read time-out after
  sending, an unexplained 5xx): the prompt may be on the phone; never push again, query.
* ``DarajaRejected`` — Daraja refused the request (4xx / validation / credentials):
  nothing was sent to the phone; retrying the same request will not help.

``StkRequestInvalid`` is raised by the client itself, before anything is sent.
``InvalidCallback`` is raised by the callback parser for a body that is not a Daraja
STK result.
"""

from __future__ import annotations

from typing import Any


class DarajaError(Exception):
    """Base of every error the Daraja client raises; keeps Daraja's error triple."""

    def __init__(
        self,
        message: str,
        *,
        request_id: str | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.error_code = error_code
        self.error_message = error_message
        self.http_status = http_status


class DarajaUnavailable(DarajaError):
    """The request did not reach Daraja or Daraja said it is unavailable: safe to retry later."""


class DarajaOAuthError(DarajaUnavailable):
    """OAuth failed (after its own retries), so nothing was sent: safe to retry later."""


class DarajaAuthFailed(DarajaOAuthError):
    """OAuth refused the consumer key/secret: no push was attempted (fix the credentials)."""


class DarajaOutcomeUnknown(DarajaError):
    """The request may have been processed: the prompt may be on the phone; query, never resend."""


class DarajaRejected(DarajaError):
    """Daraja refused the request (4xx or validation): nothing was sent to the phone."""


class DarajaWrongCredentials(DarajaRejected):
    """500.001.1001 "[MerchantValidate] - Wrong credentials": the Password/passkey is wrong."""


class DarajaMerchantNotFound(DarajaRejected):
    """500.001.1001 "Merchant does not exist": the BusinessShortCode is unknown to Daraja."""


class DarajaSubscriberBusy(DarajaRejected):
    """500.001.1001 "Unable to lock subscriber": another prompt is open on that phone."""


class StkRequestInvalid(DarajaError):
    """The client refused to send an STK request; ``field`` names the Daraja field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class InvalidCallback(ValueError):
    """A callback body that is not a Daraja STK result; ``reason`` says why (safe to log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def daraja_error_fields(body: Any) -> dict[str, str | None]:
    """Pick requestId / errorCode / errorMessage out of a decoded Daraja error body."""
    if not isinstance(body, dict):
        return {"request_id": None, "error_code": None, "error_message": None}
    return {
        "request_id": _opt_str(body.get("requestId")),
        "error_code": _opt_str(body.get("errorCode")),
        "error_message": _opt_str(body.get("errorMessage")),
    }


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)
