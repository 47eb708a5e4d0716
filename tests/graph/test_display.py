"""Units and names as people read them (display only; stored units stay UCUM)."""

from __future__ import annotations

import pytest

from graph import display_unit, name_with_code
from graph.units import CANONICAL


@pytest.mark.parametrize(("ucum", "shown"), [
    ("mm[Hg]", "mmHg"), ("mL/min/{1.73_m2}", "mL/min/1.73 m²"), ("10*3/uL", "10³/µL"), ("10*9/L", "10⁹/L"),
    ("kg/m2", "kg/m²"), ("ug/L", "µg/L"), ("umol/L", "µmol/L"), ("[iU]/L", "IU/L"), ("Cel", "°C"),
    ("{beats}/min", "beats/min"), ("/a", "/yr"), ("1", ""), ("mg/dL", "mg/dL"), ("%", "%"), ("U/L", "U/L"),
    (None, ""),
])
def test_display_unit_reads_like_print(ucum: str | None, shown: str) -> None:
    assert display_unit(ucum) == shown


def test_no_canonical_lab_unit_keeps_ucum_brackets_or_braces() -> None:
    for code, lab in CANONICAL.items():
        shown = display_unit(lab.unit)
        assert not set("[]{}*") & set(shown), (code, lab.unit, shown)


def test_name_with_code() -> None:
    assert name_with_code("Hemoglobin A1c", "4548-4") == "Hemoglobin A1c (4548-4)"
    assert name_with_code(None, "4548-4") == "4548-4"
    assert name_with_code("metformin", None) == "metformin"
    assert name_with_code("US", "US") == "US"
    assert name_with_code(None, None) == ""
