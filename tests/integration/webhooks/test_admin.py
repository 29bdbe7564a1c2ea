"""Endpoints in the admin (secret write-only), deliveries with their answers, replay from the admin and the command."""

import io

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEntry
from tests.conftest import make_machine
from webhooks.models import Delivery, DeliveryState, Endpoint

from .conftest import SECRET, make_endpoint, run_jobs
from .test_delivery import break_machine

ADD_URL = "/admin/webhooks/endpoint/add/"


def test_an_admin_registers_an_endpoint_whose_secret_is_never_shown_back(admin_client, receiver):
    form = {"name": "pager", "url": receiver.url, "events": ["install.failed", "alert.raised"], "secret": SECRET,
            "active": "on"}  # fmt: skip
    assert admin_client.post(ADD_URL, form).status_code == 302
    endpoint = Endpoint.objects.get(name="pager")
    assert endpoint.get_secret() == SECRET and endpoint.events == ["install.failed", "alert.raised"]
    assert SECRET not in endpoint.secret_ciphertext

    page = admin_client.get(f"/admin/webhooks/endpoint/{endpoint.pk}/change/")
    assert page.status_code == 200 and SECRET not in page.content.decode()

    # Saved with the secret left blank: the stored one stays.
    form = {**form, "secret": "", "events": ["install.failed"]}
    assert admin_client.post(f"/admin/webhooks/endpoint/{endpoint.pk}/change/", form).status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.get_secret() == SECRET and endpoint.events == ["install.failed"]

    entries = AuditEntry.objects.filter(action__startswith="webhooks.endpoint.")
    assert sorted(e.action for e in entries) == ["webhooks.endpoint.add", "webhooks.endpoint.change"]
    assert all(SECRET not in str(e.details) for e in entries)


@pytest.mark.parametrize(
    "change, field, error",
    [
        ({"url": "ftp://127.0.0.1/hook"}, "url", "URL"),
        ({"url": "not a url"}, "url", "URL"),
        ({"events": []}, "events", "This field is required"),
        ({"events": ["install.exploded"]}, "events", "Select a valid choice"),
        ({"secret": ""}, "secret", "A new endpoint needs a secret"),
        ({"secret": "short"}, "secret", "at least 16"),
    ],
)
def test_bad_endpoint_input_is_refused_with_the_field_named(admin_client, change, field, error):
    form = {"name": "bad", "url": "http://127.0.0.1:9/hook", "events": ["install.failed"], "secret": SECRET, **change}
    page = admin_client.post(ADD_URL, form)
    assert page.status_code == 200
    assert error in str(page.context["adminform"].form.errors[field])
    assert not Endpoint.objects.exists()


def delivered_one(receiver) -> Delivery:
    make_endpoint(receiver.url)
    break_machine(make_machine())
    run_jobs(lambda: receiver.received)
    return Delivery.objects.get()


def test_deliveries_are_listed_with_their_answers_and_replayed_from_the_admin(admin_client, receiver):
    original = delivered_one(receiver)
    listing = admin_client.get("/admin/webhooks/delivery/")
    assert listing.status_code == 200 and "machine.lifecycle" in listing.content.decode()
    detail = admin_client.get(f"/admin/webhooks/delivery/{original.pk}/change/").content.decode()
    assert "ok ok ok" in detail and SECRET not in detail

    answer = admin_client.post(
        "/admin/webhooks/delivery/", {"action": "replay_deliveries", "_selected_action": [original.pk]}
    )
    assert answer.status_code == 302
    copy = Delivery.objects.get(replay_of=original)
    entry = AuditEntry.objects.get(action="webhook.replay")
    assert entry.actor_label == "root" and entry.details["replay_of"] == original.pk

    run_jobs()
    copy.refresh_from_db()
    assert copy.state == DeliveryState.DELIVERED
    assert receiver.delivery_ids() == [str(original.pk), str(copy.pk)]
    assert receiver.received[0][1] == receiver.received[1][1]  # the same event, byte for byte


def test_the_command_lists_and_replays(receiver):
    original = delivered_one(receiver)
    out = io.StringIO()
    call_command("webhooks", stdout=out)
    assert original.endpoint.name in out.getvalue() and "machine.lifecycle" in out.getvalue()
    assert "delivered" in out.getvalue() and SECRET not in out.getvalue()

    out = io.StringIO()
    call_command("webhooks", "--replay", str(original.pk), stdout=out)
    copy = Delivery.objects.get(replay_of=original)
    assert f"replayed as delivery {copy.pk}" in out.getvalue()
    assert AuditEntry.objects.get(action="webhook.replay").actor_label == "manage.py webhooks"
    run_jobs()
    assert receiver.delivery_ids() == [str(original.pk), str(copy.pk)]

    with pytest.raises(CommandError, match="No delivery 999999"):
        call_command("webhooks", "--replay", "999999")
