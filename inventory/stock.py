"""The stock OS profiles shipped with provisioner, loaded into the OSProfile table."""

from dataclasses import asdict, is_dataclass

from provisioner.pxe.stock import STOCK_PROFILES

from .models import OSProfile

PROFILE_FIELDS = {f.name for f in OSProfile._meta.concrete_fields} - {"id", "name"}


def _as_dict(profile) -> dict:
    return asdict(profile) if is_dataclass(profile) else dict(profile)


def sync_stock_profiles() -> list[OSProfile]:
    """Create the stock profiles that are missing; leave existing ones alone, since admins
    edit their templates and a restart must not undo that."""
    profiles = []
    for stock in STOCK_PROFILES:
        data = _as_dict(stock)
        defaults = {k: v for k, v in data.items() if k in PROFILE_FIELDS}
        profile, _ = OSProfile.objects.get_or_create(name=data["name"], defaults=defaults)
        profiles.append(profile)
    return profiles
