"""What each of an install's credentials opens, and the boot credential's one use (installs/tokens.py).

The boot credential sits in files anyone on the provisioning network can read, so it is spent by its
first use: the agent's registration, or the installer's fetch of the answer file that carries the
callback token. From then on it opens nothing. Presented again, it is refused and the install fails:
the control plane cannot tell whether the second party or the first was the machine, so it hands
nothing more to either and a technician looks (docs/design.md, Threat model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.context import source_ip
from audit.service import Actor, record

from . import engine, render, tokens
from .models import ACTIVE_STATES, Install

# What a boot credential opens, by install method: the agent registers; installers fetch answer files.
REGISTRATION = "agent registration"


def _active(field: str, token: str) -> Install | None:
    if not tokens.usable(token):
        return None
    digest = tokens.token_hash(token)
    install = Install.objects.select_related("machine").filter(**{field: digest}).first()
    # The lookup by hash proved possession; the constant-time compare keeps timing the same either way.
    if install is None or not tokens.matches(token, getattr(install, field)) or install.state not in ACTIVE_STATES:
        return None
    return install


def agent_install(token: str) -> Install | None:
    """The active install whose agent token this is (issued at registration), or None."""
    install = _active("agent_token_hash", token)
    if install is not None and install.agent_token_used_at is None:
        # The agent has its token: from now on a lost registration answer cannot be asked for again.
        install.agent_token_used_at = timezone.now()
        Install.objects.filter(pk=install.pk, agent_token_used_at__isnull=True).update(
            agent_token_used_at=install.agent_token_used_at
        )
    return install


def callback_install(token: str) -> Install | None:
    """The active install whose installer callback token this is, or None."""
    return _active("callback_token_hash", token)


def boot_install(token: str) -> Install | None:
    """The active install whose boot credential this is, spent or not: the caller decides which use it is."""
    return _active("boot_token_hash", token)


@dataclass(frozen=True)
class Handover:
    """What the agent's registration answer carries: the tokens that never appear in a boot file."""

    token: str = field(repr=False)
    callback_token: str = field(repr=False)


class BootCredentialReused(Exception):
    """A second use of a spent boot credential; the install has been failed. The text is for the caller."""


def _spend(install: Install, use: str) -> None:
    now = timezone.now()
    install.boot_token_spent_at = now
    install.boot_token_spent_from = source_ip.get()
    install.save(update_fields=["boot_token_spent_at", "boot_token_spent_from"])
    record(_actor(install), "install.boot_credential_used", install, {"use": use})


def _actor(install: Install) -> Actor:
    return Actor.agent(f"boot credential of {install.machine.hostname}")


def _when(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S} UTC"


def refuse_reuse(install: Install, use: str) -> BootCredentialReused:
    """A spent boot credential presented again (install locked): audit it, fail the install, and return
    the refusal for the caller to raise once this transaction has committed (the failure must stick)."""
    now = timezone.now()
    first_at, first_from = install.boot_token_spent_at, install.boot_token_spent_from or "an unknown address"
    here = source_ip.get() or "an unknown address"
    record(
        _actor(install),
        "install.boot_credential_reused",
        install,
        {"use": use, "first_used_at": first_at.isoformat(), "first_used_from": str(first_from)},
    )
    engine.fail(
        install,
        "BootCredentialReused",
        f"The boot credential in {install.machine.hostname}'s boot config was used a second time ({use} from "
        f"{here} at {_when(now)}); its first use was at {_when(first_at)} from {first_from}. Either someone "
        "else read it from the TFTP root or /boot/ipxe and used it, or the machine network-booted its installer "
        "or memory OS twice. The control plane cannot tell which party was the machine, so the install stopped "
        "and every token it handed out is dead: neither gets anything more. Check who can reach the "
        "provisioning network and the machine's console, then retry the install.",
        step=engine.current_step(install),
        actor=_actor(install),
    )
    return BootCredentialReused(
        f"This boot credential was already used at {_when(first_at)}; it opens nothing twice. "
        "The install has been stopped: retry it from the control plane."
    )


def _may_ask_again(install: Install, key: str) -> bool:
    """The agent's registration answer was lost: the same key may have it again, within the window and
    only until the agent token it carried is first used. Only the agent that registered knows the key."""
    return (
        bool(install.agent_token_hash)
        and bool(key)
        and tokens.matches(key, install.agent_key_hash)
        and install.agent_token_used_at is None
        and timezone.now() - install.boot_token_spent_at <= timedelta(seconds=settings.AGENT_REGISTER_RETRY_S)
    )


def exchange_for_agent(install: Install, key: str) -> tuple[Handover | None, BootCredentialReused | None]:
    """The boot credential presented at registration (install locked, the machine's MAC checked by the
    caller): its first use hands over the agent and callback tokens; a later one is refused, but for
    the agent asking again for an answer it lost."""
    if install.boot_token_spent_at is not None:
        if not _may_ask_again(install, key):
            return None, refuse_reuse(install, REGISTRATION)
        record(_actor(install), "agent.register_again", install, {"reason": "the registration answer was lost"})
    else:
        _spend(install, REGISTRATION)
        install.agent_token_hash = tokens.token_hash(tokens.agent_token(install.token_nonce))
        install.agent_key_hash = tokens.token_hash(key) if key else ""
        install.save(update_fields=["agent_token_hash", "agent_key_hash"])
    return Handover(tokens.agent_token(install.token_nonce), tokens.callback_token(install.token_nonce)), None


@dataclass(frozen=True)
class AnswerFile:
    status: int
    body: str


# Files that carry no secret may be fetched with the boot credential without spending it: cloud-init
# reads meta-data (instance id, host name) before user-data, which carries the callback token.
NO_SECRET_FILES = frozenset({"meta-data"})


@transaction.atomic
def answer_file(install_id: int, name: str) -> AnswerFile | BootCredentialReused:
    """The installer fetches ``name`` with the boot credential: the first fetch of a file that carries
    the callback token spends it; any use after that is refused and fails the install."""
    install = engine.lock(install_id)
    if install.state not in ACTIVE_STATES:
        return AnswerFile(404, "No active install for this token.\n")
    if install.boot_token_spent_at is not None:
        return refuse_reuse(install, f"fetch of {name}")
    try:
        body = render.answer_file(
            install.plan, tokens.boot_token(install.token_nonce), tokens.callback_token(install.token_nonce), name
        )
    except render.pxe.TemplateError as exc:
        # The installer gets an error it shows on the console; the install fails with the template's line.
        engine.fail(
            install,
            "TemplateError",
            f"The {install.plan.profile.name} profile's template cannot be rendered for "
            f"{install.machine.hostname}: {exc}. Fix the profile and start a new install.",
            step=engine.current_step(install),
        )
        return AnswerFile(500, f"template error: {exc}\n")
    if name not in NO_SECRET_FILES:
        _spend(install, f"fetch of {name}")
    return AnswerFile(200, body)
