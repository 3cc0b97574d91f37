"""Who may read the service's operational details: ``/metrics`` and the details of ``/healthz``.

One rule for both: when ``METRICS_TOKEN`` is set, a caller must send
``Authorization: Bearer <METRICS_TOKEN>`` (compared in constant time, as bytes, so no header
value can raise); when it is not set, local mode (loopback only) is open and every other mode
is closed — outside local mode the service listens on every interface by default, and the
counts of payments, bookings and outbox rows are the practice's business.
"""

from __future__ import annotations

import enum
import hmac

from aiohttp import web

from core.config import Settings

BEARER = "bearer "


class OpsAccess(enum.Enum):
    GRANTED = "granted"
    BAD_TOKEN = "bad_token"  # METRICS_TOKEN is set; the request did not carry it
    NOT_CONFIGURED = "not_configured"  # outside local mode without METRICS_TOKEN


def ops_access(request: web.Request, settings: Settings) -> OpsAccess:
    """Whether ``request`` may see operational details."""
    token = settings.metrics_token
    if token is None:
        return OpsAccess.GRANTED if settings.local_mode else OpsAccess.NOT_CONFIGURED
    header = request.headers.get("Authorization", "")
    given = header[len(BEARER):].strip() if header[: len(BEARER)].lower() == BEARER else ""
    expected = token.encode()
    if hmac.compare_digest(given.encode("utf-8", errors="replace"), expected):
        return OpsAccess.GRANTED
    return OpsAccess.BAD_TOKEN
