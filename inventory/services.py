"""Inventory changes made outside the Django admin, each audited."""

from django.core.exceptions import ValidationError
from django.db import transaction

from audit.service import Actor, record

from .models import Machine


@transaction.atomic
def set_protected(machine_id: int, protected: bool, *, actor: Actor, reason: str) -> Machine:
    """Protect or unprotect a machine. Unprotecting needs a reason: it is what lets a production
    machine be wiped, so the audit log must say why."""
    machine = Machine.objects.select_for_update().get(pk=machine_id)
    reason = reason.strip()
    if not protected and not reason:
        raise ValidationError({"reason": "Say why this machine may be wiped (it is recorded in the audit log)."})
    if machine.protected == protected:
        return machine
    machine.protected = protected
    machine.save(update_fields=["protected"])
    record(actor, "machine.protect" if protected else "machine.unprotect", machine, {"reason": reason})
    return machine
