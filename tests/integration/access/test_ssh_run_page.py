"""The browser's way to run a command: technicians only, through the real bastion, audited."""

from django.contrib.auth.models import Group

from audit.models import AuditEntry
from tests.conftest import make_user

from .conftest import add_target


def user_in(group):
    user = make_user()
    user.groups.add(Group.objects.get(name=group))
    return user


def test_a_technician_runs_a_command_from_the_page_and_a_viewer_cannot(site, lab, client):
    machine = add_target(site.test_rack, lab)
    client.force_login(user_in("viewer"))
    assert client.get("/ssh/run/").status_code == 403
    assert client.post("/ssh/run/", {"machines": machine.hostname, "command": "id", "timeout_s": 5}).status_code == 403
    assert not AuditEntry.objects.filter(action="ssh.run").exists()

    client.force_login(user_in("technician"))
    form = client.get("/ssh/run/", {"machine": machine.hostname}).content.decode()
    assert machine.hostname in form  # pre-filled from the machine page's link
    page = client.post(
        "/ssh/run/", {"machines": machine.hostname, "command": "echo hello-from-$((40+2))", "timeout_s": 5}
    ).content.decode()
    assert "hello-from-42" in page
    entry = AuditEntry.objects.get(action="ssh.run", object_id=str(machine.pk))
    assert entry.details["exit_status"] == 0 and "hello-from-42" in entry.details["output"]
    refused = client.post("/ssh/run/", {"machines": "ghost", "command": "id", "timeout_s": 5}).content.decode()
    assert "No machine named ghost." in refused
