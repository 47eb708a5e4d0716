"""Units and names as people read them: for display only, stored values stay UCUM and codes.

Records keep their UCUM unit (``mm[Hg]``, ``mL/min/{1.73_m2}``) because conversions need the
exact code; reports, tables and plots show :func:`display_unit` (``mmHg``, ``mL/min/1.73 m²``)
and name a coded record by its display with the code beside it (:func:`name_with_code`).
"""

from __future__ import annotations

import re

__all__ = ["display_unit", "name_with_code"]

#: Whole UCUM units whose readable form the generic rules below would not produce.
_WHOLE = {
    "1": "",
    "{score}": "score",
    "[iU]": "IU",
    "[IU]": "IU",
    "[degF]": "°F",
    "Cel": "°C",
    "[lb_av]": "lb",
    "[oz_av]": "oz",
    "[in_i]": "in",
    "[ft_i]": "ft",
    "[ppm]": "ppm",
    "/[HPF]": "/HPF",
    "/[LPF]": "/LPF",
}
#: UCUM atoms spelled differently in print, replaced wherever they occur in a unit.
_ATOMS = {"mm[Hg]": "mmHg", "cm[H2O]": "cmH2O", "[iU]": "IU", "[IU]": "IU"}
_YEAR = re.compile(r"(?<=/)a\b")
_ANNOTATION = re.compile(r"\{([^{}]*)\}")
_POWER = re.compile(r"10\*(-?\d+)|10\^(-?\d+)")
_MICRO = re.compile(r"(?<![A-Za-z])u(?=(?:g|L|l|mol|m|U|IU|eq|s)\b)")
_SQUARE = re.compile(r"(?<=[A-Za-z])(2|3)\b")
_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def _annotation(match: re.Match[str]) -> str:
    """``{1.73_m2}`` → ``1.73 m²``; ``{beats}`` → ``beats``."""
    return _SQUARE.sub(lambda m: m.group(1).translate(_SUPERSCRIPT), match.group(1).replace("_", " "))


def display_unit(unit: str | None) -> str:
    """The readable form of a UCUM ``unit`` (``mm[Hg]`` → ``mmHg``, ``mL/min/{1.73_m2}`` →
    ``mL/min/1.73 m²``, ``10*3/uL`` → ``10³/µL``, ``kg/m2`` → ``kg/m²``, ``1`` → ``""``).

    Display only: never store or convert with the result. An unknown unit comes back tidied
    by the same rules (brackets and annotation braces dropped), never refused.
    """
    if unit is None:
        return ""
    text = unit.strip()
    if text in _WHOLE:
        return _WHOLE[text]
    for ucum, shown in _ATOMS.items():
        text = text.replace(ucum, shown)
    text = _YEAR.sub("yr", text)
    text = _ANNOTATION.sub(_annotation, text)
    text = _POWER.sub(lambda m: "10" + (m.group(1) or m.group(2)).translate(_SUPERSCRIPT), text)
    text = _MICRO.sub("µ", text)
    text = _SQUARE.sub(lambda m: m.group(1).translate(_SUPERSCRIPT), text)
    text = text.replace("[", "").replace("]", "")
    return text


def name_with_code(name: str | None, code: str | None) -> str:
    """``"Hemoglobin A1c (4548-4)"``: a record's display name with its code beside it; the code
    alone when the record has no name, the name alone when it has no code."""
    if name and code and name != code:
        return f"{name} ({code})"
    return name or code or ""
