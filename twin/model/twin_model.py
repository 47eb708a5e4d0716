"""The twin's model: hetero GNN encoder -> z0, neural ODE with treatment inputs, decoders."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import cast

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

from twin.config import ModelConfig
from twin.features.batch import ExampleBatch
from twin.model.decoders import LabDecoder
from twin.model.dynamics import LatentDynamics, solve
from twin.model.hetero_encoder import HeteroPatientEncoder
from twin.spec import TimeScales

__all__ = ["Encoded", "Rollout", "TwinModel", "cumulative_dose", "interpolate_states"]


@dataclass
class Encoded:
    """Encoder output per graph: posterior ``mu``/``logvar`` ``[B, latent]``, static ``s``,
    lab anchors ``anchor``/``anchor_mask``, recency-weighted levels ``level`` and value counts
    ``n_obs`` ``[B, L]`` and the daily doses of the days before the origin ``dose_hist``
    ``[B, H, D]``."""

    mu: Tensor
    logvar: Tensor
    s: Tensor
    anchor: Tensor
    anchor_mask: Tensor
    level: Tensor
    n_obs: Tensor
    dose_hist: Tensor

    def repeat(self, k: int) -> Encoded:
        """Each row repeated ``k`` times consecutively (patients x plans, plan index fastest)."""
        if k == 1:
            return self
        return Encoded(*(getattr(self, f.name).repeat_interleave(k, dim=0) for f in fields(self)))

    def rows(self, start: int, stop: int) -> Encoded:
        """Graphs ``start:stop``."""
        return Encoded(*(getattr(self, f.name)[start:stop] for f in fields(self)))

    @staticmethod
    def cat(parts: Sequence[Encoded]) -> Encoded:
        """The graphs of ``parts``, in order, as one encoding."""
        return Encoded(*(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(Encoded)))


@dataclass
class Rollout:
    """Trajectories at query days ``t`` ``[Q]``: lab ``mean``/``logvar`` ``[B, Q, L]`` (standardised),
    ``cum_hazard`` ``[B, Q, K]``, latent ``z`` ``[B, Q, latent]`` and ``exposure`` ``[B, Q, D]``."""

    t: Tensor
    mean: Tensor
    logvar: Tensor
    cum_hazard: Tensor
    z: Tensor
    exposure: Tensor

    @property
    def survival(self) -> Tensor:
        return torch.exp(-self.cum_hazard)


def interpolate_states(grid: Tensor, states: Tensor, tq: Tensor) -> Tensor:
    """Linear interpolation of grid states ``[G, B, N]`` at per-row times ``tq`` ``[B, M]`` -> ``[B, M, N]``."""
    g = grid.shape[0]
    hi = torch.bucketize(tq.clamp(grid[0], grid[-1]), grid).clamp(1, g - 1)
    lo = hi - 1
    w = ((tq - grid[lo]) / (grid[hi] - grid[lo])).clamp(0.0, 1.0).unsqueeze(-1)
    sb = states.transpose(0, 1)  # [B, G, N]
    n = sb.shape[-1]
    s_lo = torch.gather(sb, 1, lo.unsqueeze(-1).expand(-1, -1, n))
    s_hi = torch.gather(sb, 1, hi.unsqueeze(-1).expand(-1, -1, n))
    return s_lo + w * (s_hi - s_lo)


def cumulative_dose(doses: Tensor, tq: Tensor) -> Tensor:
    """Dose given from the origin up to each query time: ``doses`` ``[B, T, D]`` (day ``d`` covers
    days ``[d, d+1)``), times ``tq`` ``[B, M]`` in days -> ``[B, M, D]`` (exact for doses constant
    within a day; days past the schedule's end have no dose)."""
    b, n_days, d = doses.shape
    if not n_days:
        return doses.new_zeros(b, tq.shape[1], d)
    cum = torch.cumsum(doses, dim=1) - doses  # [B, T, D]: dose before each day
    t = tq.to(doses.dtype).clamp(0.0, float(n_days))
    day = t.floor().long().clamp(max=n_days - 1)
    frac = (t - day.to(t.dtype)).unsqueeze(-1)  # in [0, 1]
    idx = day.unsqueeze(-1).expand(-1, -1, d)
    return torch.gather(cum, 1, idx) + frac * torch.gather(doses, 1, idx)


class TwinModel(nn.Module):
    r"""Graph encoder + latent neural ODE driven by dose schedules + lab and hazard decoders.

    Treatments reach the targets four ways: through the latent vector field ``f(z, r(e), s)``;
    through a level pathway, ``gain_ld * (g_ld(t) - g_ld(0))`` added to each target's mean,
    where ``g`` are the dynamics' (target, treatment) effect compartments and
    ``gain_ld = b_ld + w_ld * anchor_l + (W s)_ld``; and through a rate pathway,
    ``rate_ld * c_d(t)`` with ``c`` the accumulated response and ``rate_ld = q_ld + (V s)_ld``,
    for treatments whose effect lasts (``lasting``: single administrations such as a
    chemotherapy dose or a radiotherapy fraction; prescriptions act on the level only); and,
    for lasting treatments too, through an immediate pathway, ``pulse_ld * D_d(t)`` with ``D``
    the dose given since the origin and ``pulse_ld = p_ld + v_ld * anchor_l``: a radiotherapy
    fraction acts on the next day's volume at once, faster than any exposure the solver's step
    can resolve, and on a log-scale target its effect scales with the target's level.
    The direct pathways have few parameters per (target, treatment) besides the rates, so the
    effect of starting or stopping a drug is learned from the few on/off transitions a cohort
    has; the anchor term lets an effect scale with the target's own level (a statin's
    proportional LDL drop is larger from a higher LDL), and the static context ``s`` lets it
    differ between patients (the encoder sees how each one responded before).

    Args:
        cfg (ModelConfig): sizes and solver.
        scales (TimeScales): the cohort's time scales (solver step, time unit).
        dims (dict[str, int]): node feature widths (:func:`twin.features.node_dims`).
        n_concepts, n_genes, n_labs, n_drugs, n_events (int): vocabulary sizes.

    Example::

        ro = model.rollout(graphs, doses, torch.arange(0, 366, 7.0))   # B = patients x plans
        ro.mean  # [B, Q, n_labs]
    """

    def __init__(self, cfg: ModelConfig, scales: TimeScales, dims: dict[str, int], n_concepts: int, n_genes: int,
                 n_labs: int, n_drugs: int, n_events: int, lasting: Sequence[bool] | None = None) -> None:
        super().__init__()
        self.cfg, self.scales = cfg, scales
        self.n_labs, self.n_drugs, self.n_events = n_labs, n_drugs, n_events
        self.encoder = HeteroPatientEncoder(dims, n_concepts, n_genes, cfg.hidden, cfg.latent, cfg.static, cfg.layers)
        self.dynamics = LatentDynamics(cfg.latent, n_drugs, cfg.static, n_events, cfg.ode_hidden, scales.time_unit_days,
                                       n_labs=n_labs)
        self.decoder = LabDecoder(cfg.latent, cfg.static, n_labs, cfg.ode_hidden, cfg.min_logvar, cfg.max_logvar)
        # direct treatment pathways, zero at initialisation (an untrained model's forecasts come
        # from the latent alone): level gain b + w * anchor + W s, rate gain q + V s
        self.effect_bias = nn.Parameter(torch.zeros(n_labs, n_drugs))
        self.effect_slope = nn.Parameter(torch.zeros(n_labs, n_drugs))
        self.rate_bias = nn.Parameter(torch.zeros(n_labs, n_drugs))
        self.pulse_bias = nn.Parameter(torch.zeros(n_labs, n_drugs))
        self.pulse_slope = nn.Parameter(torch.zeros(n_labs, n_drugs))
        self.effect_context = nn.Linear(cfg.static, n_labs * n_drugs, bias=False)
        self.rate_context = nn.Linear(cfg.static, n_labs * n_drugs, bias=False)
        for lin in (self.effect_context, self.rate_context):
            nn.init.zeros_(lin.weight)
        # the rate pathway only for treatments whose effect lasts (twin.spec.EFFECTS)
        mask = [True] * n_drugs if lasting is None else [bool(x) for x in lasting]
        if len(mask) != n_drugs:
            raise ValueError(f"lasting has {len(mask)} entries for {n_drugs} treatments")
        self.register_buffer("lasting", torch.tensor(mask, dtype=torch.float32))

    def gain_parameters(self) -> list[Tensor]:
        """The direct pathways' gains (L1-penalised in training: most treatments move few targets)."""
        return [self.effect_bias, self.effect_slope, self.rate_bias, self.pulse_bias, self.pulse_slope,
                self.effect_context.weight, self.rate_context.weight]

    def treatment_parameters(self) -> list[Tensor]:
        """Parameters of the direct treatment pathways (gains, PK and effect rates, EC50s): few
        and far from their zero/neutral start, so training may give them a larger step."""
        d = self.dynamics
        return [*self.gain_parameters(), d.pk_logit, d.effect_logit, d.ec50_raw]

    # ---------------------------------------------------------------- encoder
    def encode(self, graphs: Batch, h0: dict[str, Tensor] | None = None) -> Encoded:
        """Posterior over ``z0`` and context of each graph (``h0`` overrides node embeddings)."""
        h = self.encoder.embed(graphs) if h0 is None else h0
        mu, logvar, s = self.encoder.propagate(h, graphs)
        p = graphs["patient"]
        return Encoded(mu, logvar, s, p.anchor, p.anchor_mask, p.level, p.n_obs, p.dose_hist)

    # ---------------------------------------------------------------- solve
    def _grid(self, horizon_days: float, device: torch.device) -> Tensor:
        step = self.scales.step_days
        n = max(int(math.ceil(horizon_days / step)), 1)
        return torch.arange(n + 1, device=device, dtype=torch.float32) * step

    def solve_latent(self, enc: Encoded, z0: Tensor, doses: Tensor, horizon_days: float) -> tuple[Tensor, Tensor]:
        """Grid ``[G]`` (days) and ODE states ``[G, B, latent + D + K]`` for ``z0`` under ``doses``."""
        b = z0.shape[0]
        if doses.shape[0] != b:
            raise ValueError(f"dose schedule has {doses.shape[0]} rows but there are {b} trajectories")
        grid = self._grid(horizon_days, z0.device)
        e0 = self.dynamics.exposure0(enc.dose_hist)
        y0 = torch.cat([z0, e0, z0.new_zeros(b, self.n_events + self.n_drugs), self.dynamics.effect_state0(e0)], dim=-1)
        self.dynamics.set_inputs(doses, enc.s)
        return grid, solve(self.dynamics, y0, grid, self.scales.step_days, self.cfg.solver)

    def decode(self, enc: Encoded, states: Tensor, z0: Tensor | None, dose_given: Tensor
               ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``states`` ``[B, M, N]`` of trajectories from ``z0`` ``[B, latent]`` (``None``: the
        posterior mean) and the doses given up to then, ``dose_given`` ``[B, M, D]``
        (:func:`cumulative_dose`) -> lab mean, logvar ``[B, M, L]``, cum hazard ``[B, M, K]``, z, exposure."""
        lat, d, k = self.cfg.latent, self.n_drugs, self.n_events
        z, e, lam = states[..., :lat], states[..., lat: lat + d], states[..., lat + d: lat + d + k]
        c, g = states[..., lat + d + k: lat + 2 * d + k], states[..., lat + 2 * d + k:]
        m = states.shape[1]
        rep = lambda x: x.unsqueeze(1).expand(-1, m, -1)  # noqa: E731
        mean, logvar = self.decoder(z, rep(enc.mu if z0 is None else z0), rep(enc.s), rep(enc.anchor), rep(enc.anchor_mask), rep(enc.level),
                                    rep(enc.n_obs))
        return mean + self.treatment_effect(enc, c, g, dose_given), logvar, lam, z, e

    def treatment_effect(self, enc: Encoded, c: Tensor, g: Tensor, dose_given: Tensor) -> Tensor:
        """Direct-pathway change of every target ``[B, M, L]`` (standardised) from the accumulated
        responses ``c`` ``[B, M, D]``, effect compartments ``g`` ``[B, M, L * D]`` and doses given
        ``dose_given`` ``[B, M, D]``: ``sum_d rate[l, d] * c_d(t) + gain[l, d] * (g_ld(t) - g_ld(0))
        + pulse[l, d] * D_d(t)``."""
        b, m = g.shape[:2]
        n_l, d = self.n_labs, self.n_drugs
        if not n_l or not d:
            return g.new_zeros(b, m, n_l)
        a = enc.anchor * enc.anchor_mask
        gain = (self.effect_bias + self.effect_slope * a.unsqueeze(-1)
                + self.effect_context(enc.s).view(b, n_l, d)).view(b, 1, n_l, d)
        rate = ((self.rate_bias + self.rate_context(enc.s).view(b, n_l, d)) * self.lasting).view(b, 1, n_l, d)
        pulse = ((self.pulse_bias + self.pulse_slope * a.unsqueeze(-1)) * cast(Tensor, self.lasting)).view(b, 1, n_l, d)
        g0 = self.dynamics.effect_state0(self.dynamics.exposure0(enc.dose_hist)).view(b, 1, n_l, d)
        return (gain * (g.view(b, m, n_l, d) - g0) + (rate * c.unsqueeze(2) + pulse * dose_given.unsqueeze(2))).sum(-1)

    def rollout(self, graphs: Batch, doses: Tensor, t_query: Tensor, *, eps: Tensor | None = None) -> Rollout:
        r"""Forecast every graph under every dose schedule in one ODE solve.

        Args:
            graphs: P patient graphs.
            doses: ``[B, T_days, D]`` daily doses with ``B = P * k`` (k plans per patient,
                plan index fastest); day ``d`` of the schedule is days ``[d, d+1)`` after the origin.
            t_query: ``[Q]`` days after the origin (>= 0).
            eps: optional ``[B, latent]`` standard-normal draws; ``z0 = mu + sigma * eps``
                (``None``: the posterior mean).
        """
        enc = self.encode(graphs)
        p = enc.mu.shape[0]
        if doses.shape[0] % p:
            raise ValueError(f"{doses.shape[0]} dose schedules cannot be split over {p} patient graphs")
        enc = enc.repeat(doses.shape[0] // p)
        z0 = enc.mu if eps is None else enc.mu + torch.exp(0.5 * enc.logvar) * eps
        horizon = float(t_query.max().item()) if t_query.numel() else 0.0
        grid, states = self.solve_latent(enc, z0, doses, max(horizon, self.scales.step_days))
        tq = t_query.to(grid).unsqueeze(0).expand(z0.shape[0], -1)
        mean, logvar, lam, z, e = self.decode(enc, interpolate_states(grid, states, tq), z0, cumulative_dose(doses, tq))
        return Rollout(t_query, mean, logvar, lam, z, e)

    # ---------------------------------------------------------------- training objective
    def loss(self, batch: ExampleBatch, *, sample: bool, kl_weight: float, event_weight: float,
             generator: torch.Generator | None = None, nll_beta: float = 0.0,
             eps: Tensor | None = None) -> dict[str, Tensor]:
        """Gaussian NLL of observed target labs + event NLL + KL(q(z0) || N(0, I)), batch means.

        With ``nll_beta > 0`` each observation's NLL in ``loss`` is weighted by its predicted
        variance to the power ``beta`` (no gradient through the weight; beta-NLL, Seitzer et al.
        2022): plain NLL scales the gradient of a mean by ``1 / variance``, so observations the
        model cannot yet explain (e.g. a lab moving after a drug change) get a large variance and
        then hardly teach the mean. ``lab_nll`` is always the plain NLL. ``eps`` (``[B, latent]``)
        replaces the standard-normal draw of ``z0`` (data-parallel ranks pass their slice of the
        global batch's draw, so they sample what one process would)."""
        enc = self.encode(batch.graphs)
        if sample:
            if eps is None:
                eps = torch.randn(enc.mu.shape, generator=generator, device="cpu")
            eps = eps.to(enc.mu)
            z0 = enc.mu + torch.exp(0.5 * enc.logvar) * eps
        else:
            z0 = enc.mu
        horizon = float(batch.doses.shape[1] - 1)
        grid, states = self.solve_latent(enc, z0, batch.doses, horizon)
        # labs
        st = interpolate_states(grid, states, batch.obs_t)
        mean, logvar, _, _, _ = self.decode(enc, st, z0, cumulative_dose(batch.doses, batch.obs_t))
        mu_o = torch.gather(mean, 2, batch.obs_lab.unsqueeze(-1)).squeeze(-1)
        lv_o = torch.gather(logvar, 2, batch.obs_lab.unsqueeze(-1)).squeeze(-1)
        nll = 0.5 * (lv_o + (batch.obs_y - mu_o) ** 2 * torch.exp(-lv_o) + math.log(2 * math.pi))
        mask = batch.obs_mask.float()
        lab_nll = (nll * mask).sum() / mask.sum().clamp(min=1.0)
        if nll_beta:
            fit = (nll * torch.exp(nll_beta * lv_o.detach()) * mask).sum() / mask.sum().clamp(min=1.0)
        else:
            fit = lab_nll
        sq = ((batch.obs_y - mu_o) ** 2 * mask).sum() / mask.sum().clamp(min=1.0)
        # events: -log L = Lambda(T) - flag * log h(T)
        if self.n_events:
            se = interpolate_states(grid, states, batch.event_time)  # [B, K, N]
            lat, d = self.cfg.latent, self.n_drugs
            k = torch.arange(self.n_events, device=se.device)
            lam = se[:, k, lat + d + k]
            haz = self.dynamics.hazard_rate(se[..., :lat], enc.s.unsqueeze(1).expand(-1, self.n_events, -1))[:, k, k]
            ev = (lam - batch.event_flag * torch.log(haz + 1e-8)).mean()
        else:
            ev = lab_nll.new_zeros(())
        kl = 0.5 * (enc.mu ** 2 + enc.logvar.exp() - 1.0 - enc.logvar).sum(-1).mean()
        total = fit + event_weight * ev + kl_weight * kl
        return {"loss": total, "lab_nll": lab_nll, "lab_mse": sq, "event_nll": ev, "kl": kl}
