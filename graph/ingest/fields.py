"""Typed access to fields of raw JSON resources, failing with a located :class:`RecordError`.

Parsers never index raw JSON directly: every read goes through a :class:`Loc` (which file,
which resource) and a FHIR path, so junk input fails with a message naming file, resource
and field, and never with ``KeyError``/``TypeError``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.errors import RecordError
from graph.timeutil import parse_fhir_time

__all__ = ["Coding", "Loc", "content_id", "pick_coding"]

#: Preferred code systems (first match wins) when a CodeableConcept has several codings.
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
DICOM_DCM = "http://dicom.nema.org/resources/ontology/DCM"

#: Values of ``Prop.DOSING``: one administration at ``time``, or a daily amount over ``[time, end)``.
PULSE, PERIOD = "pulse", "period"


def content_id(obj: Any) -> str:
    """Deterministic id for a record without one: a hash of its canonical JSON."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "h" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Coding:
    """One chosen coding of a CodeableConcept (``code`` may be ``None`` when only text is given)."""

    system: str | None
    code: str | None
    display: str | None


@dataclass(frozen=True, slots=True)
class Loc:
    """Where a resource came from: ``file`` (path or upload name) and ``resource`` label."""

    file: str | None
    resource: str | None

    def error(self, reason: str, field: str | None = None) -> RecordError:
        return RecordError(reason, file=self.file, resource=self.resource, field=field)

    # ---------------------------------------------------------------- typed getters
    def obj(self, d: dict[str, Any], key: str, path: str) -> dict[str, Any] | None:
        v = d.get(key)
        if v is None:
            return None
        if not isinstance(v, dict):
            raise self.error(f"expected an object, got {type(v).__name__}", path)
        return v

    def lst(self, d: dict[str, Any], key: str, path: str) -> list[Any]:
        v = d.get(key)
        if v is None:
            return []
        if not isinstance(v, list):
            raise self.error(f"expected a list, got {type(v).__name__}", path)
        return v

    def objs(self, d: dict[str, Any], key: str, path: str) -> list[dict[str, Any]]:
        out = self.lst(d, key, path)
        for i, x in enumerate(out):
            if not isinstance(x, dict):
                raise self.error(f"expected an object, got {type(x).__name__}", f"{path}[{i}]")
        return out

    def string(self, d: dict[str, Any], key: str, path: str) -> str | None:
        v = d.get(key)
        if v is None:
            return None
        if not isinstance(v, str):
            raise self.error(f"expected a string, got {type(v).__name__}", path)
        return v

    def boolean(self, d: dict[str, Any], key: str, path: str) -> bool | None:
        v = d.get(key)
        if v is None:
            return None
        if not isinstance(v, bool):
            raise self.error(f"expected a boolean, got {type(v).__name__}", path)
        return v

    def number(self, v: Any, path: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.error(f"expected a number, got {type(v).__name__}", path)
        try:
            x = float(v)
        except OverflowError:
            raise self.error(f"number {v!r} is out of range", path) from None
        if not math.isfinite(x):
            raise self.error(f"number must be finite, got {v!r}", path)
        return x

    def num(self, d: dict[str, Any], key: str, path: str) -> float | None:
        v = d.get(key)
        return None if v is None else self.number(v, path)

    def time(self, d: dict[str, Any], key: str, path: str) -> datetime | None:
        v = d.get(key)
        if v is None:
            return None
        if not isinstance(v, str):
            raise self.error(f"expected a date/dateTime string, got {type(v).__name__}", path)
        try:
            return parse_fhir_time(v)
        except (ValueError, OverflowError):
            raise self.error(f"not a valid FHIR date/dateTime: {v[:40]!r}", path) from None

    def period(self, d: dict[str, Any], key: str, path: str) -> tuple[datetime | None, datetime | None]:
        p = self.obj(d, key, path)
        if p is None:
            return None, None
        return self.time(p, "start", f"{path}.start"), self.time(p, "end", f"{path}.end")

    def codeable(self, d: dict[str, Any], key: str, path: str, prefer: tuple[str, ...] = ()) -> Coding | None:
        """The preferred coding of a CodeableConcept (or its ``text`` alone), ``None`` if absent.

        A CodeableConcept that is present but empty (``{}``, no coding and no text) is an error:
        FHIR elements must carry content, and reading it as "no code" would let a re-sent
        record blank a stored code.
        """
        cc = self.obj(d, key, path)
        if cc is None:
            return None
        out = self.concept(cc, path, prefer)
        if out is None and not cc.get("coding") and not cc.get("text"):
            raise self.error("an empty CodeableConcept: give a coding with a code, or text", path)
        return out

    def concept(self, cc: dict[str, Any], path: str, prefer: tuple[str, ...] = ()) -> Coding | None:
        codings = self.objs(cc, "coding", f"{path}.coding")
        text = self.string(cc, "text", f"{path}.text")
        parsed = []
        for i, c in enumerate(codings):
            p = f"{path}.coding[{i}]"
            parsed.append(Coding(self.string(c, "system", f"{p}.system"), self.string(c, "code", f"{p}.code"),
                                 self.string(c, "display", f"{p}.display")))
        chosen = pick_coding(parsed, prefer)
        if chosen is None:
            return Coding(None, None, text.strip()) if text and text.strip() else None
        if chosen.display is None and text:
            chosen = Coding(chosen.system, chosen.code, text)
        return chosen

    def first_code(self, d: dict[str, Any], key: str, path: str) -> str | None:
        """Code of the first coding of the first CodeableConcept in a list (e.g. ``category``)."""
        for i, cc in enumerate(self.objs(d, key, path)):
            c = self.concept(cc, f"{path}[{i}]")
            if c is not None:
                return c.code or c.display
        return None


def pick_coding(codings: list[Coding], prefer: tuple[str, ...] = ()) -> Coding | None:
    """The first coding whose system is in ``prefer`` (in order), else the first with a code."""
    with_code = [c for c in codings if c.code]
    for system in prefer:
        for c in with_code:
            if c.system == system:
                return c
    return with_code[0] if with_code else None
