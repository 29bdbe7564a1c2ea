"""An admin who is not a superuser reaches the admin page of every model admins edit, including the models added
after the roles migration (PDUs, jump hosts, site CAs, webhook endpoints and deliveries, tags), and a technician
reaches none of them."""

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from accounts.permissions import ADMIN_APPS
from tests.integration.ui.conftest import user_with_role

MODELS = sorted(
    (meta.app_label, meta.model_name)
    for meta in (model._meta for model in admin.site._registry)
    if meta.app_label in ADMIN_APPS
)


def test_the_models_added_later_are_among_those_checked():
    assert {("inventory", "pdu"), ("inventory", "tag"), ("access", "jumphost"), ("access", "siteca"),
            ("webhooks", "endpoint"), ("webhooks", "delivery")} <= set(MODELS)  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize("app, model", MODELS)
def test_an_admin_who_is_not_a_superuser_opens_every_change_list(app, model):
    admin_client, technician = Client(), Client()
    admin_client.force_login(user_with_role("admin", "plain-admin"))
    technician.force_login(user_with_role("technician", "tech"))
    url = reverse(f"admin:{app}_{model}_changelist")
    assert admin_client.get(url).status_code == 200, url
    assert technician.get(url).status_code in (302, 403), url
