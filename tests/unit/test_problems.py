"""The one error shape (core/problems.py): RFC 9457 problem details with our extension members."""

import json

from core import edge, problems


def test_field_names_as_a_client_spells_them():
    assert problems.field_of(["body", "body", "facts", "nics", "0", "mac"]) == "facts.nics.0.mac"
    assert problems.field_of(["query", "page"]) == "page"
    assert problems.field_of(["path", "install_id"]) == "install_id"
    assert problems.field_of(["body", "body"]) == ""
    assert problems.field_of(["body", "facts", "disks", "0", "path"]) == "facts.disks.0.path"


def test_a_problem_has_every_member_whatever_was_given():
    assert problems.problem(409, "Refused: busy", problems=["busy"]) == {
        "type": "about:blank",
        "title": "Conflict",
        "status": 409,
        "detail": "Refused: busy",
        "field": "",
        "errors": [],
        "problems": ["busy"],
        "reason": "",
    }


def test_validation_errors_name_the_first_field_and_never_carry_the_input():
    errors = [
        {"loc": ("body", "body", "facts", "nics", 0, "mac"), "msg": "not a MAC", "type": "value_error", "input": "s3"},
        {"loc": ("body", "body", "facts", "cpus"), "msg": "too small", "type": "greater_than_equal"},
    ]
    body = problems.from_validation_errors(errors)
    assert (body["status"], body["title"], body["field"]) == (400, "Bad Request", "facts.nics.0.mac")
    assert body["detail"] == "facts.nics.0.mac: not a MAC"
    assert body["errors"][0] == {"loc": ["body", "body", "facts", "nics", "0", "mac"], "msg": "not a MAC",
                                 "type": "value_error"}  # fmt: skip
    assert "s3" not in json.dumps(body)


def test_a_refusal_at_the_edge_and_its_answer():
    refusal = edge.Refusal("body", "send JSON as Content-Type: application/json (this was text/plain)", status=415)
    answer = problems.respond(problems.from_refusal(refusal))
    assert answer.status_code == 415 and answer["Content-Type"] == problems.MEDIA_TYPE
    assert answer["Cache-Control"] == "no-store"
    body = json.loads(answer.content)
    assert (body["title"], body["field"], body["errors"][0]["loc"]) == (
        "Unsupported Media Type",
        "body",
        ["body", "body"],
    )
    assert problems.Problem.model_validate(body).detail.startswith("body: send JSON")
