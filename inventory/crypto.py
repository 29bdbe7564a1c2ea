"""Encryption of secrets stored in the database (BMC passwords, SSH private keys).

MultiFernet over PROVISIONER_FIELD_KEYS: new values are encrypted with the first key, any
key decrypts, and rotate_all() re-encrypts every stored value under the first. A value that no key decrypts raises
FieldDecryptError: the caller never gets ciphertext back as if it were the password.

Every column holding such a value is an EncryptedTextField, whose accessors are the only callers of
encrypt() and decrypt(). That declaration is the registry key rotation works from (encrypted_fields()),
so `manage.py rotate_field_keys` re-encrypts a secret added later without anyone remembering to extend
it; a test checks that nothing else calls encrypt().
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction

from audit.service import record


class FieldDecryptError(Exception):
    """A stored secret could not be decrypted with any configured key."""


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("PROVISIONER_FIELD_KEYS is empty: no key to encrypt stored secrets with.")
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


class EncryptedTextField(models.TextField):
    """A column of Fernet ciphertext under PROVISIONER_FIELD_KEYS: the one way a model stores a secret.

    The attribute holds the ciphertext as stored. The field gives its model, the way Django adds
    get_FOO_display(), ``has_<secret>`` (a property), ``set_<secret>(plaintext)`` and ``get_<secret>()``,
    <secret> being the field's name without its ``_ciphertext`` ending. Decrypting on demand rather than on
    load keeps a row whose key was lost listable and editable. ``describe(instance)`` names the secret in
    a decrypt error. A model that checks a secret before storing it defines its own ``set_<secret>``, which
    ends in ``store()``.
    """

    def __init__(self, *args, describe: Callable[[Any], str] | None = None, **kwargs):
        self.describe = describe or (lambda instance: f"{self.name} of {instance}")
        kwargs.setdefault("editable", False)
        kwargs.setdefault("blank", True)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, _, args, kwargs = super().deconstruct()
        # In the database it is plain text; encryption happens above it. Migrations see a TextField, so
        # marking an existing secret column encrypted changes no schema.
        return name, "django.db.models.TextField", args, kwargs

    def contribute_to_class(self, cls, name, private_only=False):
        super().contribute_to_class(cls, name, private_only=private_only)
        secret = name.removesuffix("_ciphertext")
        accessors = {
            f"has_{secret}": property(lambda instance: self.is_set(instance)),
            f"set_{secret}": lambda instance, plaintext: self.store(instance, plaintext),
            f"get_{secret}": lambda instance: self.read(instance),
        }
        for attribute, accessor in accessors.items():
            if attribute not in cls.__dict__:  # the model's own (checking) setter wins
                setattr(cls, attribute, accessor)

    def is_set(self, instance) -> bool:
        return bool(getattr(instance, self.attname))

    def store(self, instance, plaintext: str) -> None:
        setattr(instance, self.attname, encrypt(plaintext))

    def read(self, instance) -> str:
        """The plaintext ("" when none is stored). Raises FieldDecryptError when no configured key decrypts it."""
        ciphertext = getattr(instance, self.attname)
        return decrypt(ciphertext, what=self.describe(instance)) if ciphertext else ""


def encrypted_fields() -> list[EncryptedTextField]:
    """Every encrypted column of every installed model."""
    return [
        field
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if isinstance(field, EncryptedTextField)
    ]


def field_label(field: EncryptedTextField) -> str:
    return f"{field.model._meta.label_lower}.{field.name}"


def _stored(field: EncryptedTextField, *, lock: bool) -> Iterator[tuple[int, str]]:
    rows = field.model._default_manager.exclude(**{field.attname: ""}).order_by("pk")
    if lock:
        rows = rows.select_for_update()
    yield from rows.values_list("pk", field.attname).iterator(chunk_size=1000)


def _describe(field: EncryptedTextField, pk) -> str:
    return f"{field.model._default_manager.filter(pk=pk).first()} [{field_label(field)} id {pk}]"


class UnreadableSecrets(Exception):
    """Stored values that no key in PROVISIONER_FIELD_KEYS decrypts; ``args[0]`` names each."""


def rotate_all(actor) -> Counter:
    """Re-encrypt every stored secret under the newest key, in one transaction with its audit entry: all or
    nothing, since a half-rotated database would need the old key forever. Returns how many values each
    field held; raises UnreadableSecrets, having changed nothing, when any value is not decryptable."""
    counts: Counter = Counter()
    unreadable = []
    with transaction.atomic(durable=True):
        for field in encrypted_fields():
            counts[field_label(field)] += 0
            for pk, ciphertext in _stored(field, lock=True):
                try:
                    fresh = fernet().rotate(ciphertext.encode()).decode()
                except InvalidToken:
                    unreadable.append(_describe(field, pk))
                    continue
                field.model._default_manager.filter(pk=pk).update(**{field.attname: fresh})
                counts[field_label(field)] += 1
        if unreadable:
            raise UnreadableSecrets(unreadable)
        # As [field, count] pairs: field names such as "password_ciphertext" are secret-looking keys to redact().
        record(actor, "crypto.keys_rotated", None, {"counts": sorted(map(list, counts.items()))})
    return counts


def check_all() -> Counter:
    """Decrypt every stored secret with the configured keys (nothing is written): the step before an old
    key is dropped. Returns the counts per field; raises UnreadableSecrets naming every value that fails."""
    counts: Counter = Counter()
    unreadable = []
    for field in encrypted_fields():
        counts[field_label(field)] += 0
        for pk, ciphertext in _stored(field, lock=False):
            try:
                fernet().decrypt(ciphertext.encode())
            except InvalidToken:
                unreadable.append(_describe(field, pk))
            else:
                counts[field_label(field)] += 1
    if unreadable:
        raise UnreadableSecrets(unreadable)
    return counts
