"""Encryption of secrets stored in the database (BMC passwords).

MultiFernet over PROVISIONER_FIELD_KEYS: new values are encrypted with the first key, any
key decrypts, and rotate() re-encrypts under the first. A value that no key decrypts raises
FieldDecryptError: the caller never gets ciphertext back as if it were the password.
"""

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class FieldDecryptError(Exception):
    """A stored secret could not be decrypted with any configured key."""


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("PROVISIONER_FIELD_KEYS is empty: no key to encrypt BMC passwords with.")
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "PROVISIONER_FIELD_KEYS holds a value that is not a Fernet key (32 url-safe base64-encoded bytes); "
            "generate one with:\n  python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        ) from exc


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.PROVISIONER_FIELD_KEYS))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str, *, what: str = "secret") -> str:
    try:
        return fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise FieldDecryptError(
            f"The stored {what} cannot be decrypted with any key in PROVISIONER_FIELD_KEYS. "
            "The key it was written with is missing: restore it, or set the password again."
        ) from None


def rotate(ciphertext: str, *, what: str = "secret") -> str:
    try:
        return fernet().rotate(ciphertext.encode()).decode()
    except InvalidToken:
        raise FieldDecryptError(
            f"The stored {what} cannot be decrypted with any key in PROVISIONER_FIELD_KEYS, so it cannot be rotated."
        ) from None
