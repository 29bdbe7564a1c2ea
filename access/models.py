"""How the product reaches a site's machines over SSH: the site's jump hosts (an ordered ProxyJump
chain), the login it uses on installed machines, and the host key pinned for each machine; and how people
do: the site's SSH user CA, its session policy, and every interactive session, recorded."""

from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from inventory import crypto
from inventory.models import Machine, Site
from inventory.validators import validate_bmc_address

from . import keys


def validate_host_keys(text: str) -> None:
    try:
        parsed = keys.parse_host_keys(text)
    except keys.BadKey as exc:
        raise ValidationError(str(exc)) from None
    if not parsed:
        raise ValidationError("Paste at least one host key.")


class JumpHost(models.Model):
    """One hop of a site's bastion chain. Hop 1 is reached directly, each later hop through the one
    before it, and the site's machines through the last (OpenSSH ProxyJump hop1,hop2,...)."""

    audit_secret_fields = {"private_key_ciphertext": "private_key"}

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="jump_hosts")
    order = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1)], help_text="Position in the chain; 1 is reached first."
    )
    address = models.CharField(
        max_length=253,
        validators=[validate_bmc_address],
        help_text="IP address or DNS name, as the previous hop (or, for hop 1, provisioner) reaches it.",
    )
    port = models.PositiveIntegerField(default=22, validators=[MinValueValidator(1), MaxValueValidator(65535)])
    username = models.CharField(max_length=64)
    # Gives has_private_key and get_private_key() (for the transport only); set_private_key is below.
    private_key_ciphertext = crypto.EncryptedTextField(describe=lambda hop: f"private key of jump host {hop.alias}")
    host_key = models.TextField(
        validators=[validate_host_keys],
        help_text="The jump host's public host key(s), pinned: known_hosts lines, ssh-keyscan output or the "
        "server's /etc/ssh/ssh_host_*_key.pub. A host offering any other key is refused.",
    )

    class Meta:
        ordering = ["site__slug", "order"]
        constraints = [
            models.UniqueConstraint(
                fields=["site", "order"],
                name="jumphost_order_unique_per_site",
                violation_error_message="This site already has a jump host at this position in the chain.",
            ),
            models.CheckConstraint(condition=Q(order__gte=1), name="jumphost_order_positive"),
            models.CheckConstraint(condition=Q(port__gte=1, port__lte=65535), name="jumphost_port_range"),
        ]

    def __str__(self):
        return f"{self.alias} ({self.username}@{self.address}:{self.port})"

    def __repr__(self):
        return f"<JumpHost {self.pk}: site={self.site_id} hop={self.order} {self.username}@{self.address}:{self.port}>"

    @property
    def alias(self) -> str:
        """The Host name of this hop in the exported ssh_config."""
        return f"jump-{self.site.slug}-{self.order}"

    def set_private_key(self, plaintext: str) -> None:
        keys.parse_private_key(plaintext)  # refuse to store what the transport could not load
        self._meta.get_field("private_key_ciphertext").store(self, plaintext)

    def pinned_keys(self):
        return keys.parse_host_keys(self.host_key)


class SiteLogin(models.Model):
    """How provisioner logs in to a site's installed machines.

    Per site, not per OS profile: the jump hosts are per site, so a site is already the unit of network
    trust, and a leaked key then opens one datacentre, not every machine installed with a profile.
    Profiles keep the technicians' own keys (ssh_authorized_keys); an install adds this key's public half.
    """

    audit_secret_fields = {"private_key_ciphertext": "private_key"}

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="ssh_login")
    username = models.CharField(
        max_length=64, default="root", help_text="The account installs put the public key into."
    )
    port = models.PositiveIntegerField(
        default=22, validators=[MinValueValidator(1), MaxValueValidator(65535)], help_text="SSH port of the machines."
    )
    # Gives has_private_key and get_private_key() (for the transport only); set_private_key is below.
    private_key_ciphertext = crypto.EncryptedTextField(
        describe=lambda login: f"machine login key of site {login.site.slug}"
    )
    public_key = models.TextField(
        editable=False, blank=True, help_text="The public half; installs add it to the login user's authorized_keys."
    )

    class Meta:
        verbose_name = "site login"
        constraints = [
            models.CheckConstraint(condition=Q(port__gte=1, port__lte=65535), name="sitelogin_port_range"),
        ]

    def __str__(self):
        return f"{self.username}@ machines of {self.site.slug}"

    def __repr__(self):
        return f"<SiteLogin {self.pk}: site={self.site_id} user={self.username!r} port={self.port}>"

    def set_private_key(self, plaintext: str) -> None:
        self.public_key = keys.public_key_line(plaintext, comment=f"provisioner@{self.site.slug}")
        self._meta.get_field("private_key_ciphertext").store(self, plaintext)


class HostKeySource(models.TextChoices):
    INSTALL = "install"  # recorded on first contact inside an install's verification window
    OPERATOR = "operator"  # pasted by a person (a machine provisioner did not install)


class MachineHostKey(models.Model):
    """The SSH host key pinned for a machine. Every install generates a new one on the machine, so the
    install's verification replaces it; everything else refuses a machine offering another key."""

    machine = models.OneToOneField(Machine, on_delete=models.CASCADE, related_name="ssh_host_key")
    host_key = models.TextField(
        validators=[validate_host_keys], help_text="The machine's public host key(s), known_hosts format."
    )
    source = models.CharField(max_length=16, choices=HostKeySource.choices, default=HostKeySource.OPERATOR)
    pinned_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "machine host key"

    def __str__(self):
        return f"host key of {self.machine.hostname}"

    def pinned_keys(self):
        return keys.parse_host_keys(self.host_key)

    @property
    def fingerprints(self) -> str:
        return keys.describe(self.pinned_keys())


# -- audited interactive sessions (issue 22) ---------------------------------------------------------------------

_LOGIN_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")


def validate_principals(text: str) -> None:
    bad = [name for name in text.split() if not _LOGIN_NAME.match(name)]
    if bad:
        raise ValidationError(
            f"Not a login name: {', '.join(bad[:5])}. Use lowercase letters, digits, '_', '.' and '-', "
            "up to 32 characters, separated by spaces."
        )


class SiteCA(models.Model):
    """A site's SSH user certificate authority. It signs one short-lived certificate per interactive session;
    the site's installed machines trust it (TrustedUserCAKeys), so no person's own key lives on any machine.

    Rotation keeps the previous public key trusted (``trusted_keys()``) until the next rotation, so machines
    not yet given the new key still accept sessions; the previous private key is not kept: nothing new is
    signed with it."""

    audit_secret_fields = {"private_key_ciphertext": "private_key"}

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="ssh_ca")
    # Gives has_private_key and get_private_key() (for signing only).
    private_key_ciphertext = crypto.EncryptedTextField(describe=lambda ca: f"SSH user CA key of site {ca.site.slug}")
    public_key = models.TextField(editable=False, help_text="The current CA key, one OpenSSH public key line.")
    previous_public_key = models.TextField(
        editable=False, blank=True, help_text="The key before the last rotation, still trusted by machines."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "site SSH CA"
        verbose_name_plural = "site SSH CAs"

    def __str__(self):
        return f"SSH user CA of {self.site.slug}"

    def __repr__(self):
        return f"<SiteCA {self.pk}: site={self.site_id}>"

    @classmethod
    def for_site(cls, site: Site) -> SiteCA:
        """The site's CA, made (a new ed25519 key) on first use."""
        ca = cls.objects.filter(site=site).first()
        if ca is not None:
            return ca
        private = keys.generate_private_key()
        ca = cls(site=site, public_key=keys.public_key_line(private, comment=f"provisioner-user-ca@{site.slug}"))
        ca.set_private_key(private)
        try:
            with transaction.atomic():
                ca.save()
        except IntegrityError:  # another process made it first: theirs is the one
            return cls.objects.get(site=site)
        return ca

    def trusted_keys(self) -> list[str]:
        """The lines of /etc/ssh/provisioner-user-ca.pub: the current key first, then the previous one."""
        return [line for line in (self.public_key.strip(), self.previous_public_key.strip()) if line]


class MinRole(models.TextChoices):
    TECHNICIAN = "technician"  # technicians and admins may open sessions
    ADMIN = "admin"  # only admins may


class SessionPolicy(models.Model):
    """Who may open interactive sessions on a site's machines, as which login, and for how long."""

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="ssh_policy")
    min_role = models.CharField(
        max_length=16, choices=MinRole.choices, default=MinRole.TECHNICIAN, help_text="The lowest role that may."
    )
    technician_principals = models.CharField(
        max_length=500,
        blank=True,
        validators=[validate_principals],
        help_text="Logins a technician's certificate names (space separated); the first is the default.",
    )
    admin_principals = models.CharField(
        max_length=500,
        blank=True,
        validators=[validate_principals],
        help_text="Logins an admin's certificate names, besides the technicians' ones; the first is the default.",
    )
    reason_required_protected = models.BooleanField(
        "reason required on protected machines", default=True, help_text="A session on a protected machine says why."
    )
    idle_timeout_s = models.PositiveIntegerField(
        "idle timeout (s)",
        default=900,
        validators=[MinValueValidator(1), MaxValueValidator(86400)],
        help_text="A session with neither input nor output for this long ends.",
    )
    max_length_s = models.PositiveIntegerField(
        "maximum length (s)",
        default=3600,
        validators=[MinValueValidator(1), MaxValueValidator(86400)],
        help_text="A session ends after this long; its certificate is valid exactly as long.",
    )
    record_input = models.BooleanField(default=True, help_text="Record keystrokes as well as what was shown.")

    class Meta:
        verbose_name = "SSH session policy"
        verbose_name_plural = "SSH session policies"
        constraints = [
            models.CheckConstraint(condition=Q(idle_timeout_s__gte=1), name="sessionpolicy_idle_positive"),
            models.CheckConstraint(condition=Q(max_length_s__gte=1), name="sessionpolicy_length_positive"),
        ]

    def __str__(self):
        return f"SSH session policy of {self.site.slug}"

    @classmethod
    def for_site(cls, site: Site) -> SessionPolicy:
        """The site's policy, made with the defaults on first use: both roles log in as the site login's user."""
        login = SiteLogin.objects.filter(site=site).first()
        user = login.username if login else "root"
        policy, _ = cls.objects.get_or_create(
            site=site, defaults={"technician_principals": user, "admin_principals": user}
        )
        return policy

    def principals_for(self, role: str) -> list[str]:
        """The logins a certificate for this role names, the default first."""
        names = self.technician_principals.split()
        if role == MinRole.ADMIN:
            names = self.admin_principals.split() + names
        return list(dict.fromkeys(names))


class SessionClient(models.TextChoices):
    BROWSER = "browser"  # the terminal page
    CLI = "cli"  # manage.py ssh
    API = "api"  # the REST API


class SessionEnd(models.TextChoices):
    # blank while the session runs
    CLOSED = "closed", "closed by the user"
    EXITED = "exited", "the shell exited"
    IDLE = "idle", "idle timeout"
    EXPIRED = "expired", "maximum length reached"  # the certificate's end
    ENDED = "ended", "ended by an admin"
    FAILED = "failed", "could not connect"
    SHUTDOWN = "shutdown", "the web process stopped"  # or died: its heartbeat stopped


class ShellSession(models.Model):
    """One interactive shell on a machine, recorded (asciicast v2 at ``cast_path``). Append-only: once ended,
    its recorded fields are never changed, and only the retention sweep deletes it."""

    machine = models.ForeignKey(Machine, null=True, on_delete=models.SET_NULL, related_name="+")
    hostname = models.CharField(max_length=255)  # kept when the machine is deleted: the recording stays readable
    site = models.ForeignKey(Site, null=True, on_delete=models.SET_NULL, related_name="+")
    opened_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    opened_by_label = models.CharField(max_length=150)
    client = models.CharField(max_length=16, choices=SessionClient.choices)
    principal = models.CharField(max_length=32)  # the login on the machine
    via = models.CharField(max_length=500, blank=True)  # the bastion chain, for people
    reason = models.CharField(max_length=500, blank=True)
    cert_key_id = models.CharField(max_length=150, blank=True)
    cert_serial = models.BigIntegerField(null=True, blank=True)
    cert_valid_before = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=16, choices=SessionEnd.choices, blank=True)
    end_message = models.CharField(max_length=500, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The process holding the session writes this every SSH_SESSION_FLUSH_S: an open session whose beat
    # stopped has no process left (killed, host down) and is ended as "shutdown".
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    bytes_in = models.BigIntegerField(default=0)  # typed
    bytes_out = models.BigIntegerField(default=0)  # shown
    cast_bytes = models.BigIntegerField(default=0)  # the recording's size on disk
    truncated = models.BooleanField(default=False)  # the recording hit SSH_RECORDING_MAX_BYTES
    transcript = models.TextField(blank=True)  # what the terminal showed, escapes stripped, for search

    class Meta:
        ordering = ("-started_at",)
        indexes = [
            models.Index(fields=["machine", "-started_at"], name="shellsession_machine"),
            models.Index(fields=["opened_by", "-started_at"], name="shellsession_user"),
            models.Index(fields=["ended_at"], name="shellsession_ended"),
        ]

    def __str__(self) -> str:
        return f"SSH session {self.pk} on {self.hostname}"

    def save(self, *args, **kwargs):
        if getattr(self, "_loaded_ended", False):
            raise SessionAppendOnly(f"{self} has ended; its record is not changed.")
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("ssh-session", args=[self.pk])

    @property
    def active(self) -> bool:
        return self.ended_at is None

    @property
    def cast_path(self):
        return settings.SSH_RECORDING_DIR / f"session-{self.pk}.cast"

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._loaded_ended = instance.__dict__.get("ended_at") is not None
        return instance


class SessionAppendOnly(Exception):
    """Something tried to change an ended session's record."""
