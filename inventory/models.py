"""Sites, racks, machines, their NICs and BMCs, and the OS profiles they can be installed with. Tags are in
tag_model.py, PDUs and their outlets in pdu_model.py."""

import ipaddress

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q
from django.urls import reverse

from core.text import a
from provisioner import bmc, pxe

from . import crypto
from .fields import HostnameField, IPAddressField, MACAddressField
from .pdu_model import (  # noqa: F401  (the app's models, and migration 0007's choices)
    MAX_PDU_OUTLETS,
    Pdu,
    PduOutlet,
    SnmpAuthProtocol,
    SnmpPrivProtocol,
    SnmpVersion,
    pdu_profile_choices,
)
from .tag_model import Tag
from .validators import validate_bmc_address, validate_hostname, validate_sha256

HOSTNAME_REGEX = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
MAC_REGEX = r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$"
MAX_RACK_U = 60


class Site(models.Model):
    """A datacentre (or a room of one) with its own PXE server and RQ worker."""

    audit_secret_fields = {"bmc_password_ciphertext": "bmc_password"}

    slug = models.SlugField(max_length=50, unique=True, help_text="Short name; the site's job queue is site-<slug>.")
    name = models.CharField(max_length=100)
    tftp_root = models.CharField(
        max_length=255, help_text="Directory the site's TFTP server serves; per-MAC boot configs are written here."
    )
    base_url = models.URLField(
        help_text="URL machines at this site use to reach provisioner (boot scripts, answer files, agent API)."
    )
    domain = models.CharField(max_length=200, blank=True, help_text="DNS domain of the site's machines.")
    dns_servers = models.CharField(
        max_length=200, blank=True, help_text="Comma-separated resolvers for machines with static addresses."
    )
    # Default BMC credentials: a BMC with no user (or no password) of its own logs in with the site's.
    bmc_username = models.CharField(
        "default BMC user", max_length=64, blank=True, help_text="For every BMC of the site that names no user."
    )
    bmc_password_ciphertext = crypto.EncryptedTextField(
        describe=lambda site: f"default BMC password of site {site.slug}"
    )
    # The memory OS: what commissioning, tests, erase and discovery boot (an image profile's kernel and initrd).
    memory_os = models.ForeignKey(
        "OSProfile",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        limit_choices_to={"method": "image"},
        verbose_name="memory OS profile",
        help_text="An image profile whose kernel and initrd boot the agent: commissioning, tests, release "
        "and discovery use it.",
    )
    discovery = models.BooleanField(
        "discover unknown machines",
        default=False,
        help_text="A MAC not in inventory that network-boots gets the memory OS and registers its hardware; "
        "off: it boots its local disk.",
    )
    provisioning_networks = models.CharField(
        max_length=500,
        blank=True,
        help_text="Comma-separated networks (CIDR) of the provisioning LAN; discovery registrations from other "
        "addresses are refused.",
    )
    create_bmc_user = models.BooleanField(
        "create a BMC user when commissioning",
        default=False,
        help_text="Commissioning adds provisioner's own BMC user in-band (ipmitool) with a random password, "
        "so new machines need no typed credentials.",
    )

    class Meta:
        ordering = ["slug"]

    def __str__(self):
        return self.name

    @property
    def queue_name(self) -> str:
        return f"site-{self.slug}"

    def clean(self):
        super().clean()
        try:
            self.networks()
        except ValueError as exc:
            raise ValidationError({"provisioning_networks": str(exc)}) from None
        if self.discovery and not self.provisioning_networks.strip():
            raise ValidationError(
                {"provisioning_networks": "Discovery needs the provisioning networks it accepts registrations from."}
            )
        if self.discovery and self.memory_os_id is None:
            raise ValidationError({"memory_os": "Discovery boots the memory OS: choose its profile."})

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The provisioning networks; ValueError naming the one that is not a network."""
        found = []
        for item in filter(None, (part.strip() for part in self.provisioning_networks.split(","))):
            try:
                found.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"“{item}” is not a network: write it as 10.0.0.0/24.") from None
        return found


class Rack(models.Model):
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="racks")
    name = models.CharField(max_length=50)
    height_u = models.PositiveSmallIntegerField(
        default=42, validators=[MinValueValidator(1), MaxValueValidator(MAX_RACK_U)], help_text="Height in rack units."
    )

    class Meta:
        ordering = ["site__slug", "name"]
        constraints = [
            models.UniqueConstraint(fields=["site", "name"], name="rack_name_unique_per_site"),
            models.CheckConstraint(condition=Q(height_u__gte=1, height_u__lte=MAX_RACK_U), name="rack_height_u_range"),
        ]

    def __str__(self):
        return f"{self.site.slug}/{self.name}"


class MachineStatus(models.TextChoices):
    """Where a machine is in its life; inventory/lifecycle.py holds the moves between them."""

    NEW = "new"  # known to inventory (typed in, imported or accepted from discovery), never commissioned
    COMMISSIONING = "commissioning"  # the memory OS collects its hardware facts
    READY = "ready"  # commissioned (or released, erased) and free to deploy
    TESTING = "testing"  # hardware tests run in the memory OS
    DEPLOYING = "deploying"  # an install writes an OS onto it
    DEPLOYED = "deployed"  # the last install succeeded; the machine runs its OS
    RELEASING = "releasing"  # leaving service: its disks are erased, then it is ready again
    FAILED = "failed"  # the last operation failed; its install says why
    BROKEN = "broken"  # a hardware test failed, or a person marked it broken; status_reason says why
    MAINTENANCE = "maintenance"  # taken out of service by a person


# An operation's install holds the machine: its power is expected to change meanwhile.
BUSY_STATUSES = (
    MachineStatus.COMMISSIONING,
    MachineStatus.TESTING,
    MachineStatus.DEPLOYING,
    MachineStatus.RELEASING,
)


# The BMC layer's enums as choices: one list of values (provisioner.bmc.base says what each means).
PowerState = models.TextChoices("PowerState", [(state.name, state.value) for state in bmc.PowerState])


class BootMode(models.TextChoices):
    """How the machine's firmware boots: what every boot-device request asks the BMC for."""

    UNKNOWN = "", "unknown (the BMC's mode is left alone)"
    UEFI = "uefi", "UEFI"
    LEGACY = "legacy", "legacy BIOS"


class Depth(models.TextChoices):
    """How deep a machine is and, when half, which face of the rack it is mounted on (NetBox's full depth and
    face). Two half-depth machines on opposite faces may share rack units."""

    FULL = "full", "full depth"
    FRONT = "front", "half depth, front"
    REAR = "rear", "half depth, rear"


# The half a half-depth machine may share rack units with: the one on the opposite face.
OPPOSITE_HALF = {Depth.FRONT: Depth.REAR, Depth.REAR: Depth.FRONT}


class Machine(models.Model):
    hostname = HostnameField(unique=True, validators=[validate_hostname])
    rack = models.ForeignKey(Rack, null=True, blank=True, on_delete=models.PROTECT, related_name="machines")
    position_u = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Lowest rack unit the machine occupies (1 is the bottom)."
    )
    height_u = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(MAX_RACK_U)]
    )
    depth = models.CharField(
        max_length=5,
        choices=Depth.choices,
        default=Depth.FULL,
        help_text="A half-depth machine takes its rack units on one face only; the site overview draws the rear.",
    )
    serial = models.CharField(max_length=100, blank=True)
    vendor = models.CharField(max_length=100, blank=True)
    model = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=16, choices=MachineStatus.choices, default=MachineStatus.NEW)
    status_reason = models.CharField(
        max_length=500, blank=True, help_text="Why it is broken, failed or in maintenance, in words."
    )
    status_changed_at = models.DateTimeField(null=True, blank=True)
    protected = models.BooleanField(
        default=False, help_text="In production: refuses installs and power-off until unprotected with a reason."
    )
    power_state = models.CharField(max_length=8, choices=PowerState.choices, default=PowerState.UNKNOWN)
    power_state_at = models.DateTimeField(null=True, blank=True, help_text="When the power state was last read.")
    facts = models.JSONField(default=dict, blank=True, help_text="Hardware facts reported by the agent.")
    # What the last commissioning found, in columns the machine list and the API filter on (inventory/facts.py).
    commissioned_at = models.DateTimeField(null=True, blank=True, editable=False)
    cpu_model = models.CharField("CPU model", max_length=200, blank=True, editable=False)
    cpu_cores = models.PositiveIntegerField("CPU cores", null=True, blank=True, editable=False)
    memory_bytes = models.PositiveBigIntegerField(null=True, blank=True, editable=False)
    disk_count = models.PositiveSmallIntegerField(null=True, blank=True, editable=False)
    ssd_count = models.PositiveSmallIntegerField("SSDs", null=True, blank=True, editable=False)
    hdd_count = models.PositiveSmallIntegerField("HDDs", null=True, blank=True, editable=False)
    nvme_count = models.PositiveSmallIntegerField("NVMe disks", null=True, blank=True, editable=False)
    nic_max_speed_mbps = models.PositiveIntegerField("fastest NIC (Mb/s)", null=True, blank=True, editable=False)
    # What the last ICMP echo to the host (its primary NIC's address) showed, from the site's worker.
    host_reachable = models.BooleanField(null=True, editable=False, help_text="None: never pinged, or no address.")
    host_latency_ms = models.FloatField(null=True, editable=False)
    host_checked_at = models.DateTimeField(null=True, editable=False)
    host_last_error = models.CharField(max_length=500, blank=True, editable=False)
    boot_mode = models.CharField(
        max_length=8,
        choices=BootMode.choices,
        default=BootMode.UNKNOWN,
        blank=True,
        help_text="Set here, or learned when the agent registers (it booted by UEFI or not).",
    )
    tags = models.ManyToManyField(Tag, blank=True, related_name="machines", help_text="Labels to find it by.")

    class Meta:
        ordering = ["hostname"]
        constraints = [
            models.CheckConstraint(condition=Q(hostname__regex=HOSTNAME_REGEX), name="machine_hostname_rfc1123"),
            models.CheckConstraint(
                condition=Q(rack__isnull=True, position_u__isnull=True)
                | Q(rack__isnull=False, position_u__isnull=False),
                name="machine_rack_and_position_together",
            ),
            models.CheckConstraint(
                condition=Q(position_u__isnull=True) | Q(position_u__gte=1), name="machine_position_u_positive"
            ),
            models.CheckConstraint(
                condition=Q(height_u__gte=1, height_u__lte=MAX_RACK_U), name="machine_height_u_range"
            ),
            # No two machines overlapping in one rack is also an exclusion constraint on
            # PostgreSQL (migration 0002); SQLite has only the check in clean().
        ]
        indexes = [models.Index(fields=["serial"], name="machine_serial_idx")]

    def __str__(self):
        return self.hostname

    def get_absolute_url(self):
        return reverse("admin:inventory_machine_change", args=[self.pk])

    @property
    def uefi(self) -> bool | None:
        """What boot-device requests ask for: True UEFI, False legacy, None (unknown) the BMC's mode unchanged."""
        return {BootMode.UEFI: True, BootMode.LEGACY: False}.get(self.boot_mode)

    @property
    def top_u(self) -> int | None:
        return None if self.position_u is None else self.position_u + self.height_u - 1

    def clean(self):
        super().clean()
        errors = {}
        if self.rack_id is not None and self.position_u is None:
            errors["position_u"] = "A racked machine needs its position (lowest U)."
        if self.rack_id is None and self.position_u is not None:
            errors["rack"] = "A position was given without a rack."
        if errors:
            raise ValidationError(errors)
        if self.rack_id is None or not self.height_u:
            return
        rack = self.rack
        if self.top_u > rack.height_u:
            raise ValidationError(
                {
                    "position_u": f"{u_span(self.position_u, self.top_u)} does not fit in rack {rack}, "
                    f"which is {rack.height_u}U high."
                }
            )
        clash = (
            Machine.objects.filter(rack_id=self.rack_id, position_u__lte=self.top_u)
            .filter(position_u__gte=self.position_u - F("height_u") + 1)
            .exclude(pk=self.pk)
            .exclude(depth=OPPOSITE_HALF.get(self.depth, "-"))
            .order_by("position_u")
            .first()
        )
        if clash is not None:
            face = "" if clash.depth == Depth.FULL else f" at the {clash.depth}"
            raise ValidationError(
                {
                    "position_u": f"{u_span(self.position_u, self.top_u)} in rack {rack} overlaps {clash.hostname}, "
                    f"which occupies {u_span(clash.position_u, clash.top_u)}{face}."
                }
            )

    @property
    def pxe_nic(self):
        """The NIC the machine network-boots from, or None."""
        for nic in self.nics.all():
            if nic.is_pxe:
                return nic
        return None

    @property
    def host_address(self) -> str | None:
        """The host's address for ping: the primary NIC's (the PXE NIC's, else the first with one)."""
        return primary_address(self.nics.all())


def u_span(low: int, high: int) -> str:
    """Rack units as people say them: "U3" for one, "U3–U4" for several."""
    return f"U{low}" if low == high else f"U{low}–U{high}"


def primary_address(nics) -> str | None:
    with_ip = sorted((nic for nic in nics if nic.ip), key=lambda nic: (not nic.is_pxe, nic.mac))
    return with_ip[0].ip if with_ip else None


class NIC(models.Model):
    machine = models.ForeignKey(Machine, on_delete=models.CASCADE, related_name="nics")
    name = models.CharField(max_length=32, blank=True, help_text="A label, e.g. 'port 1'. Installs find NICs by MAC.")
    mac = MACAddressField("MAC address", unique=False)
    is_pxe = models.BooleanField("PXE NIC", default=False, help_text="The NIC the machine network-boots from.")
    ip = IPAddressField("IP address", null=True, blank=True)
    prefix_len = models.PositiveSmallIntegerField("prefix length", null=True, blank=True)
    gateway = IPAddressField(null=True, blank=True)
    vlan = models.PositiveSmallIntegerField("VLAN", null=True, blank=True)
    # Learned by commissioning: what the NIC is and, over LLDP, the switch port it is cabled to.
    driver = models.CharField(max_length=64, blank=True, editable=False)
    firmware = models.CharField(max_length=100, blank=True, editable=False)
    speed_mbps = models.PositiveIntegerField("speed (Mb/s)", null=True, blank=True, editable=False)
    link = models.BooleanField(null=True, editable=False)
    switch_name = models.CharField(max_length=255, blank=True, editable=False, help_text="LLDP system name.")
    switch_chassis = models.CharField(max_length=255, blank=True, editable=False, help_text="LLDP chassis id.")
    switch_port = models.CharField(max_length=255, blank=True, editable=False, help_text="LLDP port id.")
    lldp_seen = models.BooleanField(
        null=True, editable=False, help_text="None: never listened; False: listened and heard no switch."
    )

    class Meta:
        verbose_name = "NIC"
        ordering = ["machine__hostname", "-is_pxe", "mac"]
        constraints = [
            models.UniqueConstraint(
                fields=["mac"], name="nic_mac_unique", violation_error_message="Another NIC already has this MAC."
            ),
            models.UniqueConstraint(
                fields=["machine"],
                condition=Q(is_pxe=True),
                name="nic_one_pxe_per_machine",
                violation_error_message="This machine already has a PXE NIC; a machine boots from exactly one.",
            ),
            models.CheckConstraint(condition=Q(mac__regex=MAC_REGEX), name="nic_mac_canonical"),
            models.CheckConstraint(
                condition=Q(prefix_len__isnull=True) | Q(prefix_len__lte=128), name="nic_prefix_len_range"
            ),
            models.CheckConstraint(
                condition=Q(vlan__isnull=True) | Q(vlan__gte=1, vlan__lte=4094), name="nic_vlan_range"
            ),
            models.CheckConstraint(
                condition=Q(ip__isnull=False) | Q(prefix_len__isnull=True, gateway__isnull=True),
                name="nic_addressing_needs_ip",
            ),
        ]

    def __str__(self):
        return f"{self.mac}" + (f" ({self.name})" if self.name else "")

    def validate_constraints(self, exclude=None):
        # The constraint's own message names neither the MAC nor who has it; this one says both, on the field.
        if self.mac and "mac" not in (exclude or ()):
            owner = NIC.objects.filter(mac=self.mac).exclude(pk=self.pk).select_related("machine").first()
            if owner is not None:
                host = owner.machine.hostname
                whose = f"{host}'s {owner.name}" if owner.name else f"a NIC of {host}"
                raise ValidationError({"mac": f"{self.mac} is already {whose}."})
        super().validate_constraints(exclude)

    def clean(self):
        super().clean()
        try:
            address = ipaddress.ip_address(self.ip) if self.ip else None
            gateway = ipaddress.ip_address(self.gateway) if self.gateway else None
        except ValueError:
            return  # clean_fields() has already reported the malformed address
        if address is None:
            if self.prefix_len is not None:
                raise ValidationError({"prefix_len": "A prefix length needs an IP address."})
            if self.gateway:
                raise ValidationError({"gateway": "A gateway needs an IP address."})
            return
        if self.prefix_len is None:
            raise ValidationError({"prefix_len": f"Give the prefix length of {self.ip} (e.g. 24)."})
        if self.prefix_len > address.max_prefixlen:
            raise ValidationError(
                {"prefix_len": f"/{self.prefix_len} is too long for an IPv{address.version} address."}
            )
        if gateway is not None:
            network = ipaddress.ip_interface(f"{self.ip}/{self.prefix_len}").network
            if gateway.version != address.version or gateway not in network:
                raise ValidationError({"gateway": f"Gateway {self.gateway} is not in {network}."})
        if self.vlan is not None and not 1 <= self.vlan <= 4094:
            raise ValidationError({"vlan": f"VLAN {self.vlan} is outside 1–4094."})


BmcDriver = models.TextChoices("BmcDriver", [(name.name, (name.value, name.label)) for name in bmc.DriverName])


def bmc_driver_choices() -> list[tuple[str, str]]:
    """Every registered driver (built in and plug-ins): a callable, so installing a driver needs no migration."""
    return bmc.registry.choices()


class CredentialResult(models.TextChoices):
    OK = "ok"  # the BMC accepted the credentials
    REJECTED = "rejected"  # the BMC refused them (wrong user or password, or too little privilege)
    UNREACHABLE = "unreachable"  # no answer, or the login could not finish: nothing is known of the credentials
    SKIPPED = "skipped"  # not tried: no credentials to try, or another command held the BMC


class BMC(models.Model):
    """The out-of-band controller of a machine. Its password is encrypted at rest and write-only."""

    audit_secret_fields = {"password_ciphertext": "password", "new_user_password_ciphertext": "new user's password"}

    machine = models.OneToOneField(Machine, on_delete=models.CASCADE, related_name="bmc")
    driver = models.CharField(max_length=16, choices=bmc_driver_choices, default=BmcDriver.IPMI)
    address = models.CharField(max_length=253, validators=[validate_bmc_address], help_text="IP address or DNS name.")
    port = models.PositiveIntegerField(default=623, validators=[MinValueValidator(1), MaxValueValidator(65535)])
    username = models.CharField(max_length=64, blank=True, help_text="Blank: the site's default BMC user.")
    # Blank (with a blank username or not): the site's default BMC password.
    # Gives has_password, set_password(plaintext) and get_password() (for the driver only).
    password_ciphertext = crypto.EncryptedTextField(describe=lambda bmc: f"BMC password of {bmc.machine.hostname}")
    # What the last contact with the BMC showed (ping or power read), for the UI and alerts.
    reachable = models.BooleanField(null=True, editable=False, help_text="None: never contacted.")
    latency_ms = models.FloatField(null=True, editable=False)
    checked_at = models.DateTimeField(null=True, editable=False)
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    last_error = models.CharField(max_length=500, blank=True, editable=False)
    # The last credential test: one login attempt, never repeated (inventory/credentials_check.py).
    credentials_result = models.CharField(max_length=12, choices=CredentialResult.choices, blank=True, editable=False)
    credentials_checked_at = models.DateTimeField(null=True, editable=False)
    # The password of the BMC user commissioning is creating in-band, until the agent reports it made: then it
    # becomes the BMC's password (installs/callbacks.py).
    new_user_password_ciphertext = crypto.EncryptedTextField(
        describe=lambda bmc: f"new BMC user's password of {bmc.machine.hostname}"
    )

    class Meta:
        verbose_name = "BMC"
        constraints = [
            models.CheckConstraint(condition=Q(port__gte=1, port__lte=65535), name="bmc_port_range"),
        ]

    def __str__(self):
        return f"BMC of {self.machine.hostname} ({self.address})"

    def __repr__(self):
        return f"<BMC {self.pk}: {self.address}:{self.port} user={self.username!r}>"

    @property
    def where(self) -> str:
        """The address as people tell BMCs apart: with the port when it is not the driver's default (lab
        machines share one address and differ by port)."""
        try:
            default = bmc.registry.info(self.driver).default_port
        except ValueError:  # a plug-in driver that is no longer installed
            default = None
        if self.port == default:
            return self.address
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"

    def credentials(self, site: Site | None) -> tuple[str, str, str]:
        """(username, password, where they come from): each from the BMC when it has its own, else from
        ``site``'s defaults. The source is "machine", "site" or "machine user, site password" (and the reverse).
        The site's password is decrypted once per Site instance: a sweep passes one instance for all its BMCs."""
        own_user, own_password = bool(self.username), self.has_password
        username = self.username or (site.bmc_username if site else "")
        if own_password:
            password = self.get_password()
        elif site is None:
            password = ""
        else:
            if "_default_bmc_password" not in site.__dict__:
                site.__dict__["_default_bmc_password"] = site.get_bmc_password()
            password = site.__dict__["_default_bmc_password"]
        if own_user and own_password:
            source = "machine"
        elif not own_user and not own_password:
            source = "site"
        else:
            source = "machine user, site password" if own_user else "site user, machine password"
        return username, password, source


class CredentialCheck(models.Model):
    """One "test credentials" request over some machines; its rows are the report."""

    requested_by_label = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"credential test {self.pk}"


class CredentialCheckResult(models.Model):
    run = models.ForeignKey(CredentialCheck, on_delete=models.CASCADE, related_name="results")
    machine = models.ForeignKey(Machine, on_delete=models.CASCADE, related_name="+")
    result = models.CharField(max_length=12, choices=CredentialResult.choices, blank=True)  # blank: not run yet
    source = models.CharField(max_length=40, blank=True, help_text="Whose credentials were tried.")
    username = models.CharField(max_length=64, blank=True)
    detail = models.CharField(max_length=500, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "machine__hostname"]
        constraints = [
            models.UniqueConstraint(fields=["run", "machine"], name="credential_check_result_unique"),
        ]

    def __str__(self):
        return f"{self.machine_id}: {self.result or 'pending'}"


class InstallMethod(models.TextChoices):
    PRESEED = "preseed"  # Debian/Ubuntu installer with a preseed file
    KICKSTART = "kickstart"  # Anaconda (CentOS, Rocky) with a kickstart file
    AUTOINSTALL = "autoinstall"  # Ubuntu Subiquity with cloud-init user-data
    IMAGE = "image"  # the memory OS's agent writes a disk image


# Checks other apps add to a profile's validation, each ``check(profile)`` raising ValidationError (installs:
# the workflow a profile names exists and serves its method). Inventory cannot import them.
PROFILE_CHECKS: list = []


class OSProfile(models.Model):
    name = models.CharField(
        max_length=64,
        unique=True,
        validators=[
            RegexValidator(
                r"^[a-z0-9][a-z0-9._-]*$",
                "“%(value)s” is not a profile name: use lower-case letters, digits, dots, hyphens and underscores.",
            )
        ],
        help_text="e.g. ubuntu-24.04-autoinstall",
    )
    description = models.CharField(max_length=255, blank=True)
    method = models.CharField(max_length=16, choices=InstallMethod.choices)
    kernel = models.CharField(max_length=255, help_text="Kernel path relative to the TFTP root, or an URL for iPXE.")
    initrd = models.CharField(max_length=255)
    kernel_args = models.CharField(max_length=1024, blank=True, help_text="Extra kernel command line arguments.")
    template = models.TextField(
        blank=True, help_text="Preseed, kickstart or autoinstall user-data template (Jinja2, sandboxed)."
    )
    image_url = models.URLField(max_length=500, blank=True)
    image_sha256 = models.CharField("image SHA-256", max_length=64, blank=True, validators=[validate_sha256])
    target_disk = models.CharField(max_length=100, blank=True, help_text="e.g. /dev/sda; blank for the first disk.")
    root_password_hash = models.CharField(
        max_length=255,
        blank=True,
        help_text="crypt(3) hash such as $6$...; blank locks root's password (log in with the SSH keys).",
    )
    ssh_authorized_keys = models.TextField(blank=True, help_text="One public key per line, installed for root.")
    legacy_anaconda = models.BooleanField(
        default=False, help_text="Kickstart for CentOS 7 and older: ks=/ksdevice= instead of inst.ks=/inst.ks.device=."
    )
    workflow = models.CharField(
        max_length=64,
        blank=True,
        help_text="The workflow installs of this profile run (its latest version); blank: the stock workflow of the "
        "method.",
    )

    class Meta:
        verbose_name = "OS profile"
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(image_sha256="") | Q(image_sha256__regex=r"^[0-9a-f]{64}$"),
                name="osprofile_image_sha256_hex",
            ),
        ]

    def __str__(self):
        return self.name

    def clean(self):
        super().clean()
        if self.method != InstallMethod.IMAGE and not self.template.strip():
            raise ValidationError({"template": f"{a(self.method, capital=True)} profile needs its install template."})
        if self.method != InstallMethod.IMAGE:
            self._check_template()
        for check in PROFILE_CHECKS:
            check(self)

    def _check_template(self) -> None:
        """Render the template for an example machine with a static address (so every variable exists),
        within the render bounds: a broken or runaway template is refused when saved, with its line and
        the bound it hit, rather than when a machine fetches its answer file."""
        try:
            context = pxe.install_context(
                hostname="example",
                domain="example.net",
                mac="52:54:00:00:00:01",
                base_url="http://provisioner.example.net",
                token="EXAMPLE-token-0123456789",
                callback_token="EXAMPLE-callback-0123456789",
                disk=self.target_disk or "/dev/sda",
                root_password_hash=self.root_password_hash or "$6$locked$*",
                ssh_keys=[k for k in self.ssh_authorized_keys.splitlines() if k.strip()],
                network=pxe.StaticAddress("192.0.2.10", 24, "192.0.2.1", ("192.0.2.53",)),
            )
        except ValueError:
            return  # another field is malformed; installs refuse it with their own message (installs.plan)
        try:
            pxe.render_template(self.template, context, template=f"profile {self.name}")
        except pxe.TemplateError as exc:
            raise ValidationError({"template": f"For an example machine, {exc}"}) from None


class MachineHealth(models.Model):
    """What the machine's BMC last said about its sensors and its system event log, as the site's worker read
    them (inventory/health.py): the machine page shows this, never a live BMC call."""

    machine = models.OneToOneField(Machine, on_delete=models.CASCADE, related_name="health")
    sensors = models.JSONField(default=list, blank=True, help_text="SensorReading.as_dict() of each sensor.")
    sensors_read_at = models.DateTimeField(null=True, blank=True)
    sensors_error = models.CharField(max_length=500, blank=True)
    events = models.JSONField(default=list, blank=True, help_text="The newest LogEntry.as_dict(), oldest first.")
    events_total = models.PositiveIntegerField(default=0, help_text="Entries the BMC's log held when read.")
    events_read_at = models.DateTimeField(null=True, blank=True)
    events_error = models.CharField(max_length=500, blank=True)

    class Meta:
        verbose_name_plural = "machine health"

    def __str__(self):
        return f"health of {self.machine.hostname}"


class MachineFacts(models.Model):
    """One commissioning's hardware facts, kept as a version: the machine page shows what changed since the last
    (inventory/facts.py computes ``changes`` when the version is stored)."""

    machine = models.ForeignKey(Machine, on_delete=models.CASCADE, related_name="fact_versions")
    version = models.PositiveIntegerField()
    collected_at = models.DateTimeField(auto_now_add=True)
    source = models.CharField(max_length=100, help_text="What collected them, e.g. “commissioning (install 12)”.")
    facts = models.JSONField(default=dict)
    changes = models.JSONField(default=list, blank=True, help_text="What differs from the previous version.")

    class Meta:
        verbose_name_plural = "machine facts"
        ordering = ["machine", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["machine", "version"], name="machine_facts_version_unique"),
        ]

    def __str__(self):
        return f"facts v{self.version} of {self.machine_id}"


class DiscoveryState(models.TextChoices):
    WAITING = "waiting"  # registered, waiting for a technician
    ACCEPTED = "accepted"  # made a machine of the inventory
    DISCARDED = "discarded"  # a technician said it is not ours (or not now)


class DiscoveredMachine(models.Model):
    """A machine that network-booted at a site with discovery on and registered its hardware, its MAC not in
    inventory (installs/discovery.py takes the registration). A technician accepts it into a rack position with a
    hostname, or discards it. No token is kept: only the SHA-256 of the key its agent registered with."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="discovered")
    mac = MACAddressField("boot MAC", unique=True)
    key_hash = models.CharField(max_length=64, editable=False)
    address = models.GenericIPAddressField(help_text="The address it registered from.")
    facts = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=12, choices=DiscoveryState.choices, default=DiscoveryState.WAITING)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now_add=True)
    registrations = models.PositiveIntegerField(default=1)
    # The one task waiting for its agent ({"id", "kind"}: inventory or poweroff), and when it was asked.
    pending_task = models.JSONField(null=True, blank=True)
    facts_updated_at = models.DateTimeField(null=True, blank=True)
    machine = models.ForeignKey(
        Machine, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", help_text="Once accepted."
    )
    decided_by_label = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_seen_at"]
        constraints = [models.CheckConstraint(condition=Q(mac__regex=MAC_REGEX), name="discovered_mac_canonical")]

    def __str__(self):
        return f"discovered {self.mac}"

    @property
    def serial(self) -> str:
        return str((self.facts.get("dmi") or {}).get("serial") or "")

    @property
    def vendor(self) -> str:
        return str((self.facts.get("dmi") or {}).get("vendor") or "")

    @property
    def model(self) -> str:
        return str((self.facts.get("dmi") or {}).get("product") or "")
