"""Drug names → RxNorm codes, so plans can say ``metformin`` instead of ``6809``.

A :class:`DrugCatalog` is a small lookup built from whatever knows drug names: the synthetic
cohort's drug table (the default) or any ``{code: [names...]}`` mapping. Plans may always use a
bare RxNorm code (digits); names must resolve through the catalog or the plan is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from scenarios.errors import PlanError

__all__ = ["DrugCatalog", "default_catalog", "is_rxnorm_code"]

_CODE = re.compile(r"^\d{1,9}$")


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

    def merged(self, other: DrugCatalog) -> DrugCatalog:
        """A catalog knowing the drugs of both (``self`` wins on a shared code)."""
        return DrugCatalog({**other.names, **self.names}, {**other.synonyms, **self.synonyms})

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


def default_catalog() -> DrugCatalog:
    """The drugs of the synthetic cohort's drug table (:data:`twin.synthetic.drugs.DRUGS`)."""
    from twin.synthetic.drugs import DRUGS

    return DrugCatalog.from_mapping({d.code: [d.key, d.display] for d in DRUGS})
