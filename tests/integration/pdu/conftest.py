"""A real SNMP agent for the PDU tests: snmpsim serving recorded walks of an APC and a Tripp Lite PDU."""

from __future__ import annotations

import dataclasses

import pytest

from provisioner.pdu import PduTarget, SnmpVersion
from tests.servers import Snmpsim


@pytest.fixture(scope="module")
def snmpsim(tmp_path_factory):
    sim = Snmpsim(tmp_path_factory.mktemp("pdu"))
    sim.start()
    yield sim
    sim.stop()


def v2c(sim: Snmpsim, name: str, **kw) -> PduTarget:
    """The recording ``name`` (or, for a name the simulator does not serve, that string as the community)."""
    community = sim.COMMUNITY.get(name, name)
    return PduTarget("127.0.0.1", sim.port, community=community, timeout_s=kw.pop("timeout_s", 2.0), **kw)


def v3(sim: Snmpsim, name: str, **kw) -> PduTarget:
    target = PduTarget(
        "127.0.0.1",
        sim.port,
        version=SnmpVersion.V3,
        user=sim.V3_USER,
        auth_key=sim.V3_AUTH_KEY,
        priv_key=sim.V3_PRIV_KEY,
        context=sim.COMMUNITY[name],
        timeout_s=2.0,
    )
    return dataclasses.replace(target, **kw)
