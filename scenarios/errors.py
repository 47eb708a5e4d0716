"""Errors raised by the scenario engine.

    TwinError (graph.errors)
    └── PlanError      a treatment plan is invalid, contradictory or (strict mode) out of distribution
"""

from __future__ import annotations

from graph.errors import TwinError

__all__ = ["PlanError"]


class PlanError(TwinError, ValueError):
    """A treatment plan cannot be simulated as written.

    ``plan`` names the plan, ``field`` the offending part (``"actions[2].dose"``) and ``reason``
    says why, so a user can fix the plan file.
    """

    def __init__(self, reason: str, *, plan: str | None = None, field: str | None = None, file: str | None = None) -> None:
        self.reason = reason
        self.plan = plan
        self.field = field
        self.file = file
        super().__init__(self._message())

    def _message(self) -> str:
        where = " ".join(p for p in (self.file, f"plan {self.plan!r}" if self.plan else None) if p)
        fld = f" field {self.field!r}" if self.field else ""
        return f"{where}{fld}: {self.reason}" if (where or fld) else self.reason

    def to_dict(self) -> dict[str, str | None]:
        return {"file": self.file, "plan": self.plan, "field": self.field, "reason": self.reason}
