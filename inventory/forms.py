from django import forms

from provisioner.bmc import registry

from .models import BMC, Pdu, Site
from .validators import normalise_mac


class BMCForm(forms.ModelForm):
    """The password is write-only: never rendered back; left blank it keeps the stored one."""

    password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. Leave blank to keep the current password.",
    )

    class Meta:
        model = BMC
        fields = ["driver", "address", "port", "username"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # What each driver can do, read from the registry each time: a plug-in installed since shows up.
        self.fields["driver"].help_text = " · ".join(
            f"{d.label}: {', '.join(d.capability_labels) or 'nothing declared'}"
            + ("" if d.origin == "built-in" else f" (plug-in from {d.origin})")
            for d in registry.drivers().values()
        )

    def save(self, commit=True):
        bmc = super().save(commit=False)
        if self.cleaned_data.get("password"):
            bmc.set_password(self.cleaned_data["password"])
        if commit:
            bmc.save()
        return bmc


class SiteForm(forms.ModelForm):
    """The site's default BMC password is write-only, like a BMC's: left blank it keeps the stored one."""

    bmc_password = forms.CharField(
        label="Default BMC password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. For every BMC of the site that has no password of its own. Leave blank to keep it.",
    )
    clear_bmc_password = forms.BooleanField(label="Clear the default BMC password", required=False)

    class Meta:
        model = Site
        fields = [
            "slug",
            "name",
            "tftp_root",
            "base_url",
            "domain",
            "dns_servers",
            "bmc_username",
            "memory_os",
            "create_bmc_user",
            "discovery",
            "provisioning_networks",
        ]

    def save(self, commit=True):
        site = super().save(commit=False)
        if self.cleaned_data.get("bmc_password"):
            site.set_bmc_password(self.cleaned_data["bmc_password"])
        elif self.cleaned_data.get("clear_bmc_password"):
            site.bmc_password_ciphertext = ""
        if commit:
            site.save()
        return site


def _secret(label: str, help_text: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=help_text,
    )


class PduForm(forms.ModelForm):
    """The community and the SNMPv3 keys are write-only: never rendered back; left blank they keep the stored
    ones. What the chosen SNMP version needs must be stored or given here."""

    community = _secret("Community", "SNMP v2c. Write-only; leave blank to keep the stored one.")
    auth_key = _secret("SNMPv3 authentication key", "Write-only, 8 characters or more; blank keeps the stored one.")
    priv_key = _secret("SNMPv3 privacy key", "Write-only, 8 characters or more; blank keeps the stored one.")

    class Meta:
        model = Pdu
        fields = [
            "site",
            "name",
            "address",
            "port",
            "profile",
            "outlet_count",
            "snmp_version",
            "v3_user",
            "v3_auth_protocol",
            "v3_priv_protocol",
            "v3_context",
        ]

    def clean(self):
        cleaned = super().clean()
        for key in ("auth_key", "priv_key"):
            if cleaned.get(key) and len(cleaned[key]) < 8:
                self.add_error(key, "SNMPv3 keys have at least 8 characters.")
        if cleaned.get("community") and any(c in cleaned["community"] for c in "\x00\r\n"):
            self.add_error("community", "A community cannot hold NUL or line breaks.")
        return cleaned

    def _post_clean(self):
        super()._post_clean()
        pdu = self.instance
        for key in ("community", "auth_key", "priv_key"):
            if self.cleaned_data.get(key):
                getattr(pdu, f"set_{key}")(self.cleaned_data[key])
        for field, problem in pdu.credential_problems().items():
            self.add_error(field, problem)


class PduOutletInlineFormSet(forms.BaseInlineFormSet):
    def clean(self):
        if any(self.errors):
            return
        super().clean()
        kept = [f for f in self.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
        seen = set()
        for f in kept:
            key = (f.cleaned_data.get("pdu"), f.cleaned_data.get("outlet"))
            if key in seen:
                raise forms.ValidationError(f"{key[0]} outlet {key[1]} is entered twice.")
            seen.add(key)


class NICInlineFormSet(forms.BaseInlineFormSet):
    def clean(self):
        if any(self.errors):
            return
        kept = [f for f in self.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
        # Before Django's own uniqueness check, whose message does not say which MAC.
        seen = set()
        for f in kept:
            mac = f.cleaned_data.get("mac")
            if mac in seen:
                raise forms.ValidationError(f"MAC {mac} is entered twice.")
            seen.add(mac)
        super().clean()
        pxe = [f.cleaned_data.get("mac") for f in kept if f.cleaned_data.get("is_pxe")]
        if kept and len(pxe) != 1:
            raise forms.ValidationError(
                f"Mark exactly one NIC as the PXE NIC (the one the machine network-boots from); {len(pxe)} are marked."
            )


def mac_search_term(term: str) -> str:
    """A search term in canonical MAC form when it is a whole MAC, else unchanged."""
    try:
        return normalise_mac(term)
    except forms.ValidationError:
        return term
