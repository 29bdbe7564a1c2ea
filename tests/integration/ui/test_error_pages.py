"""The product's own error pages: what a technician sees for a mistyped address, a page their role does not
reach and a server error, in the pages' look and under the CSP (no inline style or script)."""

from __future__ import annotations

import pytest
from django.template.loader import render_to_string
from django.test import Client

from tests.integration.ui.conftest import user_with_role

pytestmark = pytest.mark.django_db


def client_for(role: str) -> Client:
    client = Client()
    client.force_login(user_with_role(role, f"{role}-errors"))
    return client


def test_a_mistyped_address_is_the_products_not_found_page():
    response = client_for("viewer").get("/machines/no-such-machine/")
    page = response.content.decode()
    assert response.status_code == 404
    assert "<h1>Not found</h1>" in page and "<code>/machines/no-such-machine/</code>" in page
    assert 'href="/machines/"' in page and "viewer-errors" in page  # the header, signed in
    assert "<style" not in page and "<script>" not in page


def test_a_page_the_role_does_not_reach_says_which_role_it_needs():
    response = client_for("norole").get("/machines/")
    page = response.content.decode()
    assert response.status_code == 403
    assert "<h1>Not allowed</h1>" in page and "This needs the viewer role." in page


def test_the_server_error_page_needs_no_request():
    page = render_to_string("500.html")
    assert "Something went wrong on our side" in page and "/static/css/provisioner" in page
