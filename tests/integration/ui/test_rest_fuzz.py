"""Fuzz the REST API from its own OpenAPI document (schemathesis), as a technician's script would call it
with an API token: whatever the request, the answer is never a server error, and a request that
violates the schema (schemathesis' negative cases) or is refused writes nothing."""

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.core.parameters import ParameterLocation

from provisioner.rest import api
from tests.integration.ui.test_rest import token_client, writes

schema = schemathesis.openapi.from_dict(api.get_openapi_schema())
# What the API validates. (Negative headers are the token's, which every call sets itself.)
VALIDATED = (ParameterLocation.QUERY, ParameterLocation.PATH, ParameterLocation.BODY)
# Answers that write nothing (a 409 is the service's refusal, which its audit may record).
WRITE_NOTHING = (400, 401, 404, 405, 413, 415)


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_rest_api_never_answers_with_a_server_error_and_refusals_write_nothing(case, scene, live_server):
    if not hasattr(scene, "key"):  # once per operation: hypothesis runs every example with one scene
        _, scene.key = token_client("technician")
    before = writes()
    response = case.call(base_url=live_server.url, headers={"Authorization": f"Token {scene.key}"}, timeout=30)
    what = f"{case.method} {case.formatted_path} {case.query} {case.body!r:.300}: {response.status_code}"
    assert response.status_code < 500, f"{what} {response.text[:500]}"
    negative = any(case.meta.is_negative_at(location) for location in VALIDATED)
    if negative:
        assert 400 <= response.status_code < 500, f"a request outside the schema was accepted: {what}"
    if negative or response.status_code in WRITE_NOTHING:
        assert writes() == before, what
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body["detail"], str) and {"field", "errors", "problems"} <= body.keys(), what
