"""Fuzz the agent API from its own OpenAPI document (schemathesis) with a live install token: whatever
the body, the answer is never a server error, and a request that violates the schema (schemathesis'
negative cases) or is refused writes nothing."""

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.core.parameters import ParameterLocation

from audit.models import AuditEntry
from installs import callbacks, engine
from installs.api import api
from installs.models import Event, Install, Step

schema = schemathesis.openapi.from_dict(api.get_openapi_schema())
# What the API validates. (Negative headers are the token's, which every call sets itself.)
VALIDATED = (ParameterLocation.QUERY, ParameterLocation.PATH, ParameterLocation.BODY)
# Answers that write nothing (403, WrongMachine, fails the install by design).
WRITE_NOTHING = (400, 401, 404, 405, 413, 415)


def writes():
    return (
        Event.objects.count(),
        AuditEntry.objects.count(),
        sorted(Install.objects.values_list("pk", "state", "failure_reason")),
        sorted(Step.objects.values_list("pk", "state", "progress", "message")),
    )


@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_agent_api_never_answers_with_a_server_error(case, lab, live_server):
    machine = lab.machine()
    install = lab.install([machine], lab.image_profile())
    engine.advance(install.pk)  # straight to waiting for the machine, without a worker round trip
    # Registered, so tasks/next answers at once rather than long-polling for up to 30 s; with the agent token
    # that registration handed over.
    nics = {"nics": [{"mac": machine.pxe_nic.mac}]}
    token = callbacks.agent_register(install.pk, nics, boot_credential=True).token
    before = writes()
    response = case.call(base_url=live_server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    what = f"{case.method} {case.formatted_path} {case.query} {case.body!r:.300}: {response.status_code}"
    assert response.status_code < 500, f"{what} {response.text[:500]}"
    negative = any(case.meta.is_negative_at(location) for location in VALIDATED)
    if negative:
        assert 400 <= response.status_code < 500, f"a request outside the schema was accepted: {what}"
    if negative or response.status_code in WRITE_NOTHING:
        assert writes() == before, what
