"""Latent dynamics with treatment inputs: ``dz/dt = f(z, r(e(t)), s)`` plus PK exposure and hazards.

The ODE state of each trajectory is ``[z (latent), e (one exposure per treatment), Lambda (one
cumulative hazard per event kind), c (one cumulative response per treatment), g (one effect
compartment per target and treatment)]``:

* ``de/dt = k * (u(t) - e)``: a one-compartment PK filter per drug with a learned rate ``k``,
  so the piecewise-constant daily dose ``u(t)`` (looked up in the dose-schedule tensor)
  becomes a smooth exposure;
* ``dz/dt = f(z, r(e), s)``: an MLP vector field, where treatments act on the latent through
  their saturating response ``r(e)`` (below), so doses beyond the cohort's range saturate
  instead of extrapolating linearly;
* ``dLambda/dt = h(z, s)``: event hazards, so survival ``S(t) = exp(-Lambda(t))`` comes out
  of the same solve;
* ``dc/dt = r(e)``: the accumulated response of each treatment; the decoder adds a learned
  gain times ``c(t)`` to every target: the lasting effect of a treatment that changes a
  target's *rate* (chemotherapy and radiotherapy shrink a tumour, and the shrinkage stays
  after the drug is gone);
* ``dg/dt = k_e * (r(e) - g)``: per (lab, drug) effect compartments with learned rates ``k_e``
  driven by the saturating (Emax) response ``r(e) = e / (e + EC50)`` of each drug. The lab
  decoder adds a learned gain times ``g(t) - g(0)`` to every lab (the direct, easily learned
  level pathway: the effect goes when the drug goes; labs respond with their own lag, e.g.
  potassium within days, HbA1c over weeks). With ``n_labs=0`` there are no such states.

The exposure at the origin is not assumed to be at steady state: :meth:`LatentDynamics.exposure0`
runs the recorded daily doses of the days before the origin through the same PK filter
(exactly, as the doses are constant within a day), so yesterday's chemotherapy still acts today.

A whole batch (patients x plans) is one ``torchdiffeq.odeint`` call on one time grid.
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import Tensor, nn
from torchdiffeq import odeint

__all__ = ["LatentDynamics", "solve"]

_MAX_RATE = 8.0  # per time unit; keeps fixed-step RK4 stable for steps up to ~1/3 unit


class LatentDynamics(nn.Module):
    r"""The vector field of the twin's ODE.

    Shapes:
        doses (set by :meth:`set_inputs`): ``[B, T_days, D]``; static ``[B, S]``.
        state ``y``: ``[B, latent + D + K + D + L * D]`` (``L = n_labs`` effect compartments per treatment).
    """

    def __init__(self, latent: int, n_drugs: int, static: int, n_events: int, hidden: int,
                 time_unit_days: float, n_labs: int = 0) -> None:
        super().__init__()
        self.latent, self.n_drugs, self.n_events, self.n_labs = latent, n_drugs, n_events, n_labs
        self.time_unit_days = time_unit_days
        self.f = nn.Sequential(nn.Linear(latent + n_drugs + static, hidden), nn.Tanh(),
                               nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, latent))
        out = cast(nn.Linear, self.f[-1])  # Sequential indexing is typed as a plain Module
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.pk_logit = nn.Parameter(torch.full((n_drugs,), -1.0))  # k = 8*sigmoid(-1) ~ 2.2 / unit
        self.effect_logit = nn.Parameter(torch.full((n_labs, n_drugs), -1.0))  # effect-compartment rates
        # EC50 starts at 0.3 typical daily doses: drugs are dosed near the plateau of their
        # dose-response curve (a typical dose gives ~75 % of the maximal effect)
        self.ec50_raw = nn.Parameter(torch.full((n_drugs,), math.log(math.expm1(0.25))))
        self.hazard = nn.Linear(latent + static, n_events)
        nn.init.constant_(self.hazard.bias, -6.0)
        nn.init.normal_(self.hazard.weight, std=0.01)
        self._doses: Tensor | None = None
        self._static: Tensor | None = None

    @property
    def pk_rate(self) -> Tensor:
        return _MAX_RATE * torch.sigmoid(self.pk_logit)

    @property
    def effect_rate(self) -> Tensor:
        """Rates ``[L, D]`` of the (lab, drug) effect compartments, per time unit."""
        return _MAX_RATE * torch.sigmoid(self.effect_logit)

    @property
    def ec50(self) -> Tensor:
        """Exposure ``[D]`` (in typical daily doses) giving half of each drug's maximal response."""
        return nn.functional.softplus(self.ec50_raw) + 0.05

    def response(self, e: Tensor) -> Tensor:
        """Saturating Emax response ``e / (e + EC50)`` in ``[0, 1)`` of exposures ``[..., D]``."""
        e = e.clamp(min=0.0)
        return e / (e + self.ec50)

    def effect_state0(self, e0: Tensor) -> Tensor:
        """Steady-state effect compartments ``[B, L * D]`` for the exposures ``[B, D]`` at the origin."""
        return self.response(e0).unsqueeze(1).expand(-1, self.n_labs, -1).reshape(e0.shape[0], -1)

    def exposure0(self, dose_hist: Tensor) -> Tensor:
        """Exposure ``[B, D]`` at the origin after the daily doses ``dose_hist`` ``[B, H, D]`` of
        the ``H`` days before it (oldest first), starting at steady state with the oldest day's
        dose. Exact for doses constant within a day: ``e <- a e + (1 - a) u`` per day with
        ``a = exp(-k x 1 day)``."""
        h = dose_hist.shape[1]
        if h == 0:
            return dose_hist.new_zeros(dose_hist.shape[0], self.n_drugs)
        a = torch.exp(-self.pk_rate / self.time_unit_days)  # [D] per-day retention
        powers = a.unsqueeze(0) ** torch.arange(h - 1, -1, -1, device=a.device, dtype=a.dtype).unsqueeze(1)  # [H, D]
        return dose_hist[:, 0] * a ** h + ((1 - a) * powers * dose_hist).sum(1)

    def set_inputs(self, doses: Tensor, static: Tensor) -> None:
        """Bind the dose schedule ``[B, T, D]`` and static context ``[B, S]`` for the next solve."""
        if doses.dim() != 3 or doses.shape[2] != self.n_drugs or doses.shape[0] != static.shape[0]:
            raise ValueError(f"doses must be [B, T, {self.n_drugs}] with B = {static.shape[0]} "
                             f"(static context rows), got {tuple(doses.shape)}")
        self._doses, self._static = doses, static

    def hazard_rate(self, z: Tensor, static: Tensor) -> Tensor:
        """Event hazards per time unit, ``[..., K]``."""
        return nn.functional.softplus(self.hazard(torch.cat([z, static], dim=-1)))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        assert self._doses is not None and self._static is not None, "call set_inputs() before solving"
        n_days = self._doses.shape[1]
        day = torch.clamp((t * self.time_unit_days).floor().long(), 0, n_days - 1)
        u = self._doses[:, day]
        z, e = y[:, : self.latent], y[:, self.latent: self.latent + self.n_drugs]
        r = self.response(e)
        dz = self.f(torch.cat([z, r, self._static], dim=-1))
        de = self.pk_rate * (u - e)
        dlam = self.hazard_rate(z, self._static)
        if not self.n_labs:
            return torch.cat([dz, de, dlam, r], dim=-1)
        g = y[:, self.latent + 2 * self.n_drugs + self.n_events:].view(-1, self.n_labs, self.n_drugs)
        dg = self.effect_rate * (r.unsqueeze(1) - g)
        return torch.cat([dz, de, dlam, r, dg.flatten(1)], dim=-1)


def solve(field: LatentDynamics, y0: Tensor, grid_days: Tensor, step_days: float, method: str = "rk4") -> Tensor:
    """Integrate from ``grid_days[0]`` with a fixed-step solver (``rk4``, ``midpoint``, ``euler``); states ``[G, B, N]`` at ``grid_days``."""
    unit = field.time_unit_days
    return odeint(field, y0, grid_days / unit, method=method, options={"step_size": step_days / unit})
