"""Per-user API tokens for automation: ``Authorization: Token <key>``.

Only a SHA-256 of the key is stored, so a database dump yields no usable token; the key is
shown once, when it is made. A token acts as its user, with the user's role at the time of
each request (taking a user out of a group takes the power from their tokens too).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from audit.service import Actor, record

KEY_PREFIX = "prv_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What uses it, e.g. 'ansible on jump01'.")
    # The first characters of the key, so a person can tell their tokens apart; not enough to use one.
    prefix = models.CharField(max_length=12, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        app_label = "accounts"
        ordering = ["-id"]
        verbose_name = "API token"

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"


@transaction.atomic
def create_token(user, name: str, *, actor: Actor) -> tuple[ApiToken, str]:
    """Make a token for ``user``; returns the row and the key, which is never available again."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name.strip()[:100] or "unnamed", prefix=key[:12], key_hash=hash_key(key)
    )
    record(actor, "api_token.create", token, {"user": user.get_username(), "name": token.name})
    return token, key


@transaction.atomic
def revoke_token(token_id: int, *, user, actor: Actor) -> None:
    token = ApiToken.objects.select_for_update().get(pk=token_id, user=user)
    record(actor, "api_token.revoke", token, {"user": user.get_username(), "name": token.name})
    token.delete()


# last_used_at is for people deciding what to revoke; minute precision spares a write per request.
_TOUCH_EVERY_S = 60


def user_for_key(key: str):
    """The active user a key belongs to, or None."""
    if not key.startswith(KEY_PREFIX):
        return None
    digest = hash_key(key)
    token = ApiToken.objects.select_related("user").filter(key_hash=digest).first()
    if token is None or not hmac.compare_digest(token.key_hash, digest) or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > _TOUCH_EVERY_S:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user
