"""Built-in regimen plan files: ``general`` (no treatment, continue current therapy) for any
model, and example regimens of chronic disease (``diabetes``, ``hypertension``, ``lipids``).

The regimens name drugs by a word of their display names (``metformin``), which resolves only
against a model whose training records name these drugs (e.g. one trained on the synthetic
chronic cohort); against any other model they are refused, listing the treatments it knows.
"""

from __future__ import annotations

from pathlib import Path

from core.errors import PlanError
from scenarios.plan import TreatmentPlan, load_plans

__all__ = ["REGIMEN_DIR", "conditions", "find_regimen", "load_regimens"]

REGIMEN_DIR = Path(__file__).resolve().parent


def conditions() -> list[str]:
    """Conditions with a regimen file, sorted."""
    return sorted(p.stem for p in REGIMEN_DIR.glob("*.yaml"))


def load_regimens(condition: str | None = None) -> list[TreatmentPlan]:
    """The built-in plans of ``condition`` (all conditions when ``None``), in file order."""
    names = conditions() if condition is None else [condition]
    out: list[TreatmentPlan] = []
    for c in names:
        path = REGIMEN_DIR / f"{c}.yaml"
        if not path.is_file():
            raise PlanError(f"no built-in regimens for condition {c!r} (known: {', '.join(conditions())})")
        out.extend(load_plans(path))
    return out


def find_regimen(name: str) -> TreatmentPlan:
    """The built-in plan called ``name`` (case-insensitive)."""
    for plan in load_regimens():
        if plan.name.lower() == name.strip().lower():
            return plan
    raise PlanError(f"no built-in regimen named {name!r}; see `scenarios.regimens.load_regimens()`")
