"""Login rate limiting: after too many failed logins from one address or for one username, further
attempts are refused for a while, without even checking the password (so guessing stops).

The count is kept for the name Django authenticates, not for what was posted: the login form strips
and NFKC-normalises the username before it looks the user up, so " admin", "admin\\t" and full-width
"ａｄｍｉｎ" are all `admin`, and must all meet `admin`'s lockout. The check sits in the login forms,
after that cleaning and before authentication, so every login page (ours and the admin site's) has it.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.dispatch import receiver

from audit.context import client_ip
from audit.service import Actor, record
from core import queues

PREFIX = "provisioner:login-failures:"
THROTTLED = "throttled"  # the form error's code


def _keys(ip: str | None, username: str) -> list[str]:
    keys = []
    if ip:
        keys.append(f"{PREFIX}ip:{ip}")
    if username:
        # As the user model compares names: exactly (AbstractUser's names are case-sensitive, "Admin" is
        # another account). Hashed: the key space in Redis should not be a list of usernames people tried.
        keys.append(f"{PREFIX}user:{hashlib.sha256(username.encode()).hexdigest()[:32]}")
    return keys


def blocked_for(ip: str | None, username: str) -> int:
    """Seconds until login may be tried again, or 0. ``username`` as the login form cleaned it."""
    conn = queues.connection()
    for key in _keys(ip, username):
        count = int(conn.get(key) or 0)
        if count >= settings.LOGIN_MAX_FAILURES:
            return max(1, conn.ttl(key))
    return 0


@receiver(user_login_failed)
def _count_failure(sender, credentials, request=None, **kwargs):
    # credentials["username"] is what authenticate() was given: the form's cleaned name.
    conn = queues.connection()
    pipe = conn.pipeline()
    for key in _keys(client_ip(request) if request else None, str(credentials.get("username", ""))):
        pipe.incr(key)
        pipe.expire(key, settings.LOGIN_FAILURE_WINDOW_S, nx=True)
    pipe.execute()


@receiver(user_logged_in)
def _clear_user_failures(sender, request, user, **kwargs):
    queues.connection().delete(*_keys(None, user.get_username()))


class _Throttled:
    """Refuse before authenticating while the address or the cleaned username is locked out."""

    def clean(self):
        username = self.cleaned_data.get("username")
        if username is not None:  # None: the name is invalid, so nothing would be authenticated anyway
            wait = blocked_for(client_ip(self.request) if self.request else None, username)
            if wait:
                record(
                    Actor.system("anonymous"),
                    "auth.login_throttled",
                    None,
                    {"username": username},
                    object_label=username,
                )
                minutes = (wait + 59) // 60
                raise ValidationError(
                    f"Too many failed logins. Try again in {minutes} minute{'s' if minutes > 1 else ''}.",
                    code=THROTTLED,
                )
        return super().clean()


class ThrottledAuthenticationForm(_Throttled, AuthenticationForm):
    pass


class ThrottledAdminAuthenticationForm(_Throttled, AdminAuthenticationForm):
    pass


def answers_429(login_view):
    """A refused login answers 429 Too Many Requests, so scripts can tell it from a wrong password."""

    def view(request, *args, **kwargs):
        response = login_view(request, *args, **kwargs)
        form = (getattr(response, "context_data", None) or {}).get("form")
        if form is not None and form.is_bound and form.has_error(NON_FIELD_ERRORS, THROTTLED):
            response.status_code = 429
        return response

    return view


class ThrottledLoginView(auth_views.LoginView):
    redirect_authenticated_user = True
    authentication_form = ThrottledAuthenticationForm

    @classmethod
    def as_view(cls, **initkwargs):
        return answers_429(super().as_view(**initkwargs))
