"""The edge's checks on their own (core/edge.py): the JSON loader's order and bounds, the walk that
finds text or numbers the database cannot store, and the integer parameters."""

import json
import time

import pytest

from core import edge


def load(body: str | bytes, content_type: str | None = "application/json") -> dict:
    return edge.load_json_object(body.encode() if isinstance(body, str) else body, content_type)


def refusal(body, content_type="application/json") -> tuple[str, int, str]:
    with pytest.raises(edge.Refusal) as caught:
        load(body, content_type)
    return caught.value.field, caught.value.status, caught.value.kind


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "application/vnd.x+json"]
)
def test_an_object_declared_as_json_loads(content_type):
    assert load('{"a": [1, {"b": "c"}], "n": 1.5}', content_type) == {"a": [1, {"b": "c"}], "n": 1.5}


@pytest.mark.parametrize(
    "body, content_type, expected",
    [
        ("{}", "text/plain", ("body", 415, "value_error")),
        ("{}", None, ("body", 415, "value_error")),
        ("{}", "application/x-www-form-urlencoded", ("body", 415, "value_error")),
        ("[1, 2, 3]", "application/json", ("body", 400, "model_type")),
        ('"text"', "application/json", ("body", 400, "model_type")),
        ("null", "application/json", ("body", 400, "model_type")),
        ("{", "application/json", ("body", 400, "json_invalid")),
        (b"\xff\xfe{", "application/json", ("body", 400, "json_invalid")),
        ("1" * 5000, "application/json", ("body", 400, "json_invalid")),  # past Python's digit limit
        ('{"a": ' + "[" * 33 + "]" * 33 + "}", "application/json", ("body", 400, "json_too_deep")),
        ("[" * 1_000_000 + "]" * 1_000_000, "application/json", ("body", 400, "json_too_deep")),
        ('{"a": "\\u0000"}', "application/json", ("a", 400, "string_unstorable")),
        ('{"a": {"b": ["x", "y\\u0000"]}}', "application/json", ("a.b.1", 400, "string_unstorable")),
        ('{"a": {"\\u0000": 1}}', "application/json", ("a", 400, "string_unstorable")),
        ('{"\\u0000": 1}', "application/json", ("body", 400, "string_unstorable")),
        ('{"a": "\\ud800"}', "application/json", ("a", 400, "string_unstorable")),
        ('{"a": NaN}', "application/json", ("a", 400, "finite_number")),
        ('{"a": [1e400]}', "application/json", ("a.0", 400, "finite_number")),
        ('{"a": -Infinity}', "application/json", ("a", 400, "finite_number")),
        ('{"a": ' + "9" * 400 + ".0}", "application/json", ("a", 400, "finite_number")),
        ('{"a": "raw\x00nul"}', "application/json", ("body", 400, "json_invalid")),
        ('{"a": 1}'.encode("utf-16"), "application/json", ("body", 400, "json_invalid")),
    ],
)
def test_what_the_loader_refuses_and_the_field_it_names(body, content_type, expected):
    assert refusal(body, content_type) == expected


def test_text_that_only_looks_unstorable_loads():
    body = {"escaped": "\\u0000 and \\ud800 as text", "big": 1.7e308, "word": "NaN", "n": 10**30}
    assert load(json.dumps(body)) == body


def test_the_content_type_is_checked_before_the_body_is_read():
    assert refusal("[" * 100 + "]" * 100, "text/plain")[1] == 415


def test_the_first_bad_field_in_document_order_is_named():
    assert refusal('{"a": "ok", "b": "\\u0000", "c": "\\u0000"}')[0] == "b"


def test_brackets_inside_strings_do_not_count_as_depth():
    body = {"log": ["[" * 100, "{" * 100, 'a "quoted" \\ [[['], "n": [[[[1]]]]}
    assert load(json.dumps(body)) == body
    assert not edge.too_deep(json.dumps(body).encode(), limit=5)
    assert edge.too_deep(b"[[[[[[1]]]]]]", limit=5)
    assert not edge.too_deep(b"[[[[[1]]]]]", limit=5)


def test_depth_is_told_quickly_whatever_the_body():
    for body in (b"[" * 2_500_000, b"[]" * 1_250_000, b'"' + b"[" * 2_500_000 + b'"', b"{" * 2_500_000):
        started = time.perf_counter()
        edge.too_deep(body)
        assert time.perf_counter() - started < 1.0, body[:10]


@pytest.mark.parametrize(
    "text, problem",
    [("plain", None), ("ünïcödé ✓", None), ("a\x00b", "NUL"), ("\ud800", "surrogate"), ("ok\udfff", "surrogate")],
)
def test_unstorable_text(text, problem):
    found = edge.unstorable(text)
    assert (found is None) if problem is None else (problem in found)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("12", 12),
        ("0", 0),
        ("9223372036854775807", 2**63 - 1),
        ("9223372036854775808", None),
        ("203708920034997109101105237721088", None),
        ("\u00b2", None),  # a digit to str.isdigit, not to int()
        ("\u0661", None),  # Arabic-Indic one: int() takes it, but an id in a URL is ASCII
        ("-1", None),
        ("", None),
        (None, None),
        ("1e3", None),
    ],
)
def test_int_param_takes_ascii_digits_a_bigint_holds(value, expected):
    assert edge.int_param(value) == expected


def test_int_param_with_a_smaller_column():
    assert edge.int_param(str(2**31), maximum=edge.INT_MAX) is None
    assert edge.int_param(str(2**31 - 1), maximum=edge.INT_MAX) == 2**31 - 1
