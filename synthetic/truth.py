"""The per-patient ground-truth file (``OUT/truth/<patient_id>.json``) and its loader."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import RecordError

__all__ = ["PatientTruth", "load_truth"]

_REQUIRED = ("patient_id", "noise_seed", "params", "treatments", "follow_up_days")


@dataclass(frozen=True)
class PatientTruth:
    """What the oracle needs to replay a patient, plus the recorded noise-free history.

    ``treatments`` are the factual dose segments ``{drug, dose, start_day, stop_day, stop_reason}``
    in days from the follow-up start (dose applies on days ``start_day <= d < stop_day``).
    ``trajectories`` holds ``days`` and one noise-free series per LOINC code (plus hazards).
    """

    patient_id: str
    noise_seed: int
    params: dict[str, Any]
    treatments: list[dict[str, Any]]
    follow_up_days: int
    death_day: int | None = None
    start_date: str | None = None
    genotype: dict[str, int] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    trajectories: dict[str, list[float | None]] = field(default_factory=dict)
    observations: list[dict[str, Any]] = field(default_factory=list)
    modalities: dict[str, bool] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "patient_id": self.patient_id, "start_date": self.start_date, "noise_seed": self.noise_seed,
            "follow_up_days": self.follow_up_days, "death_day": self.death_day, "modalities": self.modalities,
            "genotype": self.genotype, "params": self.params, "treatments": self.treatments, "events": self.events,
            "trajectories": self.trajectories, "observations": self.observations,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any], source: str | None = None) -> PatientTruth:
        """Build from a parsed truth file; :class:`RecordError` names the missing field."""
        if not isinstance(doc, dict):
            raise RecordError("a truth file must hold a JSON object", file=source)
        for key in _REQUIRED:
            if key not in doc:
                raise RecordError("required field missing", file=source, field=key)
        return cls(
            patient_id=str(doc["patient_id"]), noise_seed=int(doc["noise_seed"]), params=doc["params"],
            treatments=list(doc["treatments"]), follow_up_days=int(doc["follow_up_days"]),
            death_day=doc.get("death_day"), start_date=doc.get("start_date"), genotype=doc.get("genotype", {}),
            events=doc.get("events", []), trajectories=doc.get("trajectories", {}),
            observations=doc.get("observations", []), modalities=doc.get("modalities", {}),
        )


def load_truth(path: str | Path) -> PatientTruth:
    """Read one ``truth/<patient_id>.json`` file."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError("truth file not found", file=str(p)) from None
    except json.JSONDecodeError as exc:
        raise RecordError(f"not valid JSON: {exc}", file=str(p)) from None
    return PatientTruth.from_json(doc, source=str(p))
