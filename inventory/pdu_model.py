"""Switched PDUs at a site (reached over SNMP, their secrets encrypted and write-only) and the outlets that feed
each machine: the power path when a BMC does not answer."""

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from provisioner import pdu

from . import crypto
from .validators import validate_bmc_address

MAX_PDU_OUTLETS = 96

SnmpVersion = models.TextChoices("SnmpVersion", [(v.name, (v.value, v.value)) for v in pdu.SnmpVersion])
SnmpAuthProtocol = models.TextChoices("SnmpAuthProtocol", [(p.name, (p.value, p.name)) for p in pdu.AuthProtocol])
SnmpPrivProtocol = models.TextChoices("SnmpPrivProtocol", [(p.name, (p.value, p.name)) for p in pdu.PrivProtocol])


def pdu_profile_choices() -> list[tuple[str, str]]:
    """The vendor profiles provisioner.pdu knows; a callable, so adding one needs no migration."""
    return pdu.profiles.choices()


class Pdu(models.Model):
    """A switched PDU at a site, reached over SNMP. Its community and v3 keys are encrypted and write-only."""

    audit_secret_fields = {
        "community_ciphertext": "community",
        "auth_key_ciphertext": "SNMPv3 authentication key",
        "priv_key_ciphertext": "SNMPv3 privacy key",
    }

    site = models.ForeignKey("inventory.Site", on_delete=models.PROTECT, related_name="pdus")
    name = models.CharField(max_length=64, help_text="As labelled in the rack, e.g. r12-pdu-a.")
    address = models.CharField(max_length=253, validators=[validate_bmc_address], help_text="IP address or DNS name.")
    port = models.PositiveIntegerField(default=161, validators=[MinValueValidator(1), MaxValueValidator(65535)])
    profile = models.CharField(
        "vendor profile", max_length=32, choices=pdu_profile_choices, help_text="Which MIB switches its outlets."
    )
    outlet_count = models.PositiveSmallIntegerField(
        "outlets",
        validators=[MinValueValidator(1), MaxValueValidator(MAX_PDU_OUTLETS)],
        help_text="How many switched outlets it has (numbered from 1).",
    )
    snmp_version = models.CharField("SNMP version", max_length=4, choices=SnmpVersion.choices, default="v2c")
    community_ciphertext = crypto.EncryptedTextField(describe=lambda p: f"SNMP community of PDU {p.name}")
    v3_user = models.CharField("SNMPv3 user", max_length=64, blank=True)
    v3_auth_protocol = models.CharField(
        "SNMPv3 authentication", max_length=8, choices=SnmpAuthProtocol.choices, default="sha"
    )
    auth_key_ciphertext = crypto.EncryptedTextField(describe=lambda p: f"SNMPv3 authentication key of PDU {p.name}")
    v3_priv_protocol = models.CharField("SNMPv3 privacy", max_length=8, choices=SnmpPrivProtocol.choices, default="aes")
    priv_key_ciphertext = crypto.EncryptedTextField(describe=lambda p: f"SNMPv3 privacy key of PDU {p.name}")
    v3_context = models.CharField(
        "SNMPv3 context", max_length=64, blank=True, help_text="Usually empty; some agents serve a named context."
    )

    class Meta:
        verbose_name = "PDU"
        ordering = ["site__slug", "name"]
        constraints = [
            models.UniqueConstraint(fields=["site", "name"], name="pdu_name_unique_per_site"),
            models.CheckConstraint(condition=Q(port__gte=1, port__lte=65535), name="pdu_port_range"),
            models.CheckConstraint(
                condition=Q(outlet_count__gte=1, outlet_count__lte=MAX_PDU_OUTLETS), name="pdu_outlet_count_range"
            ),
        ]

    def __str__(self):
        return self.name

    def __repr__(self):
        return f"<Pdu {self.pk}: {self.name} {self.address}:{self.port} {self.snmp_version}>"

    def credential_problems(self) -> dict[str, str]:
        """What is missing for the stored SNMP version, by field; empty when it can be used."""
        if self.snmp_version == "v3":
            problems = {}
            if not self.v3_user:
                problems["v3_user"] = "SNMPv3 needs a user name."
            if not self.has_auth_key:
                problems["auth_key"] = "SNMPv3 needs an authentication key (8 characters or more)."
            if self.v3_priv_protocol != "none" and not self.has_priv_key:
                problems["priv_key"] = "Give the privacy key, or choose no privacy."
            return problems
        return {} if self.has_community else {"community": "SNMP v2c needs a community."}

    def target(self, timeout_s: float) -> pdu.PduTarget:
        """For the driver only: decrypts the secrets."""
        v3 = self.snmp_version == "v3"
        return pdu.PduTarget(
            self.address,
            self.port,
            version=self.snmp_version,
            community="" if v3 else self.get_community(),
            user=self.v3_user if v3 else "",
            auth_protocol=self.v3_auth_protocol,
            auth_key=self.get_auth_key() if v3 else "",
            priv_protocol=self.v3_priv_protocol,
            priv_key=self.get_priv_key() if v3 else "",
            context=self.v3_context,
            timeout_s=timeout_s,
        )


class PduOutlet(models.Model):
    """One outlet of a PDU feeding one of a machine's power supplies."""

    machine = models.ForeignKey("inventory.Machine", on_delete=models.CASCADE, related_name="pdu_outlets")
    pdu = models.ForeignKey(Pdu, on_delete=models.PROTECT, related_name="outlets", verbose_name="PDU")
    outlet = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(MAX_PDU_OUTLETS)])

    class Meta:
        verbose_name = "PDU outlet"
        ordering = ["machine__hostname", "pdu__name", "outlet"]
        constraints = [
            models.UniqueConstraint(
                fields=["pdu", "outlet"],
                name="pdu_outlet_one_machine",
                violation_error_message="That outlet already feeds another machine.",
            ),
            models.CheckConstraint(condition=Q(outlet__gte=1), name="pdu_outlet_positive"),
        ]

    def __str__(self):
        return f"{self.pdu.name} outlet {self.outlet}"

    def clean(self):
        super().clean()
        if self.pdu_id is None or self.outlet is None:
            return
        if self.outlet > self.pdu.outlet_count:
            raise ValidationError(
                {"outlet": f"{self.pdu.name} has outlets 1–{self.pdu.outlet_count}; there is no outlet {self.outlet}."}
            )
        rack = self.machine.rack if self.machine_id else None
        if rack is not None and rack.site_id != self.pdu.site_id:
            raise ValidationError(
                {"pdu": f"{self.pdu.name} is at {self.pdu.site}, but the machine is racked at {rack.site}."}
            )
