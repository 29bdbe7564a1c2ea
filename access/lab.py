"""The simulated datacentre's SSH access (provisioner/lab): its jump host becomes the site's only hop and its
machines' login the site's, so the install's SSH check and the terminal work in the demo."""

from django.dispatch import receiver

from inventory.models import Site
from inventory.signals import lab_loaded

from .models import JumpHost, SiteLogin


@receiver(lab_loaded)
def load_lab_access(sender, *, site: Site, inventory: dict, **kwargs) -> str | None:
    """Create or update the site's jump host (hop 1, the only one) and machine login from the lab's inventory.
    Returns the hop's alias; None for an inventory without SSH (a lab from before it had any)."""
    j, login = inventory.get("jump_host"), inventory.get("site_login")
    if not j or not login:
        return None
    JumpHost.objects.filter(site=site).exclude(order=1).delete()
    hop, _ = JumpHost.objects.update_or_create(
        site=site,
        order=1,
        defaults={"address": j["address"], "port": j["port"], "username": j["username"], "host_key": j["host_key"]},
    )
    if not hop.has_private_key or hop.get_private_key() != j["private_key"]:
        hop.set_private_key(j["private_key"])
        hop.save(update_fields=["private_key_ciphertext"])
    machines, _ = SiteLogin.objects.update_or_create(
        site=site, defaults={"username": login["username"], "port": login["port"]}
    )
    if not machines.has_private_key or machines.get_private_key() != login["private_key"]:
        machines.set_private_key(login["private_key"])
        machines.save(update_fields=["private_key_ciphertext", "public_key"])
    return hop.alias
