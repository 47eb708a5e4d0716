"""Every member of an ensemble in one solve: weights stacked along a member axis.

The members of a :class:`~twin.model.checkpoint.TwinEnsemble` share one architecture and
differ only in their weights, so their vector fields, lab decoders and direct treatment
pathways can be evaluated together as batched matrix products (``[M, rows, in] @ [M, in, out]``):
a forecast costs one ``torchdiffeq`` solve of ``M x rows`` trajectories instead of one solve per
member, and the parts of each layer's input that do not change along a trajectory (the static
context ``s``, the lab anchors and levels) are multiplied once per solve, not once per step.

Inference only (no gradients). It computes what each member's own
:meth:`~twin.model.twin_model.TwinModel.rollout` computes, up to float summation order
(tests compare the two).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch, HeteroData
from torch_geometric.nn import HeteroConv, SAGEConv
from torchdiffeq import odeint

from twin.model.twin_model import Encoded, TwinModel, cumulative_dose

__all__ = ["StackedMembers", "StackedRollout"]


def _stack(ws: Sequence[Tensor]) -> Tensor:
    return torch.stack([w.detach() for w in ws])


def _linear(layers: Sequence[nn.Module]) -> tuple[Tensor, Tensor]:
    """Stacked weights ``[M, in, out]`` and biases ``[M, 1, out]`` of the members' copies of one layer."""
    lins = [cast(nn.Linear, lin) for lin in layers]
    bias = [lin.bias if lin.bias is not None else lin.weight.new_zeros(lin.weight.shape[0]) for lin in lins]
    return _stack([lin.weight.t() for lin in lins]), _stack(bias).unsqueeze(1)


def _tanh_(x: Tensor) -> Tensor:
    """``tanh`` in place as ``2 sigmoid(2x) - 1`` (within 2e-7 in float32): torch's CPU ``tanh``
    is several times slower than its vectorised ``sigmoid``, and it is most of the cost of a
    vector-field evaluation."""
    return x.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)


def _split(w: Tensor, widths: Sequence[int]) -> list[Tensor]:
    """Row blocks ``[M, in_i, out]`` of stacked weights for the input slices ``widths``."""
    if sum(widths) != w.shape[1]:
        raise ValueError(f"input slices {list(widths)} do not cover the layer's {w.shape[1]} inputs")
    return [b.contiguous() for b in w.split(list(widths), dim=1)]


@dataclass
class StackedRollout:
    """Trajectories of every member at query days ``t`` ``[Q]``: lab ``mean``/``logvar``
    ``[M, R, Q, L]`` (standardised) and ``cum_hazard`` ``[M, R, Q, K]``."""

    t: Tensor
    mean: Tensor
    logvar: Tensor
    cum_hazard: Tensor


class _StackedField(nn.Module):
    """The members' ODE vector fields (see :mod:`twin.model.dynamics`) on a flat state that
    keeps apart what depends on the sample and what does not.

    ``R = P x k`` trajectories: ``P`` dose schedules, each shared by ``k`` consecutive rows (the
    samples of one patient-plan). A sample changes only the initial latent state, so the
    exposure ``e``, accumulated response ``c`` and effect compartments ``g`` of a trajectory
    are those of its schedule: they are solved once per member and schedule (``[M, P, 2D + L·D]``)
    and only the latent ``z`` and cumulative hazards ``Lambda`` once per row (``[M, R, latent + K]``).
    The flat state is the schedule block followed by the row block (:meth:`split`).
    """

    def __init__(self, members: Sequence[TwinModel]) -> None:
        super().__init__()
        dyn = [m.dynamics for m in members]
        d0 = dyn[0]
        self.latent, self.n_drugs, self.n_events, self.n_labs = d0.latent, d0.n_drugs, d0.n_events, d0.n_labs
        self.time_unit_days = d0.time_unit_days
        static = members[0].cfg.static
        w1, self.b1 = _linear([m.f[0] for m in dyn])
        self.w1_z, self.w1_r, self.w1_s = _split(w1, (self.latent, self.n_drugs, static))
        self.w2, self.b2 = _linear([m.f[2] for m in dyn])
        self.w3, self.b3 = _linear([m.f[4] for m in dyn])
        wh, self.bh = _linear([m.hazard for m in dyn])
        wh_z, self.wh_s = _split(wh, (self.latent, static))
        self.w_z = torch.cat([self.w1_z, wh_z], dim=2).contiguous()  # [M, latent, H + K]: z's part of both layers
        self.pk_rate = _stack([m.pk_rate for m in dyn]).unsqueeze(1)  # [M, 1, D]
        self.ec50 = _stack([m.ec50 for m in dyn]).unsqueeze(1)  # [M, 1, D]
        self.effect_rate = _stack([m.effect_rate for m in dyn]).unsqueeze(1)  # [M, 1, L, D]
        self.sched_width = 2 * self.n_drugs + self.n_labs * self.n_drugs  # e, c, g
        self.row_width = self.latent + self.n_events  # z, Lambda
        self._doses: Tensor | None = None
        self._k = 1
        self._f_static: Tensor | None = None
        self._h_static: Tensor | None = None

    def response(self, e: Tensor) -> Tensor:
        e = e.clamp(min=0.0)
        return e / (e + self.ec50)

    def bind(self, doses: Tensor, static: Tensor, rows_per_schedule: int) -> _StackedField:
        """A copy of the field for one solve: dose schedules ``[P, T, D]``, their static contexts
        ``[M, P, S]`` and the number of trajectories of each schedule (the weights are shared; the
        field itself stays unbound, so solves may run at once in several threads)."""
        if static.shape[1] != doses.shape[0]:
            raise ValueError(f"{static.shape[1]} static contexts for {doses.shape[0]} dose schedules")
        bound = copy.copy(self)
        bound._doses, bound._k = doses, rows_per_schedule
        bound._f_static = torch.baddbmm(self.b1, static, self.w1_s)  # [M, P, H]: the static part of layer 1
        bound._h_static = torch.baddbmm(self.bh, static, self.wh_s).unsqueeze(2)  # [M, P, 1, K]
        return bound

    def split(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Flat states ``[..., N]`` -> schedule states ``[..., M, P, 2D + L·D]`` and row states
        ``[..., M, P, k, latent + K]`` (views)."""
        assert self._doses is not None and self._f_static is not None
        m, p, k = self._f_static.shape[0], self._doses.shape[0], self._k
        n_s = m * p * self.sched_width
        lead = y.shape[:-1]
        return (y[..., :n_s].view(*lead, m, p, self.sched_width),
                y[..., n_s:].view(*lead, m, p, k, self.row_width))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        assert self._doses is not None and self._f_static is not None and self._h_static is not None
        lat, d = self.latent, self.n_drugs
        n_days = self._doses.shape[1]
        day = torch.clamp((t * self.time_unit_days).floor().long(), 0, n_days - 1)
        ys, yr = self.split(y)
        m, p, k, _ = yr.shape
        e = ys[..., :d]
        resp = self.response(e)  # [M, P, D]
        z = yr[..., :lat].reshape(m, p * k, lat)
        # layer 1: the latent part per row, the response and static parts once per schedule
        zw = torch.bmm(z, self.w_z).view(m, p, k, -1)
        h, dlam = zw.split([self.w1_z.shape[2], self.n_events], dim=-1)
        h = _tanh_(h + torch.baddbmm(self._f_static, resp, self.w1_r).unsqueeze(2))
        h = _tanh_(torch.baddbmm(self.b2, h.view(m, p * k, -1), self.w2))
        dz = torch.baddbmm(self.b3, h, self.w3).view(m, p, k, lat)
        dlam = nn.functional.softplus(dlam + self._h_static)
        de = self.pk_rate * (self._doses[:, day].unsqueeze(0) - e)
        parts = [de, resp]
        if self.n_labs:
            g = ys[..., 2 * d:].view(m, p, self.n_labs, d)
            parts.append((self.effect_rate * (resp.unsqueeze(2) - g)).flatten(2))
        return torch.cat([torch.cat(parts, dim=-1).flatten(), torch.cat([dz, dlam], dim=-1).flatten()])


def _graph_index(nodes: Any, n: int) -> Tensor:
    """Graph of each of ``n`` nodes of one type: the batch vector, or zeros for a lone graph."""
    return nodes.batch if "batch" in nodes else torch.zeros(n, dtype=torch.long, device=nodes.x.device)


class _StackedEncoder:
    """The members' graph encoders (:class:`~twin.model.hetero_encoder.HeteroPatientEncoder`) on
    node states ``[M, n, H]``: each ``SAGEConv`` is a mean over in-neighbours (one
    ``index_add`` per edge type, shared by all members) and two stacked matrix products, so a
    layer costs a few tensor operations per node type instead of a PyG module call per edge type
    and member."""

    def __init__(self, members: Sequence[TwinModel]) -> None:
        encs = [m.encoder for m in members]
        e0 = encs[0]
        self.latent = e0.latent
        self.node_types = list(e0.inp.keys())
        self.inp = {t: _linear([e.inp[t] for e in encs]) for t in self.node_types}
        self.concept = _stack([e.concept.weight for e in encs])  # [M, C, H]
        self.gene = _stack([e.gene.weight for e in encs])
        self.layers: list[dict[tuple[str, str, str], tuple[Tensor, Tensor, Tensor]]] = []
        for li, conv in enumerate(e0.convs):
            convs = [cast(HeteroConv, e.convs[li]).convs for e in encs]
            layer = {}
            for key in cast(HeteroConv, conv).convs.keys():
                sage = [cast(SAGEConv, c[key]) for c in convs]
                w_l, b_l = _linear([c.lin_l for c in sage])
                w_r, _ = _linear([c.lin_r for c in sage])
                layer[cast(tuple[str, str, str], tuple(key))] = (w_l, b_l, w_r)
            self.layers.append(layer)
        self.norms: list[dict[str, tuple[Tensor, Tensor, float]]] = []
        for li in range(len(e0.convs)):
            lns = {t: [cast(nn.LayerNorm, cast(nn.ModuleDict, e.norms[li])[t]) for e in encs] for t in self.node_types}
            self.norms.append({t: (_stack([ln.weight for ln in ln_t]).unsqueeze(1), _stack([ln.bias for ln in ln_t]).unsqueeze(1),
                                   float(ln_t[0].eps)) for t, ln_t in lns.items()})
        self.head1 = _linear([e.head[0] for e in encs])
        self.head2 = _linear([e.head[2] for e in encs])

    def __call__(self, batch: Batch | HeteroData) -> tuple[Tensor, Tensor, Tensor]:
        """``(mu, logvar, s)``, each ``[M, G, ...]``, for the ``G`` graphs of ``batch`` (or one graph)."""
        gelu = nn.functional.gelu
        h: dict[str, Tensor] = {}
        for t in self.node_types:
            w, b = self.inp[t]
            x = torch.matmul(batch[t].x, w) + b  # [M, n, H]
            if t != "patient":
                x = x + self.concept[:, batch[t].cid]
            if t == "variant":
                x = x + self.gene[:, batch[t].gid]
            h[t] = gelu(x)
        edges = batch.edge_index_dict
        # mean-aggregation weights of each edge type, shared by every member and layer
        agg: dict[tuple[str, str, str], tuple[Tensor, Tensor, Tensor]] = {}
        for et in self.layers[0] if self.layers else ():
            if et in edges:
                src, dst = edges[et]
                n_dst = h[et[2]].shape[1]
                deg = torch.bincount(dst, minlength=n_dst).clamp(min=1).to(h[et[2]].dtype)
                agg[et] = (src, dst, deg.reciprocal().view(1, -1, 1))
        for layer, norms in zip(self.layers, self.norms, strict=True):
            out: dict[str, Tensor] = {}
            for et, (w_l, b_l, w_r) in layer.items():
                if et not in agg:
                    continue
                src, dst, inv_deg = agg[et]
                x_src, x_dst = h[et[0]], h[et[2]]
                mean = x_src.new_zeros(x_dst.shape).index_add_(1, dst, x_src[:, src]) * inv_deg
                y = torch.baddbmm(b_l, mean, w_l) + torch.bmm(x_dst, w_r)
                out[et[2]] = out[et[2]] + y if et[2] in out else y
            for t, y in out.items():
                w, b, eps = norms[t]
                h[t] = nn.functional.layer_norm(h[t] + gelu(y), (y.shape[-1],), eps=eps) * w + b
        n = batch["patient"].x.shape[0]
        pooled = [h["patient"]]
        for t in self.node_types[1:]:
            x = h[t]
            total = x.new_zeros(x.shape[0], n, x.shape[2])
            if x.shape[1]:
                idx = _graph_index(batch[t], x.shape[1])
                total.index_add_(1, idx, x)
                total = total / torch.bincount(idx, minlength=n).clamp(min=1).to(x.dtype).view(1, -1, 1)
            pooled.append(total)
        w1, b1 = self.head1
        w2, b2 = self.head2
        o = torch.baddbmm(b2, gelu(torch.baddbmm(b1, torch.cat(pooled, dim=-1), w1)), w2)
        mu, logvar, st = o.split([self.latent, self.latent, o.shape[-1] - 2 * self.latent], dim=-1)
        return mu, logvar.clamp(-8.0, 4.0), torch.tanh(st)


class StackedMembers:
    """An ensemble's members as one batched model for inference (see the module docstring).

    Example::

        stacked = StackedMembers(ensemble.members)
        enc = stacked.encode(batch)                               # one Encoded per member
        ro = stacked.rollout(enc, eps, doses, torch.arange(0, 181, 7.0))
        ro.mean  # [M, R, Q, L]
    """

    def __init__(self, members: Sequence[TwinModel]) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        first = members[0]
        for m in members[1:]:
            if m.cfg != first.cfg or (m.n_labs, m.n_drugs, m.n_events) != (first.n_labs, first.n_drugs, first.n_events):
                raise ValueError("ensemble members must share one architecture to be stacked")
        self.members = list(members)
        self.cfg, self.scales = first.cfg, first.scales
        self.n_labs, self.n_drugs, self.n_events = first.n_labs, first.n_drugs, first.n_events
        with torch.no_grad():
            self.field = _StackedField(members)
            self.encoder = _StackedEncoder(members)
            dec = [m.decoder for m in members]
            lat, st, n_l = self.cfg.latent, self.cfg.static, self.n_labs
            wd1, self.bd1 = _linear([d.net[0] for d in dec])
            self.wd_z, self.wd_rest = _split(wd1, (lat, st + 4 * n_l))
            self.wd2, self.bd2 = _linear([d.net[2] for d in dec])
            self.change_scale = _stack([torch.exp(d.log_scale) for d in dec]).unsqueeze(1)  # [M, 1, L]
            self.offset_scale = _stack([torch.exp(d.offset_log_scale) for d in dec]).unsqueeze(1)  # [M, 1, L]
            self.min_logvar, self.max_logvar = dec[0].min_logvar, dec[0].max_logvar
            self.effect_bias = _stack([m.effect_bias for m in members])  # [M, L, D]
            self.effect_slope = _stack([m.effect_slope for m in members])
            self.rate_bias = _stack([m.rate_bias for m in members])
            self.pulse_bias = _stack([m.pulse_bias for m in members])
            self.pulse_slope = _stack([m.pulse_slope for m in members])
            self.effect_context = _stack([m.effect_context.weight.t() for m in members])  # [M, S, L*D]
            self.rate_context = _stack([m.rate_context.weight.t() for m in members])
            self.lasting = cast(Tensor, first.lasting).detach()

    @torch.no_grad()
    def encode(self, graphs: Batch | HeteroData) -> list[Encoded]:
        """Each member's posterior and context for every graph of a batch, or for one graph
        (no batching needed), all members at once."""
        mu, logvar, s = self.encoder(graphs)
        p = graphs["patient"]
        return [Encoded(mu[i], logvar[i], s[i], p.anchor, p.anchor_mask, p.level, p.n_obs, p.dose_hist)
                for i in range(mu.shape[0])]

    def _exposure0(self, dose_hist: Tensor) -> Tensor:
        """Exposures ``[M, P, D]`` at the origin (:meth:`LatentDynamics.exposure0` per member)."""
        h = dose_hist.shape[1]
        m = self.field.pk_rate.shape[0]
        if h == 0:
            return dose_hist.new_zeros(m, dose_hist.shape[0], self.n_drugs)
        a = torch.exp(-self.field.pk_rate.squeeze(1) / self.field.time_unit_days)  # [M, D]
        powers = a.unsqueeze(1) ** torch.arange(h - 1, -1, -1, device=a.device, dtype=a.dtype).view(1, h, 1)
        return dose_hist[:, 0].unsqueeze(0) * (a ** h).unsqueeze(1) + torch.einsum("mhd,phd->mpd", (1 - a).unsqueeze(1)
                                                                                   * powers, dose_hist)

    @torch.no_grad()
    def rollout(self, enc: Sequence[Encoded], eps: Tensor | None, doses: Tensor, t_query: Tensor,
                rows_per_schedule: int = 1) -> StackedRollout:
        """Forecast every graph under its dose schedules with every member, in one solve.

        Args:
            enc: one :class:`Encoded` per member for the same ``G`` graphs.
            eps: ``[M, R, latent]`` standard-normal draws, ``z0 = mu + sigma * eps`` (``None``:
                the posterior means); ``R = G x k x rows_per_schedule``.
            doses: ``[G x k, T_days, D]`` daily doses, ``k`` schedules per graph (schedule
                index fastest).
            t_query: ``[Q]`` days after the origin (>= 0).
            rows_per_schedule: trajectories per schedule (e.g. samples), consecutive rows.
        """
        n_m, g = len(enc), enc[0].mu.shape[0]
        n_sched = doses.shape[0]
        if n_sched % g:
            raise ValueError(f"{n_sched} dose schedules cannot be split over {g} patient graphs")
        k = rows_per_schedule
        r = n_sched * k

        def each(x: Tensor, n: int) -> Tensor:  # [M, G, ...] -> [M, G x n, ...] (each graph's n consecutive)
            return x.unsqueeze(2).expand(x.shape[0], g, n, *x.shape[2:]).reshape(x.shape[0], g * n, *x.shape[2:])

        e_ = enc[0]
        mu, logvar = torch.stack([e.mu for e in enc]), torch.stack([e.logvar for e in enc])
        z0 = each(mu, r // g)
        if eps is not None:
            if eps.shape != (n_m, r, self.cfg.latent):
                raise ValueError(f"eps must be [{n_m}, {r}, {self.cfg.latent}], got {tuple(eps.shape)}")
            z0 = z0 + each(torch.exp(0.5 * logvar), r // g) * eps
        e0 = self._exposure0(e_.dose_hist)  # [M, G, D]
        g0 = self.field.response(e0).unsqueeze(2).expand(n_m, g, self.n_labs, self.n_drugs)
        per_sched = n_sched // g
        y0s = torch.cat([each(e0, per_sched), e0.new_zeros(n_m, n_sched, self.n_drugs),
                         each(g0.flatten(2), per_sched)], dim=-1)
        y0r = torch.cat([z0, z0.new_zeros(n_m, r, self.n_events)], dim=-1)
        step, unit = self.scales.step_days, self.scales.time_unit_days
        horizon = max(float(t_query.max()) if t_query.numel() else 0.0, step)
        n_steps = max(int(-(-horizon // step)), 1)
        # torchdiffeq's fixed-step solvers return the state at any requested time by linear
        # interpolation between their steps: ask for the query days themselves, between the
        # origin and the end of the last whole step (so the steps are those of training's grid,
        # see TwinModel.solve_latent), and no state of the other steps is ever kept.
        tq = t_query.to(y0s.device, torch.float32).clamp(0.0, n_steps * step)
        times, at = torch.unique(torch.cat([tq.new_zeros(1), tq.new_full((1,), n_steps * step), tq]),
                                 sorted=True, return_inverse=True)
        field = self.field.bind(doses, each(torch.stack([e.s for e in enc]), per_sched), k)
        y0 = torch.cat([y0s.flatten(), y0r.flatten()])
        states = odeint(field, y0, times / unit, method=self.cfg.solver, options={"step_size": step / unit})
        sched_st, row_st = field.split(states[at[2:]])  # [Q, M, P, ...], [Q, M, P, k, ...] in the order asked
        given = cumulative_dose(doses, tq.unsqueeze(0).expand(n_sched, -1))  # [P, Q, D]
        return self._decode(enc, sched_st, row_st, e0, per_sched, t_query, z0, given)

    def _decode(self, enc: Sequence[Encoded], sched_st: Tensor, row_st: Tensor, e0: Tensor, per_sched: int,
                t_query: Tensor, z0: Tensor, dose_given: Tensor) -> StackedRollout:
        """Lab means/log-variances and cumulative hazards ``[M, R, Q, ...]`` from the states at
        the query days, per schedule ``[Q, M, P, 2D + L·D]`` and per row ``[Q, M, P, k, latent + K]``
        (``P = G x per_sched``), of the trajectories from ``z0`` ``[M, R, latent]`` with the doses
        ``dose_given`` ``[P, Q, D]`` given up to the query days (:class:`~twin.model.decoders.LabDecoder`)."""
        lat, d, n_l = self.cfg.latent, self.n_drugs, self.n_labs
        q, n_m, p, k, _ = row_st.shape
        g_n = p // per_sched
        r = p * k
        e_ = enc[0]
        z = row_st[..., :lat].permute(1, 2, 3, 0, 4).reshape(n_m, r, q, lat)  # [M, R, Q, latent]
        lam = row_st[..., lat:].permute(1, 2, 3, 0, 4).reshape(n_m, r, q, -1)
        a = e_.anchor * e_.anchor_mask  # [G, L]
        s_g = torch.stack([e.s for e in enc])  # [M, G, S]
        rest = torch.cat([s_g, a.expand(n_m, -1, -1), e_.anchor_mask.expand(n_m, -1, -1),
                          ((e_.level - e_.anchor) * e_.anchor_mask).expand(n_m, -1, -1),
                          e_.n_obs.expand(n_m, -1, -1)], dim=-1)
        const = torch.baddbmm(self.bd1, rest, self.wd_rest)  # [M, G, H]
        # the network at the query days' z(t) and at z(0), in one product (rows of one trajectory
        # are then computed alike, whatever the other trajectories: plans agree until they differ)
        z_all = torch.cat([z, z0.view(n_m, r, 1, lat)], dim=2)  # [M, R, Q + 1, latent]
        h = torch.bmm(z_all.reshape(n_m, r * (q + 1), lat), self.wd_z).view(n_m, g_n, -1, q + 1, const.shape[-1])
        h.add_(const.view(n_m, g_n, 1, 1, -1))
        out = torch.baddbmm(self.bd2, nn.functional.gelu(h).view(n_m, r * (q + 1), -1), self.wd2)
        out = out.view(n_m, g_n, -1, q + 1, 3 * n_l)  # [M, G, P/G x k, Q + 1, 3L]
        delta, raw, _ = out[:, :, :, :q].split(n_l, dim=-1)
        delta0, _, off = out[:, :, :, q:].split(n_l, dim=-1)
        logvar = self.min_logvar + (self.max_logvar - self.min_logvar) * torch.sigmoid(raw)
        mean = (a.view(1, g_n, 1, 1, n_l) + (delta - delta0) * self.change_scale.view(n_m, 1, 1, 1, n_l)
                + off * self.offset_scale.view(n_m, 1, 1, 1, n_l))  # [M, G, P/G x k, Q, L]
        if n_l and d:
            gain = (self.effect_bias.unsqueeze(1) + self.effect_slope.unsqueeze(1) * a.view(1, -1, n_l, 1)
                    + torch.bmm(s_g, self.effect_context).view(n_m, -1, n_l, d))  # [M, G, L, D]
            rate = (self.rate_bias.unsqueeze(1) + torch.bmm(s_g, self.rate_context).view(n_m, -1, n_l, d)) * self.lasting
            pulse = (self.pulse_bias.unsqueeze(1) + self.pulse_slope.unsqueeze(1) * a.view(1, -1, n_l, 1)) * self.lasting
            g0 = self.field.response(e0).unsqueeze(2)  # [M, G, 1, D]
            # per schedule: sum_d gain * (g(t) - g(0)) + rate * c(t) + pulse * D(t)
            g_t = sched_st[..., 2 * d:].reshape(q, n_m, g_n, per_sched, n_l, d)
            level = (g_t * gain.view(1, n_m, g_n, 1, n_l, d)).sum(-1) - (gain * g0).sum(-1).view(1, n_m, g_n, 1, n_l)
            c_t = sched_st[..., d: 2 * d].reshape(q, n_m, g_n, per_sched, 1, d)
            level = level + (c_t * rate.view(1, n_m, g_n, 1, n_l, d)).sum(-1)  # [Q, M, G, P/G, L]
            level = level.permute(1, 2, 3, 0, 4) + torch.matmul(
                dose_given.view(1, g_n, per_sched, q, d), pulse.view(n_m, g_n, 1, n_l, d).transpose(-1, -2))
            mean = mean.view(n_m, g_n, per_sched, k, q, n_l) + level.unsqueeze(3)
        return StackedRollout(t_query, mean.reshape(n_m, r, q, n_l), logvar.reshape(n_m, r, q, n_l), lam)
