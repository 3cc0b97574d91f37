"""Encryption of stored settings (Property 45): Fernet (AES-128-CBC + HMAC-SHA256) under a key
derived from SECRET_KEY with HKDF (``core.keys``) and its own purpose label, so this key is never
the one that signs cookies or callback secrets."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken

from core.keys import derive_fernet_key

STORED_SETTINGS_PURPOSE = "smiling-steps/stored-settings/v1"


class SettingUnreadable(ValueError):
    """A stored secret does not decrypt under this SECRET_KEY (changed key, or edited row)."""


def settings_key(secret_key: str) -> bytes:
    """The Fernet key for stored settings under ``secret_key``."""
    return derive_fernet_key(secret_key, STORED_SETTINGS_PURPOSE)


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
