"""The per-attempt callback secret: drawn at push time, only its HMAC stored.

The callback URL carries the secret (``/hooks/lnm/<secret>``); the intake hashes what
arrives and looks the attempt up by the hash, so a leaked database row cannot forge a
callback. Shared by the push (``initiate``) and the intake (``intake``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SECRET_BYTES = 32


def new_callback_secret() -> str:
    """A fresh, URL-safe callback secret."""
    return secrets.token_urlsafe(SECRET_BYTES)


def callback_secret_hash(secret_key: str, secret: str) -> str:
    """HMAC-SHA256 of a callback secret under SECRET_KEY (only this is stored)."""
    return hmac.new(secret_key.encode(), secret.encode(), hashlib.sha256).hexdigest()
