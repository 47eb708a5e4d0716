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

Limits (checked when a predicate is built, by :func:`predicate_from_dict` and by the
constructors behind ``&``, ``|`` and ``~``, so no oversized predicate reaches a store; a
violation is a :class:`~core.errors.QueryError` naming the limit, which the API answers 422):

* :data:`MAX_PREDICATE_DEPTH` = 10: at most 10 levels of ``all``/``any``/``not`` above a
  leaf (``{"not": {"has_condition": ...}}`` has depth 1).
* :data:`MAX_PREDICATE_TERMS` = 500: at most 500 leaf terms in the whole predicate (so no
  ``all``/``any`` list is longer either). ``a & b & c`` is flattened into one ``All`` of
  three terms, so chaining operators does not add depth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from core.errors import QueryError

__all__ = [
    "MAX_PREDICATE_DEPTH",
    "MAX_PREDICATE_TERMS",
    "All",
    "AnyOf",
    "CarriesVariant",
    "HasCondition",
    "LabValue",
    "Not",
    "OnMedication",
    "Predicate",
    "check_limits",
    "predicate_from_dict",
    "predicate_from_json",
]

#: Most levels of ``all``/``any``/``not`` above a leaf term.
MAX_PREDICATE_DEPTH = 10
#: Most leaf terms (``has_condition``, ``lab``, ...) in one predicate.
MAX_PREDICATE_TERMS = 500

Op = Literal[">", ">=", "<", "<=", "="]
OPS: tuple[str, ...] = (">", ">=", "<", "<=", "=")


def _depth_error(depth: int) -> QueryError:
    return QueryError(f"predicate nests {depth} levels of all/any/not; the limit (depth) is {MAX_PREDICATE_DEPTH}")


def _terms_error(terms: int) -> QueryError:
    return QueryError(f"predicate has {terms} terms; the limit (terms) is {MAX_PREDICATE_TERMS}")


class _Composable:
    def __and__(self, other: Predicate) -> All:
        left = self.parts if isinstance(self, All) else (self,)
        right = other.parts if isinstance(other, All) else (other,)
        return All((*left, *right))

    def __or__(self, other: Predicate) -> AnyOf:
        left = self.parts if isinstance(self, AnyOf) else (self,)
        right = other.parts if isinstance(other, AnyOf) else (other,)
        return AnyOf((*left, *right))

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


def _size(p: object) -> tuple[int, int]:
    """``(depth, terms)`` of a built predicate (leaves and non-predicates count as one term)."""
    return getattr(p, "depth", 0), getattr(p, "terms", 1)


class _Combinator(_Composable):
    depth: int
    terms: int

    def _measure(self, parts: tuple[object, ...]) -> None:
        if not parts:
            raise QueryError(f"{type(self).__name__} needs at least one predicate")
        sizes = [_size(p) for p in parts]
        depth = 1 + max(d for d, _ in sizes)
        terms = sum(t for _, t in sizes)
        if depth > MAX_PREDICATE_DEPTH:
            raise _depth_error(depth)
        if terms > MAX_PREDICATE_TERMS:
            raise _terms_error(terms)
        object.__setattr__(self, "depth", depth)
        object.__setattr__(self, "terms", terms)


@dataclass(frozen=True)
class All(_Combinator):
    """Conjunction: every part holds (built by ``&``)."""

    parts: tuple[Predicate, ...]
    depth: int = field(init=False, repr=False, compare=False)
    terms: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", tuple(self.parts))
        self._measure(self.parts)


@dataclass(frozen=True)
class AnyOf(_Combinator):
    """Disjunction: at least one part holds (built by ``|``)."""

    parts: tuple[Predicate, ...]
    depth: int = field(init=False, repr=False, compare=False)
    terms: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", tuple(self.parts))
        self._measure(self.parts)


@dataclass(frozen=True)
class Not(_Combinator):
    """Negation: the part does not hold (built by ``~``)."""

    part: Predicate
    depth: int = field(init=False, repr=False, compare=False)
    terms: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._measure((self.part,))


Predicate = HasCondition | LabValue | OnMedication | CarriesVariant | All | AnyOf | Not


def check_limits(p: Predicate) -> None:
    """Check a predicate against :data:`MAX_PREDICATE_DEPTH` and :data:`MAX_PREDICATE_TERMS`
    without recursion (for predicates not built through the checked constructors).

    Raises:
        QueryError: naming the limit that is exceeded.
    """
    stack: list[tuple[object, int]] = [(p, 0)]
    terms = 0
    while stack:
        node, depth = stack.pop()
        if depth > MAX_PREDICATE_DEPTH:
            raise _depth_error(depth)
        if isinstance(node, (All, AnyOf)):
            stack.extend((x, depth + 1) for x in node.parts)
        elif isinstance(node, Not):
            stack.append((node.part, depth + 1))
        else:
            terms += 1
            if terms > MAX_PREDICATE_TERMS:
                raise _terms_error(terms)


def predicate_from_dict(d: dict) -> Predicate:
    """Build a predicate from its JSON form (used by the CLI and the API).

    ``{"has_condition": "44054006"}``, ``{"lab": "4548-4", "op": ">", "value": 7, "within_days": 365}``,
    ``{"on_medication": "860975"}``, ``{"carries_variant_in": "CYP2C19"}``,
    ``{"all": [...]}``, ``{"any": [...]}``, ``{"not": {...}}``.

    The limits are checked while descending, before any part is built, so an oversized input
    costs no more than the limits allow.
    """
    counter = [0]
    return _from_dict(d, 0, counter)


def predicate_from_json(text: str) -> Predicate:
    """Build a predicate from JSON text (the CLI's argument); any nesting is refused with the
    depth limit before it can exhaust the JSON parser.

    Raises:
        QueryError: not JSON, not a predicate, or past a limit.
    """
    depth = _json_depth(text)
    if depth > 2 * MAX_PREDICATE_DEPTH + 1:  # a combinator is at most two JSON levels ({"all": [...]}), a leaf one
        raise QueryError(f"predicate JSON nests {depth} levels; the limit (depth) is {MAX_PREDICATE_DEPTH} "
                         "levels of all/any/not")
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise QueryError(f"predicate is not valid JSON: {exc}") from None
    return predicate_from_dict(spec)


def _json_depth(text: str) -> int:
    """Deepest nesting of ``{``/``[`` in JSON text, outside strings (no parsing, no recursion)."""
    depth = deepest = 0
    in_str = escaped = False
    for ch in text:
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "{[":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "}]":
            depth -= 1
    return deepest


def _from_dict(d: object, depth: int, counter: list[int]) -> Predicate:
    if not isinstance(d, dict) or not d:
        raise QueryError(f"a predicate must be a non-empty JSON object, got {_short(d)}")
    try:
        if "all" in d or "any" in d or "not" in d:
            if depth + 1 > MAX_PREDICATE_DEPTH:
                raise _depth_error(depth + 1)
        if "all" in d:
            return All(tuple(_from_dict(p, depth + 1, counter) for p in _list(d["all"], "all")))
        if "any" in d:
            return AnyOf(tuple(_from_dict(p, depth + 1, counter) for p in _list(d["any"], "any")))
        if "not" in d:
            return Not(_from_dict(d["not"], depth + 1, counter))
        counter[0] += 1
        if counter[0] > MAX_PREDICATE_TERMS:
            raise _terms_error(counter[0])
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
        raise QueryError(f"invalid predicate {_short(d)}: {exc}") from None
    raise QueryError(
        f"unknown predicate {sorted(d)[:10]}; expected one of all/any/not/has_condition/lab/on_medication/carries_variant_in"
    )


def _short(v: object, limit: int = 200) -> str:
    """``repr`` cut to ``limit`` characters (error messages quote user input, never all of it)."""
    try:
        text = repr(v)
    except RecursionError:
        return f"<{type(v).__name__} nested too deeply>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _list(v: object, key: str) -> list:
    if not isinstance(v, list) or not v:
        raise QueryError(f"{key!r} needs a non-empty list of predicates")
    if len(v) > MAX_PREDICATE_TERMS:
        raise _terms_error(len(v))
    return v


def _str(v: object, key: str) -> str:
    if not isinstance(v, str) or not v:
        raise QueryError(f"{key!r} needs a non-empty string code")
    return v
