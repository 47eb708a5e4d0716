"""Unit normalisation and conversion: known factors, synonyms, affine temperatures, errors."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import RecordError
from graph.units import CANONICAL, canonical_unit, convert, normalize_unit, to_canonical


@pytest.mark.parametrize(
    ("code", "value", "unit", "expected", "canonical"),
    [
        ("2339-0", 5.5, "mmol/L", 5.5 * 18.016, "mg/dL"),  # glucose
        ("2339-0", 99.0, "mg/dL", 99.0, "mg/dL"),
        ("2339-0", 1.0, "g/L", 100.0, "mg/dL"),
        ("38483-4", 88.4, "umol/L", 88.4 * 113.12 / 1000 / 10, "mg/dL"),  # creatinine
        ("2093-3", 5.0, "mmol/L", 5.0 * 38.665, "mg/dL"),  # cholesterol
        ("2571-8", 1.0, "mmol/L", 88.57, "mg/dL"),  # triglycerides
        ("4548-4", 48.0, "mmol/mol", 0.09148 * 48 + 2.152, "%"),  # HbA1c IFCC -> NGSP
        ("29463-7", 100.0, "[lb_av]", 45.359237, "kg"),
        ("29463-7", 70000.0, "g", 70.0, "kg"),
        ("8302-2", 70.0, "[in_i]", 177.8, "cm"),
        ("8302-2", 1.8, "m", 180.0, "cm"),
        ("8310-5", 98.6, "[degF]", 37.0, "Cel"),
        ("8310-5", 310.15, "K", 37.0, "Cel"),
        ("33914-3", 60.0, "mL/min/1.73m2", 60.0, "mL/min/{1.73_m2}"),
        ("33914-3", 60.0, "mL/min", 60.0, "mL/min/{1.73_m2}"),  # annotation is unity
        ("789-8", 4.5, "10*12/L", 4.5, "10*6/uL"),
        ("718-7", 140.0, "g/L", 14.0, "g/dL"),
        ("72514-3", 3.0, "(score)", 3.0, "{score}"),
    ],
)
def test_known_conversions(code: str, value: float, unit: str, expected: float, canonical: str) -> None:
    out, u = to_canonical(code, value, unit)
    assert u == canonical
    assert out == pytest.approx(expected, rel=1e-3)


def test_unknown_code_keeps_value_and_normalises_unit() -> None:
    assert to_canonical("99999-9", 3.0, "(score)") == (3.0, "{score}")
    assert to_canonical("99999-9", 3.0, "TAB") == (3.0, "TAB")
    assert to_canonical(None, 1.5, None) == (1.5, None)


@pytest.mark.parametrize(
    ("code", "value", "unit", "match"),
    [
        ("2339-0", 5.0, "kg", "cannot be converted"),  # wrong dimension
        ("2339-0", 5.0, "furlong", "cannot be converted"),  # unknown unit
        ("2339-0", 5.0, None, "needs a unit"),
        ("29463-7", -1.0, "kg", "impossible value"),  # negative weight
        ("8310-5", -500.0, "Cel", "impossible value"),  # below absolute zero
        ("4548-4", 130.0, "%", "impossible value"),
        ("2339-0", math.nan, "mg/dL", "finite"),
        ("2339-0", math.inf, "mg/dL", "finite"),
        ("8310-5", 37.0, "kg", "cannot be converted"),
    ],
)
def test_conversion_errors(code: str, value: float, unit: str | None, match: str) -> None:
    with pytest.raises(RecordError, match=match):
        to_canonical(code, value, unit)


def test_normalize_unit_synonyms() -> None:
    assert normalize_unit(" mg/dl ") == "mg/dL"
    assert normalize_unit("mmHg") == "mm[Hg]"
    assert normalize_unit("mL/min/1.73m2") == "mL/min/{1.73_m2}"
    assert normalize_unit("") is None and normalize_unit(None) is None
    assert normalize_unit("lbs") == "[lb_av]"


def test_convert_dimension_algebra() -> None:
    assert convert(1.0, "mg/dL", "g/L") == pytest.approx(0.01)
    assert convert(1.0, "/min", "/h") == pytest.approx(60.0)
    assert convert(2.0, "kg/m2", "g/cm2") == pytest.approx(0.2)
    with pytest.raises(RecordError):
        convert(1.0, "mg/dL", "mmol/L")  # needs a molar mass
    assert convert(1.0, "mmol/L", "mg/dL", molar_mass=180.16) == pytest.approx(18.016)


def test_every_canonical_unit_parses_and_is_its_own_fixed_point() -> None:
    for code, lu in CANONICAL.items():
        assert canonical_unit(code) == lu.unit
        mid = 1.0 if lu.high is None else min(1.0, lu.high)
        assert to_canonical(code, mid, lu.unit) == (mid, lu.unit)


@given(st.floats(min_value=0.0, max_value=1e6, allow_nan=False))
def test_glucose_round_trip(x: float) -> None:
    mmol = convert(x, "mg/dL", "mmol/L", molar_mass=180.16)
    assert to_canonical("2339-0", mmol, "mmol/L")[0] == pytest.approx(x, rel=1e-9, abs=1e-9)


@given(st.floats(min_value=-200.0, max_value=200.0, allow_nan=False))
def test_temperature_round_trip(c: float) -> None:
    assert convert(convert(c, "Cel", "[degF]"), "[degF]", "Cel") == pytest.approx(c, abs=1e-9)
