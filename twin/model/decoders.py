"""Decoders from the latent trajectory: per-lab Gaussian (mean, variance) and event survival."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["LabDecoder"]


class LabDecoder(nn.Module):
    r"""Mean and log-variance of every target lab (standardised units) from ``z(t)``, ``z(0)`` and ``s``.

    The mean is the last observed value ``a`` (the encoder's per-lab anchor, 0 when never
    measured) plus two learned changes, each with its own learned scale per lab (1 at
    initialisation)::

        mean(t) = a + scale * (h(z(t), c) - h(z(0), c)) + offset_scale * o(z(0), c)

    where ``c`` is the lab's context (``s``, the anchor, its recency-weighted level and number
    of values: one noisy last value is a poor estimate of a level that several values pin down).

    * ``h(z(t)) - h(z(0))``: the change since the origin follows the latent's motion, so it is
      exactly 0 at the origin and small over a short horizon. A target that barely moves from
      one day to the next relative to its spread over the cohort (a tumour volume) is then
      forecast from its precise last value plus the latent's small change, not from a network
      output that would have to be precise to 1 % of the cohort's spread at every ``z``.
    * ``o(z(0))``: the target's change between its last value and the origin (an old anchor,
      a noisy one that its level corrects), 0 at initialisation (its output weights start at
      zero) so it grows only where the data supports it.

    Shapes:
        z ``[..., latent]``, z0 ``[..., latent]``, s ``[..., static]``,
        anchor/anchor_mask/level/n_obs ``[..., L]`` -> mean, logvar ``[..., L]``.
    """

    def __init__(self, latent: int, static: int, n_labs: int, hidden: int, min_logvar: float,
                 max_logvar: float) -> None:
        super().__init__()
        # outputs: change h, log-variance, offset o
        self.net = nn.Sequential(nn.Linear(latent + static + 4 * n_labs, hidden), nn.GELU(),
                                 nn.Linear(hidden, 3 * n_labs))
        out = self.net[2]
        assert isinstance(out, nn.Linear)
        with torch.no_grad():
            out.weight[2 * n_labs:].zero_()
            out.bias[2 * n_labs:].zero_()
        self.log_scale = nn.Parameter(torch.zeros(n_labs))
        self.offset_log_scale = nn.Parameter(torch.zeros(n_labs))
        self.min_logvar, self.max_logvar = min_logvar, max_logvar
        self.n_labs = n_labs

    def forward(self, z: Tensor, z0: Tensor, s: Tensor, anchor: Tensor, anchor_mask: Tensor, level: Tensor,
                n_obs: Tensor) -> tuple[Tensor, Tensor]:
        a = anchor * anchor_mask
        ctx = torch.cat([s, a, anchor_mask, (level - anchor) * anchor_mask, n_obs], dim=-1)
        delta, raw, _ = self.net(torch.cat([z, ctx], dim=-1)).split(self.n_labs, dim=-1)
        delta0, _, off = self.net(torch.cat([z0, ctx], dim=-1)).split(self.n_labs, dim=-1)
        logvar = self.min_logvar + (self.max_logvar - self.min_logvar) * torch.sigmoid(raw)
        return a + (delta - delta0) * torch.exp(self.log_scale) + off * torch.exp(self.offset_log_scale), logvar
