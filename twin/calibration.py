"""Post-hoc interval calibration: per lab and horizon, how much the forecast's 5–95 % band must widen.

The predictive mixture's spread (members x latent draws x each draw's predicted noise) need not
be right at every horizon: the decoders' variance is learnt from a likelihood pooled over
horizons, and a few members under-state how far the process drifts. So after training, the
forecasts of the validation origins (patients the weights never saw) are compared with what was
later observed: for each observation the factor ``k`` by which its band (5 % and 95 % quantiles
around the median, on the target's model scale) would have to be scaled to just contain it, and
per lab and horizon bin the ``level`` quantile of those factors is the scale that makes
``level`` of the validation observations fall inside. Horizon bins are quantile bins of the
observations' days (so any cohort's cadence works); between bin centres the scale is
interpolated linearly, outside it is held. The fit is stored in the checkpoint and applied
where quantiles are computed (:func:`twin.predict.predict`, scenario samples).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from twin.spec import forward_transform

if TYPE_CHECKING:
    from twin.features import Example
    from twin.model.checkpoint import TwinEnsemble

__all__ = ["IntervalCalibration", "fit_interval_calibration", "fit_scales", "required_scale"]

#: Validation observations a (lab, horizon bin) needs for a scale of its own; fewer: the lab's pooled scale.
MIN_PER_BIN = 20


def required_scale(y: np.ndarray, median: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per observation ``y``: the factor by which the band's half on ``y``'s side (``median - lo``
    below the median, ``hi - median`` above) must be scaled to reach ``y`` (0 at the median)."""
    below = y < median
    half = np.where(below, median - lo, hi - median)
    return np.abs(y - median) / np.maximum(half, 1e-12)


def fit_scales(k: np.ndarray, level: float) -> float:
    """The smallest scale that puts ``level`` of the observations with required factors ``k`` inside."""
    return float(np.quantile(k, level, method="inverted_cdf")) if len(k) else 1.0


@dataclass(frozen=True)
class IntervalCalibration:
    """Scale of the band per lab (``scales[code]``, one per node) at the horizon nodes ``days``."""

    days: tuple[float, ...]
    scales: dict[str, tuple[float, ...]]
    level: float = 0.9
    counts: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.days or any(b <= a for a, b in zip(self.days, self.days[1:], strict=False)):
            raise ValueError(f"interval calibration days must be increasing and not empty, got {list(self.days)}")
        for code, v in self.scales.items():
            if len(v) != len(self.days) or not all(np.isfinite(x) and x >= 0 for x in v):
                raise ValueError(f"interval calibration of lab {code}: expected {len(self.days)} finite scales >= 0, "
                                 f"got {list(v)}")

    def scale(self, codes: Sequence[str], days: np.ndarray) -> np.ndarray:
        """``[Q, L]`` scale of each of ``codes`` at each of ``days`` (1 for a lab not fitted)."""
        d = np.asarray(days, np.float64)
        return np.stack([np.interp(d, self.days, self.scales[c]) if c in self.scales else np.ones_like(d)
                         for c in codes], axis=-1)

    def widen(self, lo: np.ndarray, median: np.ndarray, hi: np.ndarray, codes: Sequence[str], days: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        """Scaled band ``(lo, hi)`` around ``median`` (arrays ``[..., Q, L]`` on the model scale)."""
        k = self.scale(codes, days)
        return median - k * (median - lo), median + k * (hi - median)

    def to_dict(self) -> dict[str, Any]:
        return {"days": list(self.days), "scales": {c: list(v) for c, v in self.scales.items()}, "level": self.level,
                "counts": {c: list(v) for c, v in self.counts.items()}}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> IntervalCalibration:
        return cls(tuple(float(x) for x in doc["days"]), {c: tuple(float(x) for x in v) for c, v in doc["scales"].items()},
                   float(doc.get("level", 0.9)), {c: tuple(int(x) for x in v) for c, v in doc.get("counts", {}).items()})

    @classmethod
    def fit(cls, t: np.ndarray, lab: np.ndarray, k: np.ndarray, codes: Sequence[str], *, level: float = 0.9,
            bins: int = 5) -> IntervalCalibration:
        """From observations' days ``t``, lab indices ``lab`` and required factors ``k``
        (:func:`required_scale`): per lab and quantile bin of ``t``, the scale at level ``level``."""
        t, lab, k = np.asarray(t, np.float64), np.asarray(lab), np.asarray(k, np.float64)
        if not len(t):
            raise ValueError("no validation observation to calibrate the intervals on")
        edges = np.unique(np.quantile(t, np.linspace(0.0, 1.0, bins + 1)))
        which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, max(len(edges) - 2, 0))
        nodes = tuple(float(np.median(t[which == b])) for b in range(max(len(edges) - 1, 1)) if (which == b).any())
        used = [b for b in range(max(len(edges) - 1, 1)) if (which == b).any()]
        scales, counts = {}, {}
        for j, code in enumerate(codes):
            mine = lab == j
            pooled = fit_scales(k[mine], level)
            per, n = [], []
            for b in used:
                sel = mine & (which == b)
                n.append(int(sel.sum()))
                per.append(fit_scales(k[sel], level) if sel.sum() >= MIN_PER_BIN else pooled)
            scales[code], counts[code] = tuple(per), tuple(n)
        return cls(nodes, scales, level, counts)


def fit_interval_calibration(ens: TwinEnsemble, examples: Sequence[Example], *, n_samples: int = 16, seed: int = 0,
                             level: float = 0.9, step_days: float = 7.0) -> IntervalCalibration | None:
    """Fit the scales on ``examples`` (origins of patients the weights were not trained on):
    forecast each origin's factual schedule uncalibrated and compare its band with the
    observations after the origin. ``None`` when the examples hold no observation."""
    import torch

    from twin.predict import predict

    codes = list(ens.spec.vocab.target_labs)
    norms = ens.spec.norms
    kinds = [norms.transforms.get(c, "identity") for c in codes]
    mu = np.array([norms.lab_mean[c] for c in codes])
    sd = np.array([norms.lab_std[c] for c in codes])
    horizon = max((float(np.max(e.targets.t)) for e in examples if len(e.targets.t)), default=0.0)
    if horizon <= 0.0:
        return None
    grid = np.unique(np.append(np.arange(0.0, horizon + step_days, step_days), horizon)).astype(np.float32)
    ts, labs, ks = [], [], []
    for i in range(0, len(examples), 32):
        chunk = list(examples[i: i + 32])
        p = predict(ens, [e.graph for e in chunk], torch.stack([e.doses for e in chunk]), torch.from_numpy(grid),
                    n_samples=n_samples, seed=seed, calibrated=False)
        for b, ex in enumerate(chunk):
            for t, j, y in zip(ex.targets.t, ex.targets.lab, ex.targets.y, strict=True):
                g = int(np.argmin(np.abs(grid - t)))
                band = [forward_transform(kinds[j], v[b, g, j]) for v in (p.median, p.p05, p.p95)]
                ks.append(float(required_scale(np.asarray(y * sd[j] + mu[j]), *band)))
                ts.append(float(t))
                labs.append(int(j))
    if not ts:
        return None
    return IntervalCalibration.fit(np.array(ts), np.array(labs), np.array(ks), codes, level=level)
