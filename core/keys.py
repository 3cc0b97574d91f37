"""Keys derived from SECRET_KEY: one HKDF-SHA256 derivation per purpose, never the raw secret.

A distinct ``purpose`` label per use (session cookies, stored credentials, …) means a key
leaked from one use says nothing about another, and all of them change with SECRET_KEY.
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ADMIN_SESSION_PURPOSE = "smiling-steps/admin-session-cookie/v1"


def derive_key(secret_key: str, purpose: str, *, length: int = 32) -> bytes:
    """``length`` bytes derived from ``secret_key`` for ``purpose`` (HKDF-SHA256, no salt)."""
    if not secret_key:
        raise ValueError("SECRET_KEY is empty")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=purpose.encode("utf-8"))
    return hkdf.derive(secret_key.encode("utf-8"))


def derive_fernet_key(secret_key: str, purpose: str) -> bytes:
    """A Fernet key (url-safe base64 of 32 derived bytes) for ``purpose``."""
    return base64.urlsafe_b64encode(derive_key(secret_key, purpose))
