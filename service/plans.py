"""Treatment plans named on a command line or in a request: files or built-in regimens."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from core import PlanError

if TYPE_CHECKING:
    from scenarios import TreatmentPlan

__all__ = ["BUILTIN_PREFIX", "plans_from_specs"]

#: ``builtin:diabetes`` (every regimen of a condition) or ``builtin:'diabetes first-line metformin'``.
BUILTIN_PREFIX = "builtin:"


def plans_from_specs(specs: list[str]) -> list[TreatmentPlan]:
    """Plans from plan files (YAML/JSON, one or several plans each) and ``builtin:`` names."""
    from scenarios import find_regimen, load_plans, load_regimens, regimen_conditions

    out: list[TreatmentPlan] = []
    for spec in specs:
        if spec.startswith(BUILTIN_PREFIX):
            key = spec.removeprefix(BUILTIN_PREFIX).strip()
            out.extend(load_regimens(key) if key in regimen_conditions() else [find_regimen(key)])
            continue
        path = Path(spec)
        if not path.exists():
            raise PlanError(f"no plan file {spec!r}{_builtin_hint(spec)}")
        out.extend(load_plans(path))
    return out


def _builtin_hint(spec: str) -> str:
    """What to write instead of a plan file that does not exist: the built-in of that name if
    there is one (``builtin:diabetes``), else how built-ins are named (unless it looks like a file)."""
    from scenarios import load_regimens, regimen_conditions

    key = spec.strip().lower()
    if key in regimen_conditions():
        return f"; did you mean the built-in regimens {BUILTIN_PREFIX}{key}?"
    named = [p.name for p in load_regimens() if p.name.lower() == key]
    if named:
        return f"; did you mean the built-in regimen {BUILTIN_PREFIX}'{named[0]}'?"
    if "." in Path(spec).name:
        return ""
    return (f"; built-in regimens are named {BUILTIN_PREFIX}CONDITION (conditions: {', '.join(regimen_conditions())}) "
            f"or {BUILTIN_PREFIX}'REGIMEN NAME'")
