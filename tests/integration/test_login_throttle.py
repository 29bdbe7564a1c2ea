"""Login throttling keys on the name Django authenticates, not on the bytes posted: once `admin` is
locked out, every spelling that would log in as `admin` (padded with spaces or tabs, full-width
letters that NFKC folds) is refused too, on every login page, and the audit names the user."""

import itertools

import pytest
from django.contrib.auth.forms import AuthenticationForm

from audit.models import AuditEntry
from tests import redis_claim
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
CANDIDATES = [
    " admin",
    "admin\t",
    "\tadmin ",
    "admin\n",
    "admin\u00a0",  # no-break space
    "\u3000admin",  # ideographic space
    "admin" + " " * 300,  # longer than the field once raw, five letters once stripped
    "\uff41\uff44\uff4d\uff49\uff4e",  # full-width letters: NFKC makes them "admin"
    "ADMIN",
    "Admin",
    "admin\x00",
]


@pytest.fixture(autouse=True)
def _no_counts_from_other_tests():
    redis_claim.flush()  # the failure counts live in Redis


_addresses = (f"198.51.100.{i}" for i in itertools.count(1))


def login(client, name: str, password: str, path: str = "/login/"):
    """One attempt from an address of its own, as guesses spread over many addresses arrive: only the
    per-user count can stop them."""
    return client.post(path, {"username": name, "password": password}, REMOTE_ADDR=next(_addresses))


def logs_in_as_admin(name: str) -> bool:
    """What Django's own login form makes of ``name`` with the right password, throttle aside."""
    form = AuthenticationForm(data={"username": name, "password": PASSWORD})
    return form.is_valid() and form.get_user().get_username() == "admin"


@pytest.fixture
def locked_out_admin(client, settings):
    settings.LOGIN_MAX_FAILURES = 3
    make_user("admin", superuser=True, password=PASSWORD)  # staff too: the admin site's login would let it in
    for _ in range(3):
        assert login(client, "admin", "guess").status_code == 200
    assert login(client, "admin", PASSWORD).status_code == 429


def test_every_name_that_logs_in_as_the_locked_out_user_is_refused(client, locked_out_admin):
    same_user = [name for name in CANDIDATES if logs_in_as_admin(name)]
    # The user model's names are case-sensitive (AbstractUser): "ADMIN" is another name, a NUL no name at all.
    assert same_user == CANDIDATES[:8]
    for name in same_user:
        refused = login(client, name, PASSWORD)
        assert refused.status_code == 429 and b"Too many failed logins" in refused.content, repr(name)
        assert "_auth_user_id" not in client.session, repr(name)
    throttled = AuditEntry.objects.filter(action="auth.login_throttled")
    assert throttled.count() == 1 + len(same_user)
    assert {(e.details["username"], e.object_label) for e in throttled} == {("admin", "admin")}


def test_failures_under_padded_names_count_for_the_user(client, settings):
    settings.LOGIN_MAX_FAILURES = 3
    make_user("admin", password=PASSWORD)
    for name in (" admin", "admin\t", "\uff41\uff44\uff4d\uff49\uff4e"):
        assert login(client, name, "guess").status_code == 200
    assert login(client, "admin", PASSWORD).status_code == 429
    assert set(AuditEntry.objects.filter(action="auth.login_failed").values_list("object_label", flat=True)) == {
        "admin"
    }


def test_the_admin_site_login_is_throttled_too(client, locked_out_admin):
    refused = login(client, " admin", PASSWORD, "/admin/login/?next=/admin/")
    assert refused.status_code == 429 and b"Too many failed logins" in refused.content
    assert "_auth_user_id" not in client.session


def test_another_user_is_not_locked_out_by_a_name_that_only_looks_alike(client, locked_out_admin):
    make_user("Admin", password=PASSWORD)  # a different account: names are case-sensitive
    assert login(client, "Admin", PASSWORD).status_code == 302
    assert client.session["_auth_user_id"]
