"""Units: one canonical UCUM unit per common LOINC code, and conversions into it.

Every numeric ``Lab`` node stores its value in the canonical unit of its code, so values of
one code are comparable across records, files and sources (cohort predicates such as
``LabValue("2339-0", ">", 100)`` mean mg/dL whatever the record said).

* :data:`CANONICAL` maps LOINC codes to a :class:`LabUnit` (canonical unit, molar mass for
  mass <-> amount conversions, plausible bounds).
* :func:`normalize_unit` maps spellings to one UCUM string (``"mg/dl"`` -> ``"mg/dL"``,
  ``"(score)"`` -> ``"{score}"``, ``"mL/min/1.73m2"`` -> ``"mL/min/{1.73_m2}"``).
* :func:`convert` converts between two UCUM units of the same dimension with a small UCUM
  term parser (prefixes, ``/`` and ``.``, exponents, ``10*n`` factors, ``{annotations}`` which
  are unity as in UCUM), plus affine temperatures (Cel, [degF], K).
* :func:`to_canonical` applies all of it for a LOINC code; codes outside the table keep
  their (normalised) unit and value.
* :func:`dose_quantity` puts a treatment dose into the canonical unit of its kind (mg, mg/m2,
  mg/kg, Gy, [iU], U, mmol, meq, mL or a count ``1``) and :func:`convert_dose` converts between
  dose units of one kind; both refuse what they cannot classify.

Failures raise :class:`~core.errors.RecordError` without location; parsers add file,
resource and field.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

from core.errors import RecordError

__all__ = [
    "CANONICAL",
    "LabUnit",
    "canonical_unit",
    "convert",
    "convert_dose",
    "dose_quantity",
    "lab_codes_named",
    "normalize_unit",
    "to_canonical",
]


@dataclass(frozen=True)
class LabUnit:
    """Canonical unit of one LOINC code.

    ``molar_mass`` (g/mol) enables mass <-> amount-of-substance conversions (mg/dL <-> mmol/L);
    ``low``/``high`` bound physically possible values in the canonical unit (inclusive);
    ``names`` are the short names people use for the code (``HbA1c``, ``eGFR``), lower case.
    """

    unit: str
    molar_mass: float | None = None
    low: float | None = 0.0
    high: float | None = None
    names: tuple[str, ...] = ()


_GLUCOSE, _CHOL, _TG, _CREAT, _UREA_N, _CA = 180.16, 386.65, 885.7, 113.12, 28.014, 40.08

#: Canonical unit per LOINC code (labs seen in Synthea and the HL7 examples, plus vitals).
CANONICAL: dict[str, LabUnit] = {
    # chemistry (molar masses give the usual factors: glucose 18.016, cholesterol 38.67, ...)
    "2339-0": LabUnit("mg/dL", _GLUCOSE, names=("glucose",)),  # glucose, blood
    "2345-7": LabUnit("mg/dL", _GLUCOSE, names=("glucose",)),  # glucose, serum/plasma
    "15074-8": LabUnit("mmol/L", _GLUCOSE),  # glucose [moles/volume] in blood
    "38483-4": LabUnit("mg/dL", _CREAT, names=("creatinine",)),  # creatinine, blood
    "2160-0": LabUnit("mg/dL", _CREAT, names=("creatinine",)),  # creatinine, serum/plasma
    "6299-2": LabUnit("mg/dL", _UREA_N),  # urea nitrogen
    "3094-0": LabUnit("mg/dL", _UREA_N),  # urea nitrogen, serum/plasma
    "49765-1": LabUnit("mg/dL", _CA),  # calcium
    "17861-6": LabUnit("mg/dL", _CA),  # calcium, serum/plasma
    "2947-0": LabUnit("mmol/L"),  # sodium
    "2951-2": LabUnit("mmol/L"),  # sodium, serum/plasma
    "6298-4": LabUnit("mmol/L", names=("potassium", "k")),  # potassium
    "2823-3": LabUnit("mmol/L", names=("potassium", "k")),  # potassium, serum/plasma
    "2069-3": LabUnit("mmol/L"),  # chloride
    "2075-0": LabUnit("mmol/L"),  # chloride, serum/plasma
    "20565-8": LabUnit("mmol/L"),  # carbon dioxide
    "2028-9": LabUnit("mmol/L"),  # carbon dioxide, serum/plasma
    "2093-3": LabUnit("mg/dL", _CHOL),  # total cholesterol
    "18262-6": LabUnit("mg/dL", _CHOL, names=("ldl",)),  # LDL cholesterol (direct)
    "13457-7": LabUnit("mg/dL", _CHOL, names=("ldl",)),  # LDL cholesterol (calculated)
    "2089-1": LabUnit("mg/dL", _CHOL, names=("ldl",)),  # LDL cholesterol
    "2085-9": LabUnit("mg/dL", _CHOL, names=("hdl",)),  # HDL cholesterol
    "2571-8": LabUnit("mg/dL", _TG),  # triglycerides
    "4548-4": LabUnit("%", low=0.0, high=100.0, names=("hba1c", "a1c")),  # hemoglobin A1c (NGSP %); IFCC mmol/mol converted
    "17856-6": LabUnit("%", low=0.0, high=100.0, names=("hba1c", "a1c")),  # hemoglobin A1c by HPLC
    # kidney function (annotations are unity in UCUM, so mL/min reads as mL/min/{1.73_m2})
    "33914-3": LabUnit("mL/min/{1.73_m2}", names=("egfr",)),
    "48642-3": LabUnit("mL/min/{1.73_m2}", names=("egfr",)),
    "48643-1": LabUnit("mL/min/{1.73_m2}", names=("egfr",)),
    "62238-1": LabUnit("mL/min/{1.73_m2}", names=("egfr",)),
    "98979-8": LabUnit("mL/min/{1.73_m2}", names=("egfr",)),
    "69405-9": LabUnit("mL/min/{1.73_m2}", names=("egfr",)),  # eGFR, creatinine-based (CKD-EPI)
    "14959-1": LabUnit("mg/g"),  # microalbumin/creatinine ratio
    # haematology
    "718-7": LabUnit("g/dL"),  # hemoglobin
    "4544-3": LabUnit("%", low=0.0, high=100.0),  # hematocrit
    "6690-2": LabUnit("10*3/uL"),  # leukocytes
    "789-8": LabUnit("10*6/uL"),  # erythrocytes
    "777-3": LabUnit("10*3/uL"),  # platelets
    "787-2": LabUnit("fL"),  # MCV
    "785-6": LabUnit("pg"),  # MCH
    "786-4": LabUnit("g/dL"),  # MCHC
    "21000-5": LabUnit("fL"),  # RDW (fL)
    "32207-3": LabUnit("fL"),  # platelet distribution width
    "32623-1": LabUnit("fL"),  # platelet mean volume
    # liver / proteins
    "1742-6": LabUnit("U/L"),  # ALT
    "1920-8": LabUnit("U/L"),  # AST
    "6768-6": LabUnit("U/L"),  # alkaline phosphatase
    "1751-7": LabUnit("g/dL"),  # albumin
    "2885-2": LabUnit("g/dL"),  # protein
    "1975-2": LabUnit("mg/dL"),  # bilirubin total
    "33762-6": LabUnit("pg/mL"),  # NT-proBNP
    # vitals
    "29463-7": LabUnit("kg", names=("weight",)),  # body weight
    "3141-9": LabUnit("kg"),  # body weight measured
    "8302-2": LabUnit("cm"),  # body height
    "8306-3": LabUnit("cm"),  # body height lying
    "39156-5": LabUnit("kg/m2", names=("bmi",)),  # BMI
    "59576-9": LabUnit("%", low=0.0, high=100.0),  # BMI percentile
    "8310-5": LabUnit("Cel", low=-273.15),  # body temperature
    "8331-1": LabUnit("Cel", low=-273.15),  # oral temperature
    "8480-6": LabUnit("mm[Hg]", names=("sbp", "systolic")),  # systolic
    "8462-4": LabUnit("mm[Hg]", names=("dbp", "diastolic")),  # diastolic
    "8478-0": LabUnit("mm[Hg]"),  # mean arterial pressure
    "8867-4": LabUnit("/min"),  # heart rate
    "9279-1": LabUnit("/min"),  # respiratory rate
    "2708-6": LabUnit("%", low=0.0, high=100.0),  # O2 saturation arterial
    "59408-5": LabUnit("%", low=0.0, high=100.0),  # O2 saturation by pulse oximetry
    "72514-3": LabUnit("{score}", low=0.0, high=10.0),  # pain severity 0-10
}

# Spellings seen in records -> UCUM. Keys are matched case-sensitively first, then lower-cased.
_SYNONYMS: dict[str, str] = {
    "(score)": "{score}",
    "score": "{score}",
    "mL/min/1.73m2": "mL/min/{1.73_m2}",
    "mL/min/1.73 m2": "mL/min/{1.73_m2}",
    "mL/min/1.73m^2": "mL/min/{1.73_m2}",
    "ml/min/1.73m2": "mL/min/{1.73_m2}",
    "mg/dl": "mg/dL",
    "g/dl": "g/dL",
    "mcg": "ug",
    "microgram": "ug",
    "µg": "ug",
    "μg": "ug",
    "MG": "mg",
    "mmol/l": "mmol/L",
    "umol/l": "umol/L",
    "µmol/L": "umol/L",
    "μmol/L": "umol/L",
    "mEq/L": "meq/L",
    "mmHg": "mm[Hg]",
    "mm Hg": "mm[Hg]",
    "lb": "[lb_av]",
    "lbs": "[lb_av]",
    "in": "[in_i]",
    "inch": "[in_i]",
    "°C": "Cel",
    "degC": "Cel",
    "C": "Cel",
    "°F": "[degF]",
    "degF": "[degF]",
    "F": "[degF]",
    "bpm": "/min",
    "beats/min": "/min",
    "breaths/min": "/min",
    "kg/m^2": "kg/m2",
    "percent": "%",
    "x10^3/uL": "10*3/uL",
    "10^3/uL": "10*3/uL",
    "K/uL": "10*3/uL",
    "x10^6/uL": "10*6/uL",
    "10^6/uL": "10*6/uL",
    "M/uL": "10*6/uL",
}
_SYNONYMS_LOWER = {k.lower(): v for k, v in _SYNONYMS.items()}
_UCUM_LOWER = {u.lower(): u for u in {lu.unit for lu in CANONICAL.values()} | set(_SYNONYMS.values())}

# Base units: factor to a coherent base and a dimension vector (mass g, length m, time s,
# amount mol, enzyme U, international unit, mercury pressure, equivalents).
_DIMS = ("g", "m", "s", "mol", "U", "iU", "mmHg", "eq")


def _dim(**kw: int) -> tuple[int, ...]:
    return tuple(kw.get(d, 0) for d in _DIMS)


_BASE: dict[str, tuple[float, tuple[int, ...]]] = {
    "g": (1.0, _dim(g=1)),
    "m": (1.0, _dim(m=1)),
    "L": (1e-3, _dim(m=3)),
    "l": (1e-3, _dim(m=3)),
    "s": (1.0, _dim(s=1)),
    "min": (60.0, _dim(s=1)),
    "h": (3600.0, _dim(s=1)),
    "d": (86400.0, _dim(s=1)),
    "wk": (604800.0, _dim(s=1)),
    "mo": (2629800.0, _dim(s=1)),
    "a": (31557600.0, _dim(s=1)),
    "mol": (1.0, _dim(mol=1)),
    "eq": (1.0, _dim(eq=1)),
    "U": (1.0, _dim(U=1)),
    "[iU]": (1.0, _dim(iU=1)),
    "Gy": (1.0, _dim(m=2, s=-2)),  # absorbed dose, J/kg
    "[IU]": (1.0, _dim(iU=1)),
    "mm[Hg]": (1.0, _dim(mmHg=1)),
    "[lb_av]": (453.59237, _dim(g=1)),
    "[oz_av]": (28.349523125, _dim(g=1)),
    "[in_i]": (0.0254, _dim(m=1)),
    "[ft_i]": (0.3048, _dim(m=1)),
    "%": (0.01, _dim()),
    "1": (1.0, _dim()),
}
_PREFIX: dict[str, float] = {
    "k": 1e3, "h": 1e2, "da": 1e1, "d": 1e-1, "c": 1e-2, "m": 1e-3, "u": 1e-6, "µ": 1e-6, "μ": 1e-6,
    "n": 1e-9, "p": 1e-12, "f": 1e-15,
}
_NO_PREFIX = {"[lb_av]", "[oz_av]", "[in_i]", "[ft_i]", "%", "1", "mm[Hg]", "min", "h", "d", "wk", "mo", "a"}
_TEMPS = {"Cel", "[degF]", "K"}
_ATOM = re.compile(r"^(?P<base>.*?)(?P<exp>[+-]?\d+)?$")
_POWER10 = re.compile(r"^10(?:\*|\^)([+-]?\d+)$")


def normalize_unit(unit: str | None) -> str | None:
    """One UCUM spelling for ``unit`` (``None``/empty -> ``None``); unknown strings pass through."""
    if unit is None:
        return None
    u = unit.strip()
    if not u:
        return None
    if u in _SYNONYMS:
        return _SYNONYMS[u]
    low = u.lower()
    if low in _SYNONYMS_LOWER:
        return _SYNONYMS_LOWER[low]
    return _UCUM_LOWER.get(low, u)


def _atom(text: str) -> tuple[float, tuple[int, ...]]:
    if text.startswith("{") and text.endswith("}"):
        return 1.0, _dim()  # annotation: unity
    m10 = _POWER10.match(text)
    if m10:
        return 10.0 ** int(m10.group(1)), _dim()
    try:
        return float(text), _dim()
    except ValueError:
        pass
    if text in _BASE:
        return _BASE[text]
    m = _ATOM.match(text)
    base, exp = (m.group("base"), int(m.group("exp"))) if m and m.group("exp") else (text, 1)
    for cand, e in ((base, exp), (text, 1)):
        if cand in _BASE:
            f, d = _BASE[cand]
            return f**e, tuple(x * e for x in d)
        for p in sorted(_PREFIX, key=len, reverse=True):
            rest = cand[len(p):]
            if cand.startswith(p) and rest in _BASE and rest not in _NO_PREFIX:
                f, d = _BASE[rest]
                return (_PREFIX[p] * f) ** e, tuple(x * e for x in d)
    raise RecordError(f"unknown unit term {text!r}")


def _split_terms(unit: str) -> list[tuple[str, int]]:
    """Split ``a.b/c/d`` into ``[(a, +1), (b, +1), (c, -1), (d, -1)]`` outside brackets/braces."""
    out: list[tuple[str, int]] = []
    depth, cur, sign = 0, "", 1
    for ch in unit:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if depth == 0 and ch in "/.":
            if cur:
                out.append((cur, sign))
            elif ch == "/" and not out:
                pass  # leading "/": "/min"
            cur = ""
            sign = -1 if ch == "/" else sign
            continue
        cur += ch
    if cur:
        out.append((cur, sign))
    return out


@lru_cache(maxsize=1024)
def _parse(unit: str) -> tuple[float, tuple[int, ...]]:
    if unit in _TEMPS:
        raise RecordError(f"temperature unit {unit!r} has an offset; use convert()")
    factor, dims = 1.0, _dim()
    for term, sign in _split_terms(unit):
        f, d = _atom(term)
        factor *= f**sign
        dims = tuple(a + sign * b for a, b in zip(dims, d, strict=True))
    return factor, dims


def _temp_to_cel(value: float, unit: str) -> float:
    return {"Cel": value, "K": value - 273.15, "[degF]": (value - 32.0) * 5.0 / 9.0}[unit]


def _cel_to(value: float, unit: str) -> float:
    return {"Cel": value, "K": value + 273.15, "[degF]": value * 9.0 / 5.0 + 32.0}[unit]


def convert(value: float, from_unit: str, to_unit: str, *, molar_mass: float | None = None) -> float:
    """Convert ``value`` between two UCUM units of the same dimension.

    ``molar_mass`` (g/mol) additionally allows amount <-> mass (mmol/L <-> mg/dL).
    Raises :class:`RecordError` when the units are unknown or of different dimensions.
    """
    src, dst = normalize_unit(from_unit), normalize_unit(to_unit)
    if src is None or dst is None:
        raise RecordError(f"cannot convert between {from_unit!r} and {to_unit!r}: missing unit")
    if src == dst:
        return value
    if src in _TEMPS or dst in _TEMPS:
        if src in _TEMPS and dst in _TEMPS:
            return _cel_to(_temp_to_cel(value, src), dst)
        raise RecordError(f"cannot convert {src!r} to {dst!r}")
    (fs, ds), (fd, dd) = _parse(src), _parse(dst)
    if ds == dd:
        return _tidy(value * fs / fd)
    if molar_mass is not None:
        mol, g = _DIMS.index("mol"), _DIMS.index("g")
        # amount -> mass: one mol of the analyte weighs molar_mass g
        if ds[mol] == 1 and ds[g] == 0 and dd[g] == 1 and dd[mol] == 0 and _swap(ds, mol, g) == dd:
            return _tidy(value * fs * molar_mass / fd)
        if dd[mol] == 1 and dd[g] == 0 and ds[g] == 1 and ds[mol] == 0 and _swap(dd, mol, g) == ds:
            return _tidy(value * fs / molar_mass / fd)
    raise RecordError(f"cannot convert {src!r} to {dst!r} (different dimensions)")


def _tidy(x: float) -> float:
    """Drop binary noise from factor arithmetic (60 mL/min -> 60.0, not 59.99999999999999)."""
    return float(f"{x:.12g}") if math.isfinite(x) else x


def _swap(d: tuple[int, ...], a: int, b: int) -> tuple[int, ...]:
    out = list(d)
    out[a], out[b] = d[b], d[a]
    return tuple(out)


def lab_codes_named(name: str) -> tuple[str, ...]:
    """LOINC codes people call ``name`` (``"HbA1c"`` → 4548-4, 17856-6), from :data:`CANONICAL`."""
    key = name.strip().lower().replace(" ", "")
    return tuple(code for code, lu in CANONICAL.items() if key in lu.names)


def canonical_unit(code: str | None) -> str | None:
    """The canonical UCUM unit of a LOINC code, or ``None`` when the code is not in the table."""
    lu = CANONICAL.get(code) if code else None
    return lu.unit if lu else None


def _hba1c_ifcc_to_ngsp(mmol_per_mol: float) -> float:
    # NGSP/IFCC master equation: NGSP(%) = 0.09148 * IFCC(mmol/mol) + 2.152
    return 0.09148 * mmol_per_mol + 2.152


def to_canonical(code: str | None, value: float, unit: str | None) -> tuple[float, str | None]:
    """``(value, unit)`` in the canonical unit of ``code``.

    Codes outside :data:`CANONICAL` keep their value and normalised unit. For a code in the
    table a missing or unconvertible unit, or a value outside the code's possible range,
    raises :class:`RecordError` whose ``field`` says which was wrong: ``"unit"`` or ``"value"``.
    """
    if not math.isfinite(value):
        raise RecordError(f"value must be a finite number, got {value!r}", field="value")
    norm = normalize_unit(unit)
    lu = CANONICAL.get(code) if code else None
    if lu is None:
        return value, norm
    if norm is None:
        raise RecordError(f"a value of LOINC {code} needs a unit (canonical unit {lu.unit!r})", field="unit")
    if lu.unit == "%" and norm in ("mmol/mol", "mmol/mol{Hb}") and code in ("4548-4", "17856-6"):
        out = _hba1c_ifcc_to_ngsp(value)
    else:
        try:
            out = convert(value, norm, lu.unit, molar_mass=lu.molar_mass)
        except RecordError as exc:
            raise RecordError(f"unit {unit!r} of LOINC {code} cannot be converted to {lu.unit!r}: {exc.reason}",
                              field="unit") from None
    if not math.isfinite(out):
        raise RecordError(f"value {value!r} {unit} overflows when converted to {lu.unit!r}", field="value")
    if (lu.low is not None and out < lu.low) or (lu.high is not None and out > lu.high):
        raise RecordError(
            f"impossible value {value!r} {unit} for LOINC {code} (must lie in [{lu.low}, {lu.high}] {lu.unit})",
            field="value",
        )
    return out, lu.unit


# ---------------------------------------------------------------------------- doses
# Base kinds of a dose: (name, dimension, canonical unit). All but Gy may also be given per body
# mass (``/kg``) or per body surface area (``/m2``); a count (``1``, ``{tbl}``, ``TAB``) may not.
_DOSE_BASES: tuple[tuple[str, tuple[int, ...], str], ...] = (
    ("mass", _dim(g=1), "mg"),
    ("absorbed radiation dose", _dim(m=2, s=-2), "Gy"),
    ("international units", _dim(iU=1), "[iU]"),
    ("enzyme units", _dim(U=1), "U"),
    ("amount", _dim(mol=1), "mmol"),
    ("equivalents", _dim(eq=1), "meq"),
    ("volume", _dim(m=3), "mL"),
)
_DOSE_PER: dict[tuple[int, ...], tuple[str, str]] = {
    _dim(g=1): ("body mass", "kg"),
    _dim(m=2): ("body surface area", "m2"),
}
# Dose forms written as units (HL7 orderableDrugForm codes, pharmacy words): counted, like {tbl}.
_DOSE_FORMS = frozenset({
    "tab", "tbl", "tablet", "cap", "capsule", "puff", "drop", "gtt", "patch", "spray", "actuation", "dose",
    "each", "ea", "application", "suppository", "supp", "lozenge", "sachet", "vial", "ampule", "amp",
})
_DOSE_TERMS = {"iu": "[iU]", "[iu]": "[iU]", "unit": "U", "units": "U", "meq": "meq", "cc": "mL", "ml": "mL"}
_ANNOTATION = re.compile(r"\{[^{}]*\}")
_POWER_SIGN = re.compile(r"(?<=[A-Za-z\]])\^")


@dataclass(frozen=True, slots=True)
class _DoseUnit:
    kind: str
    canonical: str
    factor: float  # 1 of the unit expressed in ``canonical``


def _not_a_dose(unit: str | None) -> RecordError:
    shown = unit if unit is None or len(unit) <= 40 else unit[:40] + "..."
    return RecordError(f"unit {shown!r} is not a dose unit this engine converts "
                       "(mass, mass per m2 or kg, Gy, IU, U, mmol, mEq, mL or a count)")


def _dose_term(term: str) -> str | None:
    """A term's UCUM spelling, ``None`` for a count (annotation, ``1``, a dose form such as TAB)."""
    bare = _POWER_SIGN.sub("", _ANNOTATION.sub("", term).strip()).replace("²", "2")  # m^2, m² -> m2
    low = bare.lower()
    if not bare or bare == "1" or low in _DOSE_FORMS or (low.endswith("s") and low[:-1] in _DOSE_FORMS):
        return None
    return _DOSE_TERMS.get(low) or normalize_unit(bare)


@lru_cache(maxsize=512)
def _dose_unit(unit: str | None) -> _DoseUnit:
    """Kind, canonical unit and factor of a dose unit; ``None`` (a bare number) is a count."""
    num, den, factor = _dim(), _dim(), 1.0
    terms = _split_terms(unit.strip()) if unit else []
    if unit and unit.strip() and not terms:
        raise _not_a_dose(unit)  # "/", "..."
    for term, sign in terms:
        ucum = _dose_term(term)
        if ucum is None:
            continue
        try:
            f, d = _atom(ucum)
            factor *= f**sign
        except (ValueError, ArithmeticError):  # RecordError for unknown terms; 10*99999, kg99999, /mg99999
            raise _not_a_dose(unit) from None
        signed = tuple(sign * x for x in d)
        # a divided term ("/kg") or one with only negative exponents ("kg-1") is the "per" part
        if sign < 0 or (min(signed) < 0 and max(signed) <= 0):
            den = tuple(a - b for a, b in zip(den, signed, strict=True))
        else:
            num = tuple(a + b for a, b in zip(num, signed, strict=True))
    if num == _dim() and den == _dim() and factor == 1.0:
        return _DoseUnit("count", "1", 1.0)
    for kind, dims, canonical in _DOSE_BASES:
        if num != dims:
            continue
        if den == _dim():
            return _DoseUnit(kind, canonical, factor / _parse(canonical)[0])
        if den in _DOSE_PER and canonical != "Gy":
            per, per_unit = _DOSE_PER[den]
            target = f"{canonical}/{per_unit}"
            return _DoseUnit(f"{kind} per {per}", target, factor / _parse(target)[0])
    raise _not_a_dose(unit)


def dose_quantity(value: float, unit: str | None) -> tuple[float, str]:
    """A treatment dose in the canonical unit of its kind: ``(500, "g")`` -> ``(500000.0, "mg")``.

    Kinds: mass -> ``mg``; absorbed radiation dose -> ``Gy``; international units -> ``[iU]``;
    enzyme units -> ``U``; amount -> ``mmol``; equivalents -> ``meq``; volume -> ``mL``; each of
    these but Gy per body surface area or body mass -> ``mg/m2``, ``mg/kg``, ``[iU]/m2``, ...
    (read from the unit's terms, since g/g cancels in a dimension); counts (no unit, ``1``,
    annotations such as ``{tbl}``, dose forms such as ``TAB``) -> ``1``. Other units (``%``,
    rates such as ``mg/d``, concentrations) raise :class:`RecordError`.
    """
    du = _dose_unit(unit)
    out = _tidy(value * du.factor)
    if not math.isfinite(out):
        raise RecordError(f"dose {value!r} {unit} is not a finite number in {du.canonical!r}")
    return out, du.canonical


def convert_dose(value: float, from_unit: str | None, to_unit: str | None) -> float:
    """Convert a dose between two units of one kind (``cGy`` -> ``Gy``); other kinds raise :class:`RecordError`.

    Unlike :func:`convert`, mg/kg and mg/m2 are kinds of their own: neither converts to mg or a count.
    """
    src, dst = _dose_unit(from_unit), _dose_unit(to_unit)
    if src.kind != dst.kind:
        raise RecordError(f"cannot convert a dose in {from_unit!r} ({src.kind}) to {to_unit!r} ({dst.kind})")
    return _tidy(value * src.factor / dst.factor)
