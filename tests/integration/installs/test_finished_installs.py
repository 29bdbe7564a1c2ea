"""What a finished install says about itself: the step it ended on, and its failure said once."""

import re
import subprocess

from django.core.management import call_command
from django.test import Client
from django.utils.html import strip_tags

from audit.service import Actor
from installs import callbacks, engine, tokens
from installs.models import Event, EventKind, Install, InstallState, StepKind, StepState
from tests.integration.ui.conftest import user_with_role


def installing(lab):
    install = lab.install([lab.machine()])
    lab.run_jobs()
    assert callbacks.installer_event(install.pk, "started") == "booted"
    lab.run_jobs()
    install.refresh_from_db()
    assert install.state == InstallState.INSTALLING
    return install


def test_a_succeeded_install_whose_ssh_check_was_skipped_ends_on_the_last_step_that_ran(lab, capsys):
    install = installing(lab)
    assert callbacks.installer_event(install.pk, "finished") == "finished"
    lab.run_jobs()
    install.refresh_from_db()
    assert install.state == InstallState.SUCCEEDED
    assert install.steps.get(kind=StepKind.VERIFY_SSH).state == StepState.SKIPPED
    last_ran = install.steps.filter(state=StepState.SUCCEEDED).order_by("-order").first()
    assert install.current_step == last_ran.label != "Check the installed OS over SSH"
    call_command("installs", "--all")
    row = next(line for line in capsys.readouterr().out.splitlines() if install.machine.hostname in line)
    assert "Check the installed OS over SSH" not in row and last_ran.label in row


def test_a_failed_install_names_the_failed_step_and_says_why_once(lab):
    install = installing(lab)
    assert callbacks.installer_event(install.pk, "failed", "no disk found") == "failed"
    install.refresh_from_db()
    failed = install.steps.get(state=StepState.FAILED)
    assert install.state == InstallState.FAILED and install.current_step == failed.label
    sentence = "The installer reported a failure: no disk found."
    assert install.failure_message.startswith(sentence)

    # The log keeps a line per event (the step's, the state's, the alert's) but the sentence once.
    lines = list(Event.objects.filter(install=install).values_list("message", flat=True))
    assert sum(sentence in line for line in lines) == 1
    assert Event.objects.filter(install=install, kind=EventKind.STATE, data__to="failed").get().message == (
        "installing → failed (InstallerFailed)"
    )
    assert Event.objects.filter(install=install, kind=EventKind.ALERT).get().message.endswith("InstallerFailed")

    # The page: the header says it, and links to the failed step, whose row does not repeat it.
    user_with_role("viewer", "viewer")
    client = Client()
    client.login(username="viewer", password="correct horse battery staple")
    page = client.get(f"/installs/{install.pk}/").content.decode()
    live = page[: page.index('<ol class="log"')]
    assert live.count(sentence) == 1
    assert f'href="#step-{failed.order}"' in live and f'id="step-{failed.order}"' in live

    # The API names the same step.
    answer = client.get(f"/api/v1/installs/{install.pk}")
    assert answer.status_code == 200, answer.content
    assert answer.json()["current_step"] == failed.label


def test_a_cancelled_install_names_the_step_it_was_cancelled_during(lab):
    install = installing(lab)
    during = engine.current_step(install)
    engine.cancel(install.pk, actor=Actor.system("test"), why="wrong machine")
    install.refresh_from_db()
    assert install.state == InstallState.CANCELLED and install.current_step == during.label
    assert Install.objects.get(pk=install.pk).failure_message in (
        Event.objects.filter(install=install, kind=EventKind.STATE, data__to="cancelled").get().message
    )

    # Its page and its batch's say who cancelled it and why, without the reason code repeating "Cancelled".
    user_with_role("viewer", "viewer")
    client = Client()
    client.login(username="viewer", password="correct horse battery staple")
    for url in (f"/installs/{install.pk}/?partial=1", f"/batches/{install.batch_id}/?partial=1"):
        text = re.sub(r"\s+", " ", strip_tags(client.get(url).content.decode()))
        assert "Cancelled by test: wrong machine" in text and text.count("Cancelled") == 1, (url, text)


def test_a_failed_kickstart_sends_its_syslog_tail_and_people_see_it(lab, live_server, tmp_path):
    """The stock %onerror command, run by a real shell and curl against the live server: the tail of the
    installer's syslog (bounded) is in the install log, the failed step and the page; the reason says so."""
    install = lab.install([lab.machine()], lab.profile("rocky-9-kickstart"))
    lab.run_jobs()
    token = tokens.boot_token(Install.objects.get(pk=install.pk).token_nonce)
    kickstart = Client().get(f"/i/{token}/ks.cfg").content.decode()
    [command] = [line for line in kickstart.splitlines() if "log@-" in line]
    syslog = tmp_path / "syslog"
    syslog.write_text(
        "".join(f"anaconda line {n}: {'x' * 20}\n" for n in range(400))
        + f"fetching http://192.0.2.10/i/{token}/ks.cfg\nERROR: no disks found\n"
    )
    command = command.replace("/tmp/syslog", str(syslog)).replace(lab.site.base_url, live_server.url)
    subprocess.run(["sh", "-c", command], check=True, timeout=30)

    install.refresh_from_db()
    assert install.state == InstallState.FAILED and install.failure_reason == "InstallerFailed"
    assert "Its last 50 log line(s) are below and in the install log." in install.failure_message
    logged = Event.objects.filter(install=install, kind=EventKind.LOG).order_by("id")
    lines = list(logged.values_list("message", flat=True))
    assert len(lines) == 50 and lines[-1] == "installer: ERROR: no disks found"
    assert lines[0] == "installer: anaconda line 352: " + "x" * 20
    assert lines[-2] == "installer: fetching http://192.0.2.10/i/[token]/ks.cfg"  # the credential never stored
    failed = install.steps.get(state=StepState.FAILED)
    assert failed.result["installer_log"][-1] == "ERROR: no disks found"
    user_with_role("viewer", "viewer")
    client = Client()
    client.login(username="viewer", password="correct horse battery staple")
    page = client.get(f"/installs/{install.pk}/").content.decode()
    assert "The installer's last log lines" in page and "ERROR: no disks found</pre>" in page


def test_the_installer_tail_is_bounded_in_lines_and_bytes():
    assert callbacks.installer_tail("\n".join(f"l{n}" for n in range(100))) == [f"l{n}" for n in range(50, 100)]
    long = callbacks.installer_tail("y" * 20000)
    assert len(long) == 1 and len(long[0]) == callbacks.INSTALLER_TAIL_BYTES
    assert callbacks.installer_tail(None) == [] and callbacks.installer_tail(" \n\r\n") == []
