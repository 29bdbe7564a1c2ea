"""The plan on the install row: a Plan in Python, the same JSON in the database."""

import json

import pytest
from django.db import connection

from installs import workflow as wf
from installs.models import Install
from installs.plan import PLAN_VERSION, Plan


def test_the_plan_is_stored_as_json_and_read_back_as_a_plan(lab):
    install = lab.install([lab.machine(hostname="node-json")])
    with connection.cursor() as cursor:
        cursor.execute("SELECT plan::text FROM installs_install WHERE id = %s", [install.pk])
        stored = json.loads(cursor.fetchone()[0])
    assert stored["version"] == PLAN_VERSION == 2 and stored["machine"]["hostname"] == "node-json"
    assert stored["workflow"]["name"] == "stock-installer"  # frozen with the plan
    loaded = Install.objects.get(pk=install.pk).plan
    assert isinstance(loaded, Plan) and loaded == Plan.from_json(stored)
    deferred = Install.objects.defer("plan").get(pk=install.pk)
    assert deferred.plan == loaded


def test_a_plan_stored_without_a_version_loads_as_version_one_running_the_stock_workflow(lab):
    install = lab.install([lab.machine()])
    old = install.plan.to_json()
    del old["version"], old["step_count"], old["workflow"], old["storage_devices"]
    Install.objects.filter(pk=install.pk).update(plan=old)
    plan = Install.objects.get(pk=install.pk).plan
    assert plan.step_count == 0 and plan.machine == install.plan.machine
    assert plan.workflow is None and plan.flow == wf.stock(plan.profile.method)
    assert plan.version == PLAN_VERSION  # read into this release's shape


def test_a_row_whose_plan_cannot_be_read_still_loads_and_fails_by_name_where_it_is_used(lab):
    install = lab.install([lab.machine()])
    Install.objects.filter(pk=install.pk).update(plan={"version": 99})
    row = Install.objects.get(pk=install.pk)  # lists and counts keep working
    row.save(update_fields=["plan"])  # and saving writes back what was read
    with pytest.raises(ValueError, match="plan version 99"):
        row.plan  # noqa: B018
