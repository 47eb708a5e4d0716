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
            hint = ""
            if spec in regimen_conditions() or "." not in spec:
                hint = (f"; built-in regimens are named builtin:CONDITION (conditions: "
                        f"{', '.join(regimen_conditions())}) or builtin:'REGIMEN NAME'")
            raise PlanError(f"no plan file {spec!r}{hint}")
        out.extend(load_plans(path))
    return out
