"""Baselines the twin is benchmarked against (same origins, same labels, same units).

* :func:`last_value` - last observation carried forward;
* :func:`smoothed_level` - recency-weighted mean of the lab's values carried forward;
* :func:`linear_trend` - per-patient least-squares line through the lab's recent history;
* :class:`GRUForecaster` - a sequence model over the lab series with the same treatment
  inputs as the twin but no graph: a GRU encodes past visits (values, masks, gaps, doses),
  a GRU cell rolls forward week by week driven by the planned doses.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import torch
from torch import Tensor, nn

from graph.schema import NodeType
from graph.timeutil import days_between
from twin.features import Example, PatientRecords, Targets, actions_from_records, dose_schedule
from twin.features.vocab import Normalisers, Vocabulary

__all__ = ["GRUForecaster", "LabHistory", "SeqExample", "lab_history", "last_value", "linear_trend",
           "seq_example", "smoothed_level", "train_gru"]


@dataclass
class LabHistory:
    """Per target lab: observation days (<= 0, relative to the origin) and standardised values."""

    days: list[np.ndarray]
    values: list[np.ndarray]


def lab_history(records: PatientRecords, t0: datetime, vocab: Vocabulary, norms: Normalisers) -> LabHistory:
    """Target-lab history of records cut at ``t0``."""
    days: list[list[float]] = [[] for _ in vocab.target_labs]
    vals: list[list[float]] = [[] for _ in vocab.target_labs]
    for n in records.nodes:
        j = vocab.target(n.code) if n.type is NodeType.LAB else None
        if j is None or n.time is None or n.value is None or n.time > t0:
            continue
        days[j].append(days_between(t0, n.time))
        vals[j].append(norms.lab(n.code or "", float(n.value)))
    order = [np.argsort(d) for d in days]
    return LabHistory([np.asarray(d)[o] for d, o in zip(days, order, strict=True)],
                      [np.asarray(v)[o] for v, o in zip(vals, order, strict=True)])


def last_value(h: LabHistory, t_query: np.ndarray) -> np.ndarray:
    """``[Q, L]`` standardised forecasts: the last value (0 = cohort mean when never measured)."""
    out = np.zeros((len(t_query), len(h.values)))
    for j, v in enumerate(h.values):
        out[:, j] = v[-1] if len(v) else 0.0
    return out


def smoothed_level(h: LabHistory, t_query: np.ndarray, tau_days: float = 365.0) -> np.ndarray:
    """``[Q, L]`` forecasts: the recency-weighted mean of each lab's values (weights
    ``exp(-age / tau_days)``) carried forward, by default the twin's ``level`` feature;
    0 = cohort mean when never measured."""
    out = np.zeros((len(t_query), len(h.values)))
    for j, (d, v) in enumerate(zip(h.days, h.values, strict=True)):
        if len(v):
            w = np.exp(np.minimum(d, 0.0) / tau_days)
            out[:, j] = float((w * v).sum() / w.sum())
    return out


def linear_trend(h: LabHistory, t_query: np.ndarray, max_points: int = 6, min_span_days: float = 30.0) -> np.ndarray:
    """``[Q, L]`` forecasts from a line fitted to the last ``max_points`` values of each lab
    (last value when fewer than two points or they span under ``min_span_days``)."""
    out = last_value(h, t_query)
    for j, (d, v) in enumerate(zip(h.days, h.values, strict=True)):
        d, v = d[-max_points:], v[-max_points:]
        if len(d) >= 2 and d[-1] - d[0] >= min_span_days:
            slope, icpt = np.polyfit(d, v, 1)
            out[:, j] = icpt + slope * t_query
    return out


@dataclass
class SeqExample:
    """GRU input: visit sequence ``[S, 2L + 2 + D]``, future doses ``[T, D]``, labels."""

    seq: Tensor
    anchor: Tensor
    anchor_mask: Tensor
    doses: Tensor
    targets: Targets


def seq_example(records: PatientRecords, ex: Example, vocab: Vocabulary, norms: Normalisers,
                max_steps: int = 32) -> SeqExample:
    """The GRU's view of example ``ex``: the patient's target-lab visits before the origin."""
    t0 = ex.t0
    cut = records.cut(t0)
    by_time: dict[float, dict[int, float]] = {}
    for n in cut.nodes:
        j = vocab.target(n.code) if n.type is NodeType.LAB else None
        if j is not None and n.time is not None and n.value is not None:
            by_time.setdefault(days_between(t0, n.time), {})[j] = norms.lab(n.code or "", float(n.value))
    times = sorted(by_time)[-max_steps:]
    n_l, n_d = vocab.n_targets, vocab.n_treatments
    acts = actions_from_records(cut, t0, vocab)
    first = int(math.floor(times[0])) if times else 0
    past = dose_schedule(acts, vocab, norms, max(-first + 1, 1), strict=False, first_day=first)
    rows = []
    prev = times[0] if times else 0.0
    for t in times:
        x = np.zeros(2 * n_l + 2 + n_d, np.float32)
        for j, v in by_time[t].items():
            x[j], x[n_l + j] = v, 1.0
        x[2 * n_l] = (t - prev) / 30.0
        x[2 * n_l + 1] = t / 365.0
        x[2 * n_l + 2:] = past[min(int(math.floor(t)) - first, past.shape[0] - 1)].numpy()
        rows.append(x)
        prev = t
    seq = torch.from_numpy(np.stack(rows)) if rows else torch.zeros(1, 2 * n_l + 2 + n_d)
    p = ex.graph["patient"]
    return SeqExample(seq, p.anchor[0], p.anchor_mask[0], ex.doses, ex.targets)


class GRUForecaster(nn.Module):
    """GRU encoder over past visits + GRU cell rolled forward weekly under the planned doses."""

    def __init__(self, n_in: int, n_labs: int, n_drugs: int, hidden: int = 64, step_days: float = 7.0) -> None:
        super().__init__()
        self.enc = nn.GRU(n_in, hidden, batch_first=True)
        self.cell = nn.GRUCell(n_drugs + 1, hidden)
        self.out = nn.Linear(hidden + 2 * n_labs, 2 * n_labs)
        self.n_labs, self.step_days = n_labs, step_days

    def forward(self, seqs: list[Tensor], anchor: Tensor, anchor_mask: Tensor, doses: Tensor,
                horizon_days: float) -> tuple[Tensor, Tensor, Tensor]:
        """Weekly grid ``[G]`` and mean/logvar ``[B, G, L]`` (standardised)."""
        packed = nn.utils.rnn.pack_sequence(seqs, enforce_sorted=False)
        _, h = self.enc(packed)
        h = h[0]
        g = int(math.ceil(horizon_days / self.step_days)) + 1
        grid = torch.arange(g, dtype=torch.float32) * self.step_days
        a = anchor * anchor_mask
        outs = []
        for i in range(g):
            day = min(int(grid[i]), doses.shape[1] - 1)
            o = self.out(torch.cat([h, a, anchor_mask], -1))
            outs.append(o)
            h = self.cell(torch.cat([doses[:, day], torch.full((h.shape[0], 1), float(grid[i]) / 365.0)], -1), h)
        o = torch.stack(outs, 1)
        mean, lv = o.split(self.n_labs, -1)
        return grid, a.unsqueeze(1) + mean, -7.0 + 10.0 * torch.sigmoid(lv)


def _interp(grid: Tensor, y: Tensor, t: Tensor) -> Tensor:
    """``y`` ``[B, G, L]`` at per-row times ``t`` ``[B, M]`` -> ``[B, M, L]``."""
    hi = torch.bucketize(t.clamp(grid[0], grid[-1]), grid).clamp(1, len(grid) - 1)
    lo = hi - 1
    w = ((t - grid[lo]) / (grid[hi] - grid[lo])).unsqueeze(-1)
    take = lambda idx: torch.gather(y, 1, idx.unsqueeze(-1).expand(-1, -1, y.shape[-1]))  # noqa: E731
    return take(lo) + w * (take(hi) - take(lo))


def _batch_nll(model: GRUForecaster, exs: list[SeqExample], horizon: float) -> Tensor:
    m = max(max(len(e.targets.t) for e in exs), 1)
    t = torch.zeros(len(exs), m)
    lab = torch.zeros(len(exs), m, dtype=torch.long)
    y = torch.zeros(len(exs), m)
    mask = torch.zeros(len(exs), m)
    for i, e in enumerate(exs):
        n = len(e.targets.t)
        t[i, :n], lab[i, :n], y[i, :n], mask[i, :n] = (torch.from_numpy(e.targets.t), torch.from_numpy(e.targets.lab),
                                                        torch.from_numpy(e.targets.y), 1.0)
    grid, mean, lv = model([e.seq for e in exs], torch.stack([e.anchor for e in exs]),
                           torch.stack([e.anchor_mask for e in exs]), torch.stack([e.doses for e in exs]), horizon)
    mu = torch.gather(_interp(grid, mean, t), 2, lab.unsqueeze(-1)).squeeze(-1)
    v = torch.gather(_interp(grid, lv, t), 2, lab.unsqueeze(-1)).squeeze(-1)
    nll = 0.5 * (v + (y - mu) ** 2 * torch.exp(-v))
    return (nll * mask).sum() / mask.sum().clamp(min=1)


def train_gru(train: list[SeqExample], val: list[SeqExample], n_labs: int, n_drugs: int, *, horizon_days: int,
              epochs: int = 30, batch_size: int = 64, lr: float = 3e-3, patience: int = 5, seed: int = 0) -> GRUForecaster:
    """Fit the GRU baseline with Gaussian NLL and early stopping on ``val``."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = GRUForecaster(train[0].seq.shape[1], n_labs, n_drugs)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    best, state, bad = math.inf, copy.deepcopy(model.state_dict()), 0
    for _ in range(epochs):
        model.train()
        order = list(range(len(train)))
        rng.shuffle(order)
        for i in range(0, len(order), batch_size):
            loss = _batch_nll(model, [train[j] for j in order[i: i + batch_size]], horizon_days)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
        model.eval()
        with torch.no_grad():
            mon = val or train
            v = float(sum(float(_batch_nll(model, mon[i: i + 256], horizon_days)) * len(mon[i: i + 256])
                          for i in range(0, len(mon), 256)) / len(mon))
        if v < best - 1e-4:
            best, state, bad = v, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
            if bad >= patience:
                break
    model.load_state_dict(state)
    return model.eval()
