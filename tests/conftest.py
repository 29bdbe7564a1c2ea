"""Plain factory functions shared by the tests (no factory library: a reader sees every default)."""

import itertools
from pathlib import Path

import pytest

_seq = itertools.count(1)


def make_site(**kw):
    from inventory.models import Site

    n = next(_seq)
    defaults = {
        "slug": f"site{n}",
        "name": f"Site {n}",
        "tftp_root": f"/srv/tftp/site{n}",
        "base_url": "http://127.0.0.1:8000",
    }
    return Site.objects.create(**{**defaults, **kw})


def make_rack(site=None, **kw):
    from inventory.models import Rack

    n = next(_seq)
    return Rack.objects.create(**{"site": site or make_site(), "name": f"r{n:02d}", "height_u": 42, **kw})


def make_machine(rack=None, *, with_nic=True, **kw):
    from inventory.models import NIC, Machine

    n = next(_seq)
    if rack is None and "position_u" not in kw:
        rack = make_rack()
    defaults = {"hostname": f"node-{n:04d}", "rack": rack, "position_u": 1, "height_u": 1}
    machine = Machine.objects.create(**{**defaults, **kw})
    if with_nic:
        NIC.objects.create(
            machine=machine, mac=f"52:54:00:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:{n & 255:02x}", is_pxe=True
        )
    return machine


def make_bmc(machine=None, *, password="s3cret-bmc-pw", **kw):
    from inventory.models import BMC

    bmc = BMC(
        **{
            "machine": machine or make_machine(),
            "driver": "fake",
            "address": "127.0.0.1",
            "port": 623,
            "username": "admin",
            **kw,
        }
    )
    bmc.set_password(password)
    bmc.save()
    return bmc


def make_pdu(site=None, *, community="pdu-community-x9", **kw):
    from inventory.models import Pdu

    n = next(_seq)
    defaults = {"name": f"pdu-{n}", "address": "127.0.0.1", "port": 161, "profile": "apc", "outlet_count": 16}
    pdu = Pdu(site=site or make_site(), **{**defaults, **kw})
    if community:
        pdu.set_community(community)
    pdu.save()
    return pdu


def make_user(username=None, *, superuser=False, password="correct horse battery staple"):
    from django.contrib.auth import get_user_model

    User = get_user_model()
    username = username or f"user{next(_seq)}"
    if superuser:
        return User.objects.create_superuser(username=username, email="", password=password)
    return User.objects.create_user(username=username, password=password)


@pytest.fixture
def admin_client(client, db):
    user = make_user("root", superuser=True)
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture(scope="session", autouse=True)
def _claimed_redis(request):
    """Claim REDIS_URL's database before any test writes to it (tests/redis_claim.py), and empty it at the
    end. A run of unit tests alone needs no Redis and claims nothing."""
    from tests import redis_claim

    unit = Path(__file__).parent / "unit"
    if all(unit in Path(item.path).parents for item in request.session.items):
        yield
        return
    try:
        claim = redis_claim.session_claim()
    except redis_claim.ClaimRefused as exc:
        pytest.exit(f"Redis: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)
    yield
    claim.flush()


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of the test's own (tests.servers.PrivateRedis), stopped after the test."""
    from tests.servers import PrivateRedis

    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()
