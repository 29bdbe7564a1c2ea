from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from .context import client_ip
from .service import Actor, record


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs):
    record(Actor.for_user(user), "auth.login", user, ip=client_ip(request) if request else None)


@receiver(user_logged_out)
def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        record(Actor.for_user(user), "auth.logout", user, ip=client_ip(request) if request else None)


@receiver(user_login_failed)
def _login_failed(sender, credentials, request=None, **kwargs):
    # credentials has the password removed by Django already; keep only the name tried.
    username = str(credentials.get("username", ""))[:150]
    record(
        Actor.system("anonymous"),
        "auth.login_failed",
        None,
        {"username": username},
        ip=client_ip(request) if request else None,
        object_label=username,
    )
