"""Power-on slots: one rack's machines of a batch power on ``Batch.stagger_s`` apart, because a rack's
breakers trip on the inrush of many machines starting at once. The slot is taken in Redis, atomically
across workers; the power-cycle step waits for it (installs/engine.py)."""

from __future__ import annotations

import time

from core import queues

from .models import Batch, Install

# A power-on slot per (batch, rack): Lua makes "take the next slot" atomic across workers.
_RESERVE = """
local now = tonumber(ARGV[1])
local stagger = tonumber(ARGV[2])
local last = tonumber(redis.call('get', KEYS[1]) or '0')
local slot = math.max(now, last + stagger)
redis.call('set', KEYS[1], tostring(slot), 'EX', 86400)
return tostring(slot)
"""


def reserve_power_on(install: Install) -> float:
    """Seconds from now until this install may power its machine on, so that one rack's machines
    of a batch start ``stagger_s`` apart."""
    batch = Batch.objects.only("stagger_s").get(pk=install.batch_id)
    if batch.stagger_s <= 0:
        return 0.0
    key = f"provisioner:stagger:{install.batch_id}:{install.plan.machine.rack_id}"
    now = time.time()
    slot = float(queues.connection().eval(_RESERVE, 1, key, repr(now), repr(batch.stagger_s)))
    return max(0.0, slot - now)
