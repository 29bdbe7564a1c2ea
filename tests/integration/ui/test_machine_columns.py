"""The machine list's columns, chosen by each person and kept for every visit; the CSV export keeps them all."""

from __future__ import annotations

import csv
import io

import pytest
from django.test import Client

from accounts.preferences import PageColumns
from audit.models import AuditEntry
from console.columns import MACHINE_COLUMNS
from tests.integration.ui.conftest import user_with_role

pytestmark = pytest.mark.django_db


def _headers(html: str) -> list[str]:
    head = html.split("<thead>")[1].split("</thead>")[0]
    return [label for label in ("Hostname", *MACHINE_COLUMNS.values()) if f">{label}<" in head]


def _login(role="viewer", name="columns-reader") -> tuple[Client, object]:
    user = user_with_role(role, name)
    client = Client()
    client.force_login(user)
    return client, user


def test_every_column_shows_until_a_person_chooses(scene):
    client, _ = _login()
    html = client.get("/machines/").content.decode()
    assert _headers(html) == ["Hostname", *MACHINE_COLUMNS.values()]
    assert html.count('name="column"') == len(MACHINE_COLUMNS) and html.count('name="column" value="bmc" checked')


def test_the_chosen_columns_apply_on_every_visit_for_that_person_only(scene):
    client, user = _login("technician", "columns-tech")
    response = client.post("/machines/columns", {"column": ["serial", "status"], "next": "/machines/?site=lab&page=1"})
    assert response.status_code == 302 and response["Location"] == "/machines/?site=lab&page=1"
    assert PageColumns.objects.get(user=user).columns == ["status", "serial"]  # in the list's own order
    entry = AuditEntry.objects.get(action="columns.set")
    assert entry.actor_user == user and entry.details == {"page": "machines", "columns": ["status", "serial"]}

    html = client.get("/machines/").content.decode()
    assert _headers(html) == ["Hostname", "Status", "Serial"]
    row = html.split("<tbody")[1].split("</tr>")[0]
    assert "busy-01" in row and "SN-BUSY" in row and "10.0.0.11" not in row and row.count("<td") == 4  # + checkbox
    assert 'value="serial" checked' in html and 'value="bmc">' in html
    # The live refresh of the rows keeps the choice.
    rows = client.get("/machines/?partial=rows", headers={"HX-Request": "true"}).content.decode()
    assert "SN-BUSY" in rows and "10.0.0.11" not in rows

    other, _ = _login()
    assert _headers(other.get("/machines/").content.decode()) == ["Hostname", *MACHINE_COLUMNS.values()]

    # The CSV export has every column whatever the page shows.
    export = client.get("/machines/export.csv")
    header = next(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert {"hostname", "site", "rack", "status", "serial"} <= set(header) and len(header) > 5

    # No box ticked: the hostname alone.
    client.post("/machines/columns", {"next": "/machines/"})
    assert _headers(client.get("/machines/").content.decode()) == ["Hostname"]


def test_an_unknown_column_is_a_400_naming_the_field_and_a_foreign_next_is_not_followed(scene):
    client, user = _login()
    response = client.post("/machines/columns", {"column": ["status", "password"]})
    assert response.status_code == 400 and response.content.decode().startswith("column: No such column: password")
    assert not PageColumns.objects.exists()
    for target in ("https://elsewhere.example/", "//elsewhere.example/machines/", "/admin/"):
        response = client.post("/machines/columns", {"column": ["status"], "next": target})
        assert response["Location"] == "/machines/", target
