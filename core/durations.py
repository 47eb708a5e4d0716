"""Durations as people write them (``90``, ``26w``, ``6 months``, ``1y``) → days.

The one parser for every horizon, objective day and schedule length in the project, so
``--horizon 1y`` means the same number of days to ``forecast``, ``simulate`` and the API.
Months and years are calendar averages (30.4375 and 365.25 days).
"""

from __future__ import annotations

import math
import re

from core.errors import TwinError

__all__ = ["DURATION_PATTERN", "UNIT_DAYS", "days_of", "parse_duration"]

#: Days per unit (the first letter of the unit decides: d, w, m, y).
UNIT_DAYS: dict[str, float] = {"d": 1.0, "w": 7.0, "m": 30.4375, "y": 365.25}

#: A number with an optional unit; embeddable in larger patterns (two groups: number, unit).
DURATION_PATTERN = r"(\d+(?:\.\d+)?)\s*(d|days?|w|weeks?|m|months?|y|years?)?"

_FULL = re.compile(rf"^\s*{DURATION_PATTERN}\s*$", re.I)


def days_of(number: str, unit: str | None) -> float:
    """The groups of :data:`DURATION_PATTERN` → days (rounded to 1e-6 d)."""
    return round(float(number) * UNIT_DAYS[(unit or "d")[0].lower()], 6)


def parse_duration(text: str | float, *, what: str = "duration") -> float:
    """``"365d"``, ``"52w"``, ``"6m"``, ``"1y"``, ``"90"`` or ``90`` → days (> 0).

    ``what`` names the option in the error (e.g. ``"--horizon"``).
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        days = float(text)
    else:
        m = _FULL.match(str(text))
        if not m:
            raise TwinError(f"{what} {text!r}: write a number of days or a duration such as 365d, 26w, 6m or 1y")
        days = days_of(m.group(1), m.group(2))
    if not (math.isfinite(days) and days > 0):
        raise TwinError(f"{what} {text!r}: must be a positive duration")
    return days
