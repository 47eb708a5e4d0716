"""Composable cohort predicates.

A predicate is plain data; each store translates it (SQL for the embedded store, Cypher for
Neo4j) with user values passed only as parameters. Compose with ``&``, ``|`` and ``~``::

    diabetic_high_a1c = HasCondition("44054006") & LabValue("4548-4", ">", 7.0, within_days=365)
    store.cohort(diabetic_high_a1c, as_of=datetime(2020, 1, 1, tzinfo=UTC))

Semantics, all evaluated on the graph as of ``as_of`` (everything when ``None``):

* ``HasCondition(code)``: a Condition with this code has onset at or before ``as_of``.
* ``LabValue(code, op, value, within_days)``: a Lab with this code compares true against
  ``value`` (in the code's canonical unit), measured in the ``within_days`` before ``as_of``
  (any time when ``within_days`` is ``None``; ``within_days`` needs ``as_of``).
* ``OnMedication(code)``: a Medication with this code started at or before ``as_of`` and had
  not ended by then (with ``as_of=None``: ever prescribed).
* ``CarriesVariant(gene)``: the patient carries a Variant in this gene.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core.errors import QueryError

__all__ = [
    "All",
    "AnyOf",
    "CarriesVariant",
    "HasCondition",
    "LabValue",
    "Not",
    "OnMedication",
    "Predicate",
    "predicate_from_dict",
]

Op = Literal[">", ">=", "<", "<=", "="]
OPS: tuple[str, ...] = (">", ">=", "<", "<=", "=")


class _Composable:
    def __and__(self, other: Predicate) -> All:
        return All((self, other))  # type: ignore[arg-type]

    def __or__(self, other: Predicate) -> AnyOf:
        return AnyOf((self, other))  # type: ignore[arg-type]

    def __invert__(self) -> Not:
        return Not(self)  # type: ignore[arg-type]


@dataclass(frozen=True)
class HasCondition(_Composable):
    """The patient has a Condition with this code (optionally in this coding system) by ``as_of``."""

    code: str
    system: str | None = None


@dataclass(frozen=True)
class LabValue(_Composable):
    """The patient has a Lab with this code whose canonical-unit value compares true against ``value``."""

    code: str
    op: Op
    value: float
    within_days: float | None = None

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise QueryError(f"LabValue.op must be one of {OPS}, got {self.op!r}")
        if self.within_days is not None and not self.within_days > 0:
            raise QueryError(f"LabValue.within_days must be > 0, got {self.within_days!r}")
        if not isinstance(self.value, (int, float)) or self.value != self.value:
            raise QueryError(f"LabValue.value must be a finite number, got {self.value!r}")


@dataclass(frozen=True)
class OnMedication(_Composable):
    """The patient is on a Medication with this code at ``as_of`` (ever prescribed when ``None``)."""

    code: str


@dataclass(frozen=True)
class CarriesVariant(_Composable):
    """The patient carries a Variant in this gene."""

    gene: str


@dataclass(frozen=True)
class All(_Composable):
    """Conjunction: every part holds (built by ``&``)."""

    parts: tuple[Predicate, ...]


@dataclass(frozen=True)
class AnyOf(_Composable):
    """Disjunction: at least one part holds (built by ``|``)."""

    parts: tuple[Predicate, ...]


@dataclass(frozen=True)
class Not(_Composable):
    """Negation: the part does not hold (built by ``~``)."""

    part: Predicate


Predicate = HasCondition | LabValue | OnMedication | CarriesVariant | All | AnyOf | Not


def predicate_from_dict(d: dict) -> Predicate:
    """Build a predicate from its JSON form (used by the CLI and the API).

    ``{"has_condition": "44054006"}``, ``{"lab": "4548-4", "op": ">", "value": 7, "within_days": 365}``,
    ``{"on_medication": "860975"}``, ``{"carries_variant_in": "CYP2C19"}``,
    ``{"all": [...]}``, ``{"any": [...]}``, ``{"not": {...}}``.
    """
    if not isinstance(d, dict) or not d:
        raise QueryError(f"a predicate must be a non-empty JSON object, got {d!r}")
    try:
        if "all" in d:
            return All(tuple(predicate_from_dict(p) for p in _list(d["all"], "all")))
        if "any" in d:
            return AnyOf(tuple(predicate_from_dict(p) for p in _list(d["any"], "any")))
        if "not" in d:
            return Not(predicate_from_dict(d["not"]))
        if "has_condition" in d:
            return HasCondition(_str(d["has_condition"], "has_condition"), d.get("system"))
        if "lab" in d:
            return LabValue(_str(d["lab"], "lab"), d.get("op", ">"), float(d["value"]), d.get("within_days"))
        if "on_medication" in d:
            return OnMedication(_str(d["on_medication"], "on_medication"))
        if "carries_variant_in" in d:
            return CarriesVariant(_str(d["carries_variant_in"], "carries_variant_in"))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, QueryError):
            raise
        raise QueryError(f"invalid predicate {d!r}: {exc}") from None
    raise QueryError(
        f"unknown predicate {sorted(d)}; expected one of all/any/not/has_condition/lab/on_medication/carries_variant_in"
    )


def _list(v: object, key: str) -> list:
    if not isinstance(v, list) or not v:
        raise QueryError(f"{key!r} needs a non-empty list of predicates")
    return v


def _str(v: object, key: str) -> str:
    if not isinstance(v, str) or not v:
        raise QueryError(f"{key!r} needs a non-empty string code")
    return v
