"""Probabilistic forecasts from a fitted ensemble: batched, with aleatoric + epistemic spread.

Each ensemble member is rolled out for ``n_samples`` draws of ``z0`` from its posterior;
every draw decodes to a Gaussian (mean, predicted variance), and the predictive
distribution is the equal-weight mixture of these Gaussians over members and draws. Its
quantiles are found exactly by bisection on the mixture CDF (no sampling noise in bands). All trajectories (patients x plans x samples) of a
member are one ODE solve.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch_geometric.data import Batch, HeteroData

from twin.model.checkpoint import TwinEnsemble
from twin.spec import inverse_transform

__all__ = ["Prediction", "QUANTILE_CHUNK_ELEMENTS", "mixture_mean", "mixture_quantile", "predict"]

#: Mixture quantiles are computed over chunks of query points of at most this many
#: (draw x point x lab) elements, which bounds their temporaries (~ 8 bytes x this, x a few)
#: and lets ``on_progress`` stop a long forecast between chunks.
QUANTILE_CHUNK_ELEMENTS = 2**21


def mixture_quantile(mu: torch.Tensor, sd: torch.Tensor, p: float, iters: int = 50) -> torch.Tensor:
    """``p``-quantile of equal-weight Gaussian mixtures along dim 1 (``[B, N, ...] -> [B, ...]``)."""
    normal = torch.distributions.Normal(0.0, 1.0)
    lo = (mu - 8 * sd).min(dim=1).values
    hi = (mu + 8 * sd).max(dim=1).values
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        cdf = normal.cdf((mid.unsqueeze(1) - mu) / sd).mean(dim=1)
        below = cdf < p
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    return 0.5 * (lo + hi)


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
def predict(ens: TwinEnsemble, graphs: list[HeteroData], doses: torch.Tensor, t_query: torch.Tensor, *,
            n_samples: int = 32, seed: int = 0, members: list[int] | None = None,
            on_progress: Callable[[float, str], None] | None = None) -> Prediction:
    """Forecast ``B = len(graphs) * k`` trajectories (``doses`` ``[B, T, D]``, plan index fastest).

    ``n_samples`` latent draws per member and trajectory (0: the posterior mean only).
    Deterministic for a given ``seed``. ``on_progress(fraction, message)`` is called before each
    member's solve and each chunk of quantiles; it may raise to stop the forecast there.
    """
    report = on_progress or (lambda frac, message: None)
    device = ens.device
    gen = torch.Generator().manual_seed(seed)
    batch = Batch.from_data_list(graphs).to(device)
    b = doses.shape[0]
    s = max(n_samples, 1)
    doses_rep = doses.to(device).repeat_interleave(s, dim=0)  # [B*S, T, D]
    t_query = t_query.to(device)
    means, logvars, surv = [], [], []
    chosen = list(members) if members is not None else list(range(len(ens.members)))
    for j, i in enumerate(chosen):
        report(0.5 * j / len(chosen), f"solving member {j + 1} of {len(chosen)}")
        m = ens.members[i].eval()
        lat = m.cfg.latent
        eps = torch.randn(b * s, lat, generator=gen).to(device) if n_samples > 0 else None
        # graphs are repeated per plan and per draw inside rollout (row = (patient, plan, draw))
        ro = m.rollout(batch, doses_rep, t_query, eps=eps)
        means.append(ro.mean.view(b, s, *ro.mean.shape[1:]))
        logvars.append(ro.logvar.view(b, s, *ro.logvar.shape[1:]))
        surv.append(ro.survival[:, -1, :].reshape(b, s, -1))
    mu_c = torch.cat(means, dim=1).cpu().double()  # [B, N, Q, L] standardised, N = members x draws
    sd_c = torch.exp(0.5 * torch.cat(logvars, dim=1).cpu().double())
    n_q = mu_c.shape[2]
    per_point = max(1, mu_c.shape[0] * mu_c.shape[1] * mu_c.shape[3])
    chunk = max(1, QUANTILE_CHUNK_ELEMENTS // per_point)
    parts = []
    for q0 in range(0, n_q, chunk):
        report(0.5 + 0.5 * q0 / n_q, f"quantiles of points {q0 + 1}-{min(n_q, q0 + chunk)} of {n_q}")
        mu_k, sd_k = mu_c[:, :, q0:q0 + chunk], sd_c[:, :, q0:q0 + chunk]
        parts.append(np.stack([mixture_quantile(mu_k, sd_k, p).numpy() for p in (0.05, 0.5, 0.95)]))
    q = np.concatenate(parts, axis=2)
    vocab, norms = ens.spec.vocab, ens.spec.norms
    codes = vocab.target_labs
    mu = np.array([norms.lab_mean[c] for c in codes], np.float64)
    sd = np.array([norms.lab_std[c] for c in codes], np.float64)
    kinds = [norms.transforms.get(c, "identity") for c in codes]
    risk = 1.0 - torch.cat(surv, dim=1).mean(dim=1).cpu().numpy()

    def values(z: np.ndarray) -> np.ndarray:  # [..., L] standardised -> each target's own unit
        return np.stack([inverse_transform(k, z[..., j] * sd[j] + mu[j]) for j, k in enumerate(kinds)], axis=-1)

    mean = np.stack([mixture_mean(mu_c[..., j] * sd[j] + mu[j], sd_c[..., j] * sd[j], k) for j, k in enumerate(kinds)],
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
