"""Encryption of stored settings (Property 45): Fernet (AES-128-CBC + HMAC-SHA256) under a key
derived from SECRET_KEY with HKDF-SHA256 and its own info label, so this key is never the one
that signs cookies or callback secrets."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HKDF_INFO = b"smiling-steps/settings-encryption/v1"
HKDF_SALT = b"smiling-steps-settings"


class SettingUnreadable(ValueError):
    """A stored secret does not decrypt under this SECRET_KEY (changed key, or edited row)."""


def settings_key(secret_key: str) -> bytes:
    """The Fernet key (url-safe base64 of 32 bytes) for ``secret_key``."""
    if not secret_key:
        raise ValueError("SECRET_KEY is needed to encrypt settings")
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=HKDF_SALT, info=HKDF_INFO).derive(
        secret_key.encode("utf-8")
    )
    return base64.urlsafe_b64encode(raw)


class SettingsCipher:
    """Encrypts and decrypts setting values; one per process."""

    def __init__(self, secret_key: str) -> None:
        self._fernet = Fernet(settings_key(secret_key))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError, ValueError):
            raise SettingUnreadable("stored value does not decrypt with this SECRET_KEY") from None
