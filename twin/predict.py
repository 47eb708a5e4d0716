"""Probabilistic forecasts from a fitted ensemble: batched, with aleatoric + epistemic spread.

Each ensemble member is rolled out for ``n_samples`` draws of ``z0`` from its posterior;
every draw decodes to a Gaussian (mean, predicted variance), and the predictive
distribution is the equal-weight mixture of these Gaussians over members and draws. Its
quantiles are found exactly by bisection on the mixture CDF (no sampling noise in bands),
all probabilities, labs and query days in one pass. All trajectories (patients x plans x
samples x members) are one ODE solve (:class:`twin.model.stacked.StackedMembers`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch_geometric.data import Batch, HeteroData

from twin.model.checkpoint import TwinEnsemble
from twin.model.twin_model import Encoded
from twin.spec import inverse_transform

__all__ = ["Prediction", "QUANTILE_CHUNK_ELEMENTS", "QUANTILE_ITERS_FLOAT32", "QUANTILES", "mixture_mean", "mixture_quantile",
           "mixture_quantiles", "predict"]

#: Mixture quantiles are computed over chunks of query points of at most this many
#: (draw x point x lab) elements, which bounds their temporaries (~ 8 bytes x this, x a few)
#: and lets ``on_progress`` stop a long forecast between chunks.
QUANTILE_CHUNK_ELEMENTS = 2**21

#: Bisection steps for float32 quantiles: the bracket (16 sd wide at least) halved 26 times is
#: below float32's resolution, so more steps change nothing.
QUANTILE_ITERS_FLOAT32 = 26

#: The predictive quantiles every forecast reports (5 %, median, 95 %).
QUANTILES = (0.05, 0.5, 0.95)


def mixture_quantiles(mu: torch.Tensor, sd: torch.Tensor, ps: Sequence[float], iters: int = 50) -> torch.Tensor:
    """``p``-quantiles of equal-weight Gaussian mixtures along dim 1 (``[B, N, ...] -> [len(ps), B, ...]``).

    Bisection on the mixture CDF from a bracket that holds every quantile (each component's
    mean +- 8 sd), all ``ps`` at once; 50 halvings leave an error ~1e-14 of the bracket."""
    shape = (len(ps),) + (1,) * (mu.dim() - 1)
    p = torch.tensor(list(ps), dtype=mu.dtype, device=mu.device).view(shape)
    lo = (mu - 8 * sd).min(dim=1).values.unsqueeze(0).expand(shape[:1] + mu.shape[:1] + mu.shape[2:]).clone()
    hi = (mu + 8 * sd).max(dim=1).values.unsqueeze(0).expand_as(lo).clone()
    inv_sd = sd.reciprocal().unsqueeze(0)
    mu_ = mu.unsqueeze(0)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        cdf = torch.special.ndtr((mid.unsqueeze(2) - mu_) * inv_sd).mean(dim=2)
        below = cdf < p
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    return 0.5 * (lo + hi)


def mixture_quantile(mu: torch.Tensor, sd: torch.Tensor, p: float, iters: int = 50) -> torch.Tensor:
    """``p``-quantile of equal-weight Gaussian mixtures along dim 1 (``[B, N, ...] -> [B, ...]``)."""
    return mixture_quantiles(mu, sd, (p,), iters)[0]


@dataclass
class Prediction:
    """Predictive summaries in the labs' own units.

    ``mean``/``median``/``p05``/``p95`` ``[B, Q, L]``; ``risk`` ``[B, K]`` probability of each
    event kind by the last query day; ``t`` ``[Q]`` days after the origin.
    """

    t: np.ndarray
    mean: np.ndarray
    median: np.ndarray
    p05: np.ndarray
    p95: np.ndarray
    risk: np.ndarray


@torch.no_grad()
def predict(ens: TwinEnsemble, graphs: list[HeteroData] | Batch, doses: torch.Tensor, t_query: torch.Tensor, *,
            n_samples: int = 32, seed: int = 0, members: list[int] | None = None,
            encoded: list[Encoded] | None = None,
            on_progress: Callable[[float, str], None] | None = None, calibrated: bool = True) -> Prediction:
    """Forecast ``B = len(graphs) * k`` trajectories (``doses`` ``[B, T, D]``, plan index fastest).

    ``graphs`` may be given already batched (and on the ensemble's device); ``encoded`` (one
    :class:`Encoded` per chosen member, from :meth:`StackedMembers.encode` on the same graphs)
    skips the encoder. ``n_samples`` latent draws per member and trajectory (0: the posterior
    mean only). Deterministic for a given ``seed``. ``on_progress(fraction, message)`` is
    called before the solve and each chunk of quantiles; it may raise to stop the forecast there.
    ``calibrated``: scale the 5–95 % band by the checkpoint's interval calibration (per lab and
    horizon, :mod:`twin.calibration`) when it has one.
    """
    report = on_progress or (lambda frac, message: None)
    device = ens.device
    gen = torch.Generator().manual_seed(seed)
    chosen = list(members) if members is not None else list(range(len(ens.members)))
    stacked = ens.stacked(chosen)
    b = doses.shape[0]
    s = max(n_samples, 1)
    n_m = len(chosen)
    report(0.0, f"solving {n_m} members x {s} draws x {b} schedules")
    if encoded is None:
        batch = graphs if isinstance(graphs, Batch) else graphs[0] if len(graphs) == 1 else Batch.from_data_list(graphs)
        encoded = stacked.encode(batch.to(device))
    lat = stacked.cfg.latent
    # the draws of member j are the j-th block of one generator's stream (row = schedule x draw)
    eps = torch.stack([torch.randn(b * s, lat, generator=gen) for _ in chosen]).to(device) if n_samples > 0 else None
    ro = stacked.rollout(encoded, eps, doses.to(device), t_query.to(device), rows_per_schedule=s)
    n_q, n_l = ro.mean.shape[2], ro.mean.shape[3]

    def by_schedule(x: torch.Tensor) -> torch.Tensor:  # [M, B*S, ...] -> [B, M*S, ...], N = member x draw
        return x.view(n_m, b, s, *x.shape[2:]).transpose(0, 1).reshape(b, n_m * s, *x.shape[2:])

    # [B, N, Q, L] standardised; quantiles in float32 (bisection to its resolution, below)
    mu_c = by_schedule(ro.mean).cpu().float()
    sd_c = by_schedule(ro.logvar).cpu().float().mul_(0.5).exp_()
    per_point = max(1, b * n_m * s * n_l)
    chunk = max(1, QUANTILE_CHUNK_ELEMENTS // per_point)
    parts = []
    for q0 in range(0, n_q, chunk):
        report(0.5 + 0.5 * q0 / n_q, f"quantiles of points {q0 + 1}-{min(n_q, q0 + chunk)} of {n_q}")
        parts.append(mixture_quantiles(mu_c[:, :, q0:q0 + chunk], sd_c[:, :, q0:q0 + chunk], QUANTILES,
                                       iters=QUANTILE_ITERS_FLOAT32).numpy().astype(np.float64))
    q = np.concatenate(parts, axis=2)
    vocab, norms = ens.spec.vocab, ens.spec.norms
    codes = vocab.target_labs
    if calibrated and ens.interval_calibration is not None:
        q[0], q[2] = ens.interval_calibration.widen(q[0], q[1], q[2], codes, t_query.cpu().numpy())
    mu = np.array([norms.lab_mean[c] for c in codes], np.float64)
    sd = np.array([norms.lab_std[c] for c in codes], np.float64)
    kinds = [norms.transforms.get(c, "identity") for c in codes]
    surv = by_schedule(ro.cum_hazard[:, :, -1, :]).neg().exp()  # [B, N, K] survival at the last query day
    risk = 1.0 - surv.mean(dim=1).cpu().numpy()

    def values(z: np.ndarray) -> np.ndarray:  # [..., L] standardised -> each target's own unit
        return np.stack([inverse_transform(k, z[..., j] * sd[j] + mu[j]) for j, k in enumerate(kinds)], axis=-1)

    mu_d, sd_d = mu_c.double(), sd_c.double()
    mean = np.stack([mixture_mean(mu_d[..., j] * sd[j] + mu[j], sd_d[..., j] * sd[j], k) for j, k in enumerate(kinds)],
                    axis=-1)
    return Prediction(t=t_query.cpu().numpy(), mean=mean, median=values(q[1]), p05=values(q[0]), p95=values(q[2]),
                      risk=risk)


_HERMITE_X, _HERMITE_W = np.polynomial.hermite_e.hermegauss(24)


def mixture_mean(mu: torch.Tensor, sd: torch.Tensor, transform: str) -> np.ndarray:
    """Mean in the target's own unit of equal-weight Gaussian mixtures (along dim 1) given on
    the transformed scale: exact for ``identity`` and ``log1p`` (log-normal), Gauss-Hermite
    quadrature otherwise. ``[B, N, Q]`` -> ``[B, Q]``."""
    if transform == "identity":
        return mu.mean(dim=1).numpy()
    if transform == "log1p":
        return (torch.exp(torch.clamp(mu + 0.5 * sd**2, max=700.0)) - 1.0).mean(dim=1).numpy()
    nodes = mu.unsqueeze(-1) + sd.unsqueeze(-1) * torch.from_numpy(_HERMITE_X).to(mu)
    w = torch.from_numpy(_HERMITE_W / _HERMITE_W.sum()).to(mu)
    vals = torch.from_numpy(inverse_transform(transform, nodes.numpy())).to(mu)
    return (vals * w).sum(-1).mean(dim=1).numpy()
