"""Login rate limiting: after too many failed logins from one address or for one username, further
attempts are refused for a while, without even checking the password (so guessing stops)."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver

from audit.context import client_ip
from audit.service import Actor, record
from provisioner import queues

PREFIX = "provisioner:login-failures:"


def _keys(ip: str | None, username: str) -> list[str]:
    keys = []
    if ip:
        keys.append(f"{PREFIX}ip:{ip}")
    if username:
        # Hashed: the key space in Redis should not be a list of usernames people tried.
        keys.append(f"{PREFIX}user:{hashlib.sha256(username.lower().encode()).hexdigest()[:32]}")
    return keys


def blocked_for(ip: str | None, username: str) -> int:
    """Seconds until login may be tried again, or 0."""
    conn = queues.connection()
    for key in _keys(ip, username):
        count = int(conn.get(key) or 0)
        if count >= settings.LOGIN_MAX_FAILURES:
            return max(1, conn.ttl(key))
    return 0


@receiver(user_login_failed)
def _count_failure(sender, credentials, request=None, **kwargs):
    conn = queues.connection()
    pipe = conn.pipeline()
    for key in _keys(client_ip(request) if request else None, str(credentials.get("username", ""))):
        pipe.incr(key)
        pipe.expire(key, settings.LOGIN_FAILURE_WINDOW_S, nx=True)
    pipe.execute()


@receiver(user_logged_in)
def _clear_user_failures(sender, request, user, **kwargs):
    queues.connection().delete(*_keys(None, user.get_username()))


class ThrottledLoginView(auth_views.LoginView):
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        username = request.POST.get("username", "")[:150]
        wait = blocked_for(client_ip(request), username)
        if wait:
            record(
                Actor.system("anonymous"), "auth.login_throttled", None, {"username": username}, object_label=username
            )
            form = self.get_form()
            minutes = (wait + 59) // 60
            form.add_error(None, f"Too many failed logins. Try again in {minutes} minute{'s' if minutes > 1 else ''}.")
            response = self.form_invalid(form)
            response.status_code = 429
            return response
        return super().post(request, *args, **kwargs)
