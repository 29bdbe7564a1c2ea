"""The admin pages that are not ours, under our strict script policy: django-rq's queue pages (select all,
bulk delete through its confirm page, a job's result) and the Django admin's change list (actions, filters).
The one script the policy blocks there is django-rq's dead inline block (config/security.py)."""

from __future__ import annotations

import pytest
from rq import SimpleWorker
from rq.job import Job

from core import queues
from inventory.models import MachineStatus
from tests.browser.conftest import login
from tests.conftest import make_machine, make_rack, make_site, make_user
from tests.integration.ui.conftest import user_with_role
from tests.unit.test_django_rq_csp import DEAD_ACTIONS_BLOCK

pytestmark = pytest.mark.slow


def watch(page) -> tuple[list[str], list[str]]:
    """What the browser blocked under the CSP, and uncaught script errors."""
    blocked, errors = [], []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return blocked, errors


def test_django_rq_bulk_delete_and_the_admin_change_list_work_under_the_strict_policy(browser, live):
    queue = queues.get_queue()
    finished = queue.enqueue("os.getcwd")
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    queued = sorted(queue.enqueue("os.getcwd").id for _ in range(3))
    rack = make_rack(make_site(slug="lab", name="Lab"), name="r01", height_u=12)
    make_machine(rack, hostname="ready-01", position_u=1, status=MachineStatus.READY)
    make_machine(rack, hostname="failed-01", position_u=3, status=MachineStatus.FAILED)
    make_user("root", superuser=True)
    user_with_role("admin", "ops")  # not staff: django-rq's pages go by the admin role
    page = login(browser, live, "ops")
    blocked, errors = watch(page)

    # Select all ticks every job; "Delete" goes through django-rq's confirm page and empties the queue.
    page.goto(f"{live.url}/django-rq/queues/0/")
    boxes = "tr input.action-select"
    assert sorted(page.eval_on_selector_all(boxes, "els => els.map(e => e.value)")) == queued
    page.click("#action-toggle")
    assert page.eval_on_selector_all(boxes, "els => els.map(e => e.checked)") == [True] * 3
    page.select_option("select[name=action]", "delete")
    page.click("#changelist-form button[name=index]")
    page.wait_for_url("**/django-rq/queues/confirm-action/0/")
    confirm = page.inner_text("#content-main")
    assert all(job_id in confirm for job_id in queued), confirm
    page.click("input[type=submit][value='Delete 3 jobs']")
    page.wait_for_selector("text=You have successfully deleted 3 jobs!")
    assert queue.count == 0
    assert not any(Job.exists(job_id, connection=queue.connection) for job_id in queued)
    assert blocked, "django-rq's list pages carry an inline block; Chromium reports blocking it"
    assert all("inline script" in m and DEAD_ACTIONS_BLOCK in m for m in blocked), blocked

    # A finished job's result opens from the link in its row; the row's inline onclick handlers are blocked.
    blocked.clear()
    page.goto(f"{live.url}/django-rq/queues/0/{finished.id}/")
    page.click("tr.rq-clickable a:text('View')")
    page.wait_for_url(f"**/django-rq/queues/0/{finished.id}/results/**")
    assert all("inline event handler" in m for m in blocked), blocked

    # The Django admin: the select-all counter, the "delete selected" action and a filter, with nothing blocked.
    admin = login(browser, live, "root")
    blocked, errors = watch(admin)
    admin.goto(f"{live.url}/admin/inventory/machine/")
    admin.click("#action-toggle")
    assert admin.inner_text(".action-counter") == "2 of 2 selected"
    admin.click("#changelist-filter a:text-is('Failed')")
    admin.wait_for_url("**status__exact=failed**")
    assert admin.eval_on_selector_all("#result_list th.field-hostname", "els => els.map(e => e.innerText)") == [
        "failed-01"
    ]
    admin.check("tr input.action-select")
    admin.select_option("select[name=action]", "delete_selected")
    admin.click("#changelist-form button[name=index]")
    admin.wait_for_selector("text=Are you sure you want to delete the selected machine?")
    assert "Machine: failed-01" in admin.inner_text("#content")
    assert not blocked, blocked
    assert not errors, errors
