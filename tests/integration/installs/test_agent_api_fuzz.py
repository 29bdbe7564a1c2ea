"""Fuzz the agent API from its own OpenAPI document (schemathesis) with a live install token: whatever
the body, the answer is never a server error, and a request that violates the schema (schemathesis'
negative cases) or is refused writes nothing. Against daphne serving the real ASGI application, as
deployed: progress reports are answered in front of Django (installs/ingest.py)."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from audit.models import AuditEntry
from installs import callbacks, engine
from installs.api import api
from installs.models import Event, Install, Step
from tests.fuzz import check_answer
from tests.servers import Daphne

schema = schemathesis.openapi.from_dict(api.get_openapi_schema())


@pytest.fixture(scope="module")
def daphne(django_db_setup, tmp_path_factory):
    server = Daphne(tmp_path_factory.mktemp("daphne"))
    server.start()
    yield server
    server.stop()


def writes():
    return (
        Event.objects.count(),
        AuditEntry.objects.count(),
        sorted(Install.objects.values_list("pk", "state", "failure_reason")),
        sorted(Step.objects.values_list("pk", "state", "progress", "message")),
    )


@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_agent_api_never_answers_with_a_server_error(case, lab, daphne):
    machine = lab.machine()
    install = lab.install([machine], lab.image_profile())
    engine.advance(install.pk)  # straight to waiting for the machine, without a worker round trip
    # Registered, so tasks/next answers at once rather than long-polling for up to 30 s; with the agent token
    # that registration handed over.
    nics = {"nics": [{"mac": machine.pxe_nic.mac}]}
    token = callbacks.agent_register(install.pk, nics, boot_credential=True).token
    before = writes()
    response = case.call(base_url=daphne.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    check_answer(case, response, writes, before)
