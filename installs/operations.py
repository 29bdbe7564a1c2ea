"""STUB, replaced at merge by the real module (commission, test, deploy and release as installs).

Only the signature is the real one's, so that the pages, the REST API and ``manage.py machine`` can be written
against it: deploy goes to installs.batches.request_installs (``options["boot"]`` chooses how it boots), every
other operation is refused.
"""

from __future__ import annotations

from audit.service import Actor
from inventory.models import OSProfile

from .batches import InstallRefused, request_installs
from .models import Batch


def request(
    machine_ids: list[int],
    action: str,
    actor: Actor,
    *,
    profile: OSProfile | None = None,
    workflow: str = "",
    options: dict | None = None,
    name: str = "",
) -> Batch:
    """Run ``action`` (commission, test, deploy, release) on the machines as one batch, or raise InstallRefused
    whose ``args[0]`` lists every problem in words."""
    if action == "deploy":
        if profile is None:
            raise InstallRefused(["Deploy needs a profile."])
        return request_installs(machine_ids, profile, actor, name=name, boot=(options or {}).get("boot", ""))
    raise InstallRefused(["not yet"])
