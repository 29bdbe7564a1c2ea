"""Inventory changes that decide what a site's TFTP root must hold while it discovers unknown machines: each
queues the PXE reconcile (installs/discovery_boot.py) once it commits. Connected in InstallsConfig.ready().

A site's save queues its own reconcile when its discovery, memory OS, base URL or TFTP root changed and it
discovers now or did before (switching off must remove what switching on wrote). A NIC added, changed or
deleted, and a machine moved to another rack, queue the reconcile of every site that discovers: which site a
MAC belongs to may have changed. Saves that touch neither (a power reading, a status) queue nothing.
"""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save, pre_save

from inventory.models import NIC, Machine, Site

from . import discovery_boot

_SITE_FIELDS = ("discovery", "memory_os_id", "base_url", "tftp_root")
# Machine fields that decide which site's files its MACs belong in.
_MACHINE_FIELDS = frozenset({"rack", "rack_id"})


def _site_before(sender, instance: Site, **kwargs) -> None:
    before = Site.objects.filter(pk=instance.pk).values(*_SITE_FIELDS).first() if instance.pk else None
    instance._discovery_before = before


def _site_saved(sender, instance: Site, created: bool, **kwargs) -> None:
    before = getattr(instance, "_discovery_before", None)
    now = {name: getattr(instance, name) for name in _SITE_FIELDS}
    if before == now:
        return
    if instance.discovery or (before is not None and before["discovery"]):
        discovery_boot.enqueue_reconcile(instance)


def _nic_changed(sender, instance: NIC, **kwargs) -> None:
    discovery_boot.enqueue_for_discovering_sites()


def _machine_saved(sender, instance: Machine, created: bool, update_fields=None, **kwargs) -> None:
    if created or (update_fields is not None and not _MACHINE_FIELDS & set(update_fields)):
        return  # a new machine has no NICs yet (theirs queue it); a save of other fields moves no MAC
    discovery_boot.enqueue_for_discovering_sites()


def connect() -> None:
    pre_save.connect(_site_before, sender=Site, dispatch_uid="discovery-site-before")
    post_save.connect(_site_saved, sender=Site, dispatch_uid="discovery-site-saved")
    post_save.connect(_nic_changed, sender=NIC, dispatch_uid="discovery-nic-saved")
    post_delete.connect(_nic_changed, sender=NIC, dispatch_uid="discovery-nic-deleted")
    post_save.connect(_machine_saved, sender=Machine, dispatch_uid="discovery-machine-saved")
