"""Model hyper-parameters, validated at construction and saved in checkpoints."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ModelConfig"]


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the encoder, latent dynamics and decoders.

    ``step_days`` is the step of the fixed-grid ODE solver ``solver``; ``time_unit_days`` the model's time
    unit (rates such as the PK elimination and hazards are per unit).
    """

    hidden: int = 32
    latent: int = 16
    static: int = 8
    layers: int = 2
    ode_hidden: int = 64
    step_days: float = 7.0
    solver: str = "midpoint"
    time_unit_days: float = 30.0
    min_logvar: float = -7.0
    max_logvar: float = 3.0

    def __post_init__(self) -> None:
        for name in ("hidden", "latent", "static", "layers", "ode_hidden"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ModelConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if not 0 < self.step_days <= 31:
            raise ValueError(f"ModelConfig.step_days must be in (0, 31] days, got {self.step_days!r}")
        if self.solver not in ("euler", "midpoint", "rk4"):
            raise ValueError(f"ModelConfig.solver must be one of euler, midpoint, rk4; got {self.solver!r}")
        if self.time_unit_days <= 0:
            raise ValueError(f"ModelConfig.time_unit_days must be > 0, got {self.time_unit_days!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
