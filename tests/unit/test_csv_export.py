import pytest

from core.csv_export import safe_cell


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_a_cell_that_starts_like_a_formula_is_quoted(text):
    assert safe_cell(text) == "'" + text


@pytest.mark.parametrize("value, cell", [("web01", "web01"), (None, ""), (42, "42"), ("a=b", "a=b")])
def test_other_cells_are_written_as_they_are(value, cell):
    assert safe_cell(value) == cell
