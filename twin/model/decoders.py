"""Decoders from the latent trajectory: per-lab Gaussian (mean, variance) and event survival."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["LabDecoder"]


class LabDecoder(nn.Module):
    r"""Mean and log-variance of every target lab (standardised units) from ``z(t)`` and ``s``.

    The mean is the last observed value (the encoder's per-lab anchor, 0 when never measured)
    plus a learned function of the latent state and of the lab's history summary (its
    recency-weighted level and number of values: one noisy last value is a poor estimate of a
    level that several values pin down), so the latent carries the *change*. That change has
    a learned scale per lab (1 at initialisation): where a target barely moves between
    observations relative to its spread over the cohort (a tumour volume from one day to the
    next), the scale shrinks, so the network's residual noise does not swamp a precise last
    value.

    Shapes:
        z ``[..., latent]``, s ``[..., static]``, anchor/anchor_mask/level/n_obs ``[..., L]`` ->
        mean, logvar ``[..., L]``.
    """

    def __init__(self, latent: int, static: int, n_labs: int, hidden: int, min_logvar: float,
                 max_logvar: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent + static + 4 * n_labs, hidden), nn.GELU(),
                                 nn.Linear(hidden, 2 * n_labs))
        self.log_scale = nn.Parameter(torch.zeros(n_labs))
        self.min_logvar, self.max_logvar = min_logvar, max_logvar
        self.n_labs = n_labs

    def forward(self, z: Tensor, s: Tensor, anchor: Tensor, anchor_mask: Tensor, level: Tensor,
                n_obs: Tensor) -> tuple[Tensor, Tensor]:
        a = anchor * anchor_mask
        out = self.net(torch.cat([z, s, a, anchor_mask, (level - anchor) * anchor_mask, n_obs], dim=-1))
        delta, raw = out.split(self.n_labs, dim=-1)
        logvar = self.min_logvar + (self.max_logvar - self.min_logvar) * torch.sigmoid(raw)
        return a + delta * torch.exp(self.log_scale), logvar
