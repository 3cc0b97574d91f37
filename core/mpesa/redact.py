"""Make Daraja identifiers safe to log.

Since 2023 a CheckoutRequestID ends with the payer's MSISDN without ``254``
(``ws_CO_`` + DDMMYYYYHHMMSS + 3 digits + 9 phone digits), so logging it raw would leak
the phone number (Property 47). Logs keep the id's shape and the phone's last 4 digits.
"""

from __future__ import annotations

import re

# ws_CO_ + DDMMYYYYHHMMSS + a sequence number (3 digits usually, more seen) + the 9-digit subscriber.
_WITH_PHONE = re.compile(r"(ws_CO_\d{15,})(\d{5})(\d{4})")


def redact_checkout_id(checkout_request_id: str) -> str:
    """Mask the embedded phone digits of a CheckoutRequestID, keeping its last 4."""
    match = _WITH_PHONE.fullmatch(checkout_request_id)
    if match is None:
        return checkout_request_id
    return f"{match.group(1)}*****{match.group(3)}"
