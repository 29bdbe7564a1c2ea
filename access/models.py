"""How the product reaches a site's machines over SSH: the site's jump hosts (an ordered ProxyJump
chain), the login it uses on installed machines, and the host key pinned for each machine."""

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

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
