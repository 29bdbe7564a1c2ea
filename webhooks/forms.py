from django import forms

from .models import Endpoint, Event


class EndpointForm(forms.ModelForm):
    """The secret is write-only, like a BMC password: never rendered back; left blank it keeps the stored one."""

    url = forms.URLField(
        label="URL", max_length=500, assume_scheme="https", help_text="http:// or https://; deliveries are POSTed here."
    )
    events = forms.MultipleChoiceField(choices=Event.choices, widget=forms.CheckboxSelectMultiple)
    secret = forms.CharField(
        required=False,
        strip=False,
        max_length=200,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. Receivers check each delivery's signature with it (see the README). "
        "Leave blank to keep the current secret.",
    )

    class Meta:
        model = Endpoint
        fields = ["name", "url", "events", "active"]

    def clean_secret(self):
        secret = self.cleaned_data.get("secret", "")
        if not secret and not (self.instance.pk and self.instance.has_secret):
            raise forms.ValidationError("A new endpoint needs a secret.")
        if secret and len(secret) < 16:
            raise forms.ValidationError("Use at least 16 characters.")
        if "\x00" in secret:
            raise forms.ValidationError("The secret cannot contain NUL characters.")
        return secret

    def save(self, commit=True):
        endpoint = super().save(commit=False)
        if self.cleaned_data.get("secret"):
            endpoint.set_secret(self.cleaned_data["secret"])
        if commit:
            endpoint.save()
        return endpoint
