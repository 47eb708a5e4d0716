"""Drug names → RxNorm codes, so plans can say ``metformin`` instead of ``860975``.

A :class:`DrugCatalog` is a small lookup built from whatever knows drug names: a model's
vocabulary (the display names in its training records, :meth:`DrugCatalog.from_names`), the
names the built-in regimens use (:func:`builtin_catalog`), or any ``{code: [names...]}``
mapping. Plans may always use a bare RxNorm code (digits); names must resolve through the
catalog or the plan is refused.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from core.errors import PlanError

__all__ = ["DrugCatalog", "builtin_catalog", "catalog_for", "is_rxnorm_code"]

_CODE = re.compile(r"^\d{1,9}$")
_WORD = re.compile(r"[a-z][a-z-]{3,}")
#: Words of clinical-drug names that describe form, route or strength, never the drug.
_FORM_WORDS = frozenset({"capsule", "chewable", "cream", "delayed", "extended", "film", "coated", "injectable",
                         "injection", "oral", "release", "solution", "suspension", "tablet", "topical", "unit",
                         "units", "prefilled", "syringe", "patch", "transdermal", "inhalation", "powder"})


def is_rxnorm_code(text: str) -> bool:
    """Whether ``text`` looks like an RxNorm concept id (1–9 digits)."""
    return bool(_CODE.match(text.strip()))


def _norm(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


@dataclass
class DrugCatalog:
    """Names and synonyms of known drugs, keyed by RxNorm code."""

    names: dict[str, str] = field(default_factory=dict)
    synonyms: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_name: dict[str, str] = {}
        for code, name in self.names.items():
            for alias in (name, *self.synonyms.get(code, ())):
                key = _norm(alias)
                other = self._by_name.get(key)
                if other is not None and other != code:
                    raise ValueError(f"drug name {alias!r} is ambiguous: RxNorm {other} and {code}")
                self._by_name[key] = code

    @classmethod
    def from_mapping(cls, entries: Mapping[str, Iterable[str]]) -> DrugCatalog:
        """Catalog from ``{rxnorm_code: [preferred name, synonyms...]}``."""
        names: dict[str, str] = {}
        syn: dict[str, tuple[str, ...]] = {}
        for code, aliases in entries.items():
            al = [a for a in aliases if a]
            if not al:
                raise ValueError(f"drug {code}: at least one name is needed")
            names[str(code)] = al[0]
            syn[str(code)] = tuple(al[1:])
        return cls(names, syn)

    @classmethod
    def from_names(cls, displays: Mapping[str, str]) -> DrugCatalog:
        """Catalog from ``{code: display}`` as records name drugs.

        Each drug answers to its display and to every word of it that names no other drug and
        is not a form or route, so ``metformin`` finds "24 HR metformin hydrochloride 500 MG
        Extended Release Oral Tablet".
        """
        words = {code: {w for w in _WORD.findall(d.lower()) if w not in _FORM_WORDS} for code, d in displays.items()}
        seen = Counter(w for ws in words.values() for w in ws)
        full = {_norm(d) for d in displays.values()}
        return cls({c: d for c, d in displays.items()},
                   {c: tuple(sorted(w for w in ws if seen[w] == 1 and w not in full)) for c, ws in words.items()})

    def merged(self, other: DrugCatalog) -> DrugCatalog:
        """A catalog knowing the drugs of both; where a name means different codes, ``self`` wins."""
        names, syn = dict(self.names), {c: list(a) for c, a in self.synonyms.items()}
        for code, name in other.names.items():
            free = [a for a in (name, *other.synonyms.get(code, ())) if self._by_name.get(_norm(a), code) == code]
            if code in names:
                syn.setdefault(code, []).extend(a for a in free if _norm(a) != _norm(names[code]))
            elif free:
                names[code], syn[code] = free[0], free[1:]
        return DrugCatalog(names, {c: tuple(dict.fromkeys(a)) for c, a in syn.items()})

    def resolve(self, drug: str, *, plan: str | None = None, field: str | None = None) -> str:
        """RxNorm code of ``drug`` (a code passes through; a name must be known)."""
        text = str(drug).strip()
        if is_rxnorm_code(text) or text in self.names:
            return text
        code = self._by_name.get(_norm(text))
        if code is None:
            known = ", ".join(sorted(self.names.values())[:12]) or "none"
            raise PlanError(f"unknown drug {text!r}: not an RxNorm code and not a known name (known: {known})",
                            plan=plan, field=field)
        return code

    def with_codes(self, codes: Iterable[str]) -> DrugCatalog:
        """A catalog that also accepts ``codes`` verbatim (e.g. a model's drug inputs)."""
        extra = {c: c for c in codes if c not in self.names}
        return DrugCatalog({**extra, **self.names}, dict(self.synonyms)) if extra else self

    def name_of(self, code: str) -> str:
        """Display name of ``code`` (the code itself when unknown)."""
        return self.names.get(code, code)

    def __contains__(self, code: object) -> bool:
        return code in self.names

    def __len__(self) -> int:
        return len(self.names)


@lru_cache(maxsize=1)
def builtin_catalog() -> DrugCatalog:
    """The drugs named by the built-in regimens (``scenarios/drug_names.json``)."""
    doc = json.loads((Path(__file__).with_name("drug_names.json")).read_text())
    return DrugCatalog.from_mapping({k: v for k, v in doc.items() if not k.startswith("_")})


def catalog_for(drug_names: Mapping[str, str], drug_codes: Iterable[str] = ()) -> DrugCatalog:
    """What a model's plans may name: its drugs by their record names, then the built-in names,
    and its drug codes verbatim."""
    return DrugCatalog.from_names(drug_names).merged(builtin_catalog()).with_codes(drug_codes)
