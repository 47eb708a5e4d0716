"""What a plan may name: the treatments of one model, by code or by their names in the records.

A :class:`TreatmentCatalog` is built from a model's cohort specification only
(``TreatmentCatalog(ens.cohort.treatments)``): there is no default list of drugs. A treatment
answers to its code (any string the records use: RxNorm, SNOMED, a local code), to its display
name, and to every word of that name that names no other treatment and is not a dose form or
route, so ``metformin`` finds "24 HR metformin hydrochloride 500 MG Extended Release Oral
Tablet" and ``radiotherapy`` finds "Radiotherapy (procedure)".
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable

from core.errors import PlanError
from twin.spec import Treatment

__all__ = ["TreatmentCatalog"]

_WORD = re.compile(r"[a-z][a-z-]{3,}")
#: Words of display names that describe form, route or strength, never the treatment itself.
_FORM_WORDS = frozenset({"capsule", "chewable", "cream", "delayed", "extended", "film", "coated", "injectable",
                         "injection", "oral", "release", "solution", "suspension", "tablet", "topical", "unit",
                         "units", "prefilled", "syringe", "patch", "transdermal", "inhalation", "powder",
                         "procedure", "regime", "therapy"})
#: Known treatments listed in an error message at most.
_LISTED = 40


def _norm(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


class TreatmentCatalog:
    """The treatments a model knows, looked up by code, display name or a distinctive word of it.

    A name shared by several treatments (two codes with one display) resolves to none of them:
    the error lists the codes to use instead.
    """

    def __init__(self, treatments: Iterable[Treatment]) -> None:
        self._by_code: dict[str, Treatment] = {t.code: t for t in treatments}
        by_name: dict[str, set[str]] = defaultdict(set)
        for t in self._by_code.values():
            if t.name:
                by_name[_norm(t.name)].add(t.code)
        words = {t.code: {w for w in _WORD.findall(t.name.lower()) if w not in _FORM_WORDS}
                 for t in self._by_code.values()}
        seen = Counter(w for ws in words.values() for w in ws)
        for code, ws in words.items():
            for w in ws:
                if seen[w] == 1 and w not in by_name:
                    by_name[w].add(code)
        self._by_name = dict(by_name)

    def resolve(self, text: str, *, plan: str | None = None, field: str | None = None) -> Treatment:
        """The treatment ``text`` names; :class:`PlanError` listing the known ones by name otherwise."""
        key = str(text).strip()
        if key in self._by_code:
            return self._by_code[key]
        codes = sorted(self._by_name.get(_norm(key), ()))
        if len(codes) == 1:
            return self._by_code[codes[0]]
        if codes:
            raise PlanError(f"treatment {key!r} names {len(codes)} treatments of this model "
                            f"({', '.join(self._by_code[c].label for c in codes)}); use the code", plan=plan, field=field)
        raise PlanError(f"unknown treatment {key!r}: not a code or name of a treatment this model knows "
                        f"(known: {self._known()})", plan=plan, field=field)

    def _known(self) -> str:
        """The treatments as ``name (code)``, sorted by name, for messages (``none`` when empty)."""
        items = sorted(self._by_code.values(), key=lambda t: (_norm(t.name or t.code), t.code))
        text = ", ".join(t.label for t in items[:_LISTED])
        more = len(items) - _LISTED
        return (text + (f" and {more} more" if more > 0 else "")) or "none"
