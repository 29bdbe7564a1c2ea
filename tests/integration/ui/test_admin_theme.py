"""The admin site renders the pages' header and links the pages' stylesheet and theme switch, so the two look
like one product; the admin's own second theme choice (dark_mode.css, theme.js) is not loaded."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from inventory.models import Machine

SHARED = ('href="/static/css/provisioner.css"', 'href="/static/css/admin-theme.css"', 'src="/static/js/theme.js"')
ADMINS_OWN_THEME = ("admin/css/dark_mode.css", "admin/js/theme.js", 'class="theme-toggle"')


def _header(html: str) -> str:
    found = re.search(r'<header class="top">.*?</header>', html, re.S)
    assert found, "no shared header"
    return found.group(0)


def _admin_pages(scene):
    machine = Machine.objects.get(hostname="busy-01")
    return [
        reverse("admin:index"),
        reverse("admin:inventory_machine_changelist"),
        reverse("admin:inventory_machine_change", args=[machine.pk]),
        reverse("admin:accounts_user_changelist"),
    ]


def test_every_admin_page_wears_the_pages_header_and_stylesheet(client, users, scene):
    client.force_login(users["admin"])
    for url in _admin_pages(scene):
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        for link in SHARED:
            assert link in html, (url, link)
        for own in ADMINS_OWN_THEME:
            assert own not in html, (url, own)
        header = _header(html)
        assert 'href="/machines/"' in header and ">Dashboard</a>" in header and ">Audit</a>" in header
        assert re.search(r'href="/admin/" aria-current="page">Admin</a>', header), url
        assert 'action="/logout/"' in header and users["admin"].get_username() in header
        assert "data-theme-switch" in header
        # The admin's header is replaced, not shown beside ours.
        assert 'id="header"' not in html and 'id="user-tools"' not in html
        assert "default-src 'self'" in response["Content-Security-Policy"]


def test_the_pages_keep_the_same_header_without_the_admin_stylesheet(client, users, scene):
    client.force_login(users["admin"])
    html = client.get(reverse("inventory:machine-list")).content.decode()
    header = _header(html)
    assert re.search(r'href="/machines/" aria-current="page">Machines</a>', header)
    assert 'aria-current="page">Admin' not in header
    assert "admin-theme.css" not in html and 'href="/static/css/provisioner.css"' in html


@pytest.mark.parametrize("role", ["viewer", "technician"])
def test_the_header_shows_no_admin_link_below_the_admin_role(client, users, role):
    client.force_login(users[role])
    header = _header(client.get(reverse("home")).content.decode())
    assert 'href="/admin/"' not in header and f">{role}</span>" in header


def test_the_admin_login_page_wears_the_header_for_anonymous_visitors(client, db):
    response = client.get(reverse("admin:login"))
    assert response.status_code == 200
    html = response.content.decode()
    header = _header(html)
    assert "data-theme-switch" in header and "Log out" not in header and 'href="/machines/"' not in header
    for link in SHARED:
        assert link in html
    assert 'name="username"' in html
