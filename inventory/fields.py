from django import forms
from django.core.exceptions import ValidationError
from django.db import models

from .validators import normalise_mac


class MACAddressFormField(forms.CharField):
    def to_python(self, value):
        value = super().to_python(value)
        return normalise_mac(value) if value else value


class MACAddressField(models.CharField):
    """A MAC address stored as ``aa:bb:cc:dd:ee:ff`` whatever form was typed.

    Normalised in to_python(), so forms, model validation and the CSV import all see the
    canonical form before uniqueness is checked (AA-BB-... and aa:bb:... are one NIC).
    """

    description = "MAC address"

    def __init__(self, *args, **kwargs):
        kwargs["max_length"] = 17
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        del kwargs["max_length"]
        return name, path, args, kwargs

    def to_python(self, value):
        if value in (None, ""):
            return value
        return normalise_mac(value)

    def formfield(self, **kwargs):
        kwargs.setdefault("form_class", MACAddressFormField)
        return super().formfield(**kwargs)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value in (None, ""):
            return value
        try:
            return normalise_mac(value)
        except ValidationError:
            # Lookups with a partial or malformed MAC (search boxes) compare as typed.
            return str(value).lower()


class HostnameField(models.CharField):
    """A hostname kept in lower case (DNS is case-insensitive; one spelling per machine)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_length", 253)
        super().__init__(*args, **kwargs)

    def to_python(self, value):
        value = super().to_python(value)
        return value.strip().lower() if isinstance(value, str) else value


IP_INVALID = "“%(value)s” is not a valid IP address."


class IPAddressField(models.GenericIPAddressField):
    """GenericIPAddressField whose error names the value typed (10.0.0.300), in the model and in forms."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("error_messages", {"invalid": IP_INVALID})
        super().__init__(*args, **kwargs)

    def formfield(self, **kwargs):
        kwargs.setdefault("error_messages", {"invalid": IP_INVALID})
        return super().formfield(**kwargs)
