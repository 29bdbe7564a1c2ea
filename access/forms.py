"""Admin forms whose private keys are write-only: never rendered back, left blank they keep the stored key."""

from django import forms

from . import keys
from .models import JumpHost, SiteLogin


class WriteOnlyTextarea(forms.Textarea):
    """A textarea that is always rendered empty, even when the form comes back with errors: what was typed
    into it is a private key, and a page is cached, logged and screenshotted more often than a database."""

    def format_value(self, value):
        return None


def _private_key_field(help_text: str) -> forms.CharField:
    return forms.CharField(
        required=False,
        strip=False,
        widget=WriteOnlyTextarea(attrs={"rows": 4, "autocomplete": "off", "spellcheck": "false"}),
        help_text=help_text,
    )


class _WriteOnlyKeyForm(forms.ModelForm):
    key_label = "private key"

    def clean_private_key(self):
        text = self.cleaned_data.get("private_key") or ""
        if not text.strip():
            return ""
        try:
            keys.parse_private_key(text)
        except keys.BadKey as exc:
            raise forms.ValidationError(str(exc)) from None
        return text.strip() + "\n"

    def _require_key(self, cleaned):
        if not cleaned.get("private_key") and not cleaned.get("generate_key") and not self.instance.has_private_key:
            self.add_error(
                "private_key",
                f"Paste a {self.key_label}" + (" or generate one." if "generate_key" in self.fields else "."),
            )


class JumpHostForm(_WriteOnlyKeyForm):
    private_key = _private_key_field(
        "Write-only: the key provisioner logs in to this jump host with (OpenSSH or PEM, no passphrase). "
        "Leave blank to keep the current key."
    )

    class Meta:
        model = JumpHost
        fields = ["site", "order", "address", "port", "username", "host_key"]
        widgets = {"host_key": forms.Textarea(attrs={"rows": 3, "spellcheck": "false"})}

    def clean(self):
        cleaned = super().clean()
        self._require_key(cleaned)
        return cleaned

    def save(self, commit=True):
        hop = super().save(commit=False)
        if self.cleaned_data.get("private_key"):
            hop.set_private_key(self.cleaned_data["private_key"])
        if commit:
            hop.save()
        return hop


class SiteLoginForm(_WriteOnlyKeyForm):
    key_label = "machine login key"
    private_key = _private_key_field(
        "Write-only: the key provisioner logs in to installed machines with. Leave blank to keep the current key."
    )
    generate_key = forms.BooleanField(
        required=False,
        label="Generate a new key",
        help_text="Replace the key with a new ed25519 key. Machines installed before keep only the old public key, "
        "so provisioner can no longer log in to them until they are reinstalled or given the new one.",
    )

    class Meta:
        model = SiteLogin
        fields = ["site", "username", "port"]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("private_key") and cleaned.get("generate_key"):
            self.add_error("generate_key", "Either paste a key or generate one, not both.")
        self._require_key(cleaned)
        return cleaned

    def save(self, commit=True):
        login = super().save(commit=False)
        if self.cleaned_data.get("generate_key"):
            login.set_private_key(keys.generate_private_key())
        elif self.cleaned_data.get("private_key"):
            login.set_private_key(self.cleaned_data["private_key"])
        if commit:
            login.save()
        return login
