"""UTC time handling shared by parsers, stores and features.

Stores keep times as fixed-width ISO-8601 UTC strings (``YYYY-MM-DDTHH:MM:SSZ``) so that
lexicographic order is time order in SQL and Cypher alike.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

__all__ = ["days_between", "from_iso", "parse_fhir_time", "to_iso", "utc"]

_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$")


def utc(dt: datetime) -> datetime:
    """Make ``dt`` timezone-aware UTC (naive values are taken to be UTC)."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def parse_fhir_time(text: str) -> datetime:
    """Parse a FHIR ``date``/``dateTime``/``instant`` (partial dates allowed) to UTC.

    ``"2019"`` → 2019-01-01, ``"2019-05"`` → 2019-05-01. Raises ``ValueError`` on anything else.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a date string, got {type(text).__name__}")
    s = text.strip()
    m = _PARTIAL.match(s)
    if m:
        y, mo, d = int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1)
        return datetime(y, mo, d, tzinfo=UTC)
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"not a FHIR date/dateTime: {text!r}") from None
    return utc(dt)


def to_iso(dt: datetime | date | None) -> str | None:
    """Fixed-width UTC ISO string (second precision) or ``None``."""
    if dt is None:
        return None
    if not isinstance(dt, datetime):
        dt = datetime(dt.year, dt.month, dt.day, tzinfo=UTC)
    return utc(dt).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_iso(text: str | None) -> datetime | None:
    """Inverse of :func:`to_iso` (accepts any ISO string)."""
    if text is None:
        return None
    return parse_fhir_time(text)


def days_between(a: datetime, b: datetime) -> float:
    """``b - a`` in (fractional) days."""
    return (b - a) / timedelta(days=1)
