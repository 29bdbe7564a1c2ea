"""Fuzz the REST API from its own OpenAPI document (schemathesis), as a technician's script would call it
with an API token: whatever the request, the answer is never a server error, and a request that
violates the schema (schemathesis' negative cases) or is refused writes nothing."""

import schemathesis
from hypothesis import HealthCheck, settings

from console.rest import api
from tests.fuzz import check_answer
from tests.integration.ui.test_rest import token_client, writes

schema = schemathesis.openapi.from_dict(api.get_openapi_schema())


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_rest_api_never_answers_with_a_server_error_and_refusals_write_nothing(case, scene, live_server):
    if not hasattr(scene, "key"):  # once per operation: hypothesis runs every example with one scene
        _, scene.key = token_client("technician")
    before = writes()
    response = case.call(base_url=live_server.url, headers={"Authorization": f"Token {scene.key}"}, timeout=30)
    check_answer(case, response, writes, before)


# The library, the machine import, inventory and tag writes are for admins: their operations again with an admin's
# token, so that documents, scripts, import files and inventory bodies reach the checkers (a technician's are
# refused before).
library = schema.include(tag=["library", "import", "inventory", "tags"])


@library.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_library_operations_as_an_admin_never_answer_with_a_server_error(case, scene, live_server):
    if not hasattr(scene, "admin_key"):
        _, scene.admin_key = token_client("admin")
    before = writes()
    response = case.call(base_url=live_server.url, headers={"Authorization": f"Token {scene.admin_key}"}, timeout=30)
    check_answer(case, response, writes, before)
