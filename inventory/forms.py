from django import forms

from provisioner.bmc import registry

from .models import BMC
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
