"""``Twin``: one patient's graph (as of an origin) + a fitted model.

::

    twin = Twin.load(store, "p42", "runs/model.pt")
    fc = twin.forecast(horizon_days=365)        # per-lab median and 5-95% band, event risk
    twin.update(new_batch)                      # assimilate new records, no retraining
    twin.explain()                              # graph nodes that drove the forecast
    twin.plot("p42.png")
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Batch

from core.errors import TwinError
from graph.schema import GraphBatch, Node, NodeType
from graph.store.base import GraphStore
from graph.timeutil import days_between, to_iso
from twin.features import (
    DoseAction,
    PatientRecords,
    actions_from_records,
    build_graph,
    dose_schedule,
    drop_modalities,
    load_records,
)
from twin.model.checkpoint import TwinEnsemble
from twin.model.twin_model import cumulative_dose, interpolate_states
from twin.plotting import plot_forecast
from twin.predict import predict

__all__ = ["PATIENT_SUMMARY", "Attribution", "Forecast", "LabForecast", "Twin"]


@dataclass
class LabForecast:
    """One target lab: days after the origin and the predictive median / 5% / 95% / mean."""

    code: str
    name: str
    unit: str
    days: list[float]
    median: list[float]
    p05: list[float]
    p95: list[float]
    mean: list[float]


@dataclass
class Forecast:
    """A twin's forecast from ``origin`` over ``horizon_days``."""

    patient_id: str
    origin: datetime
    horizon_days: float
    labs: dict[str, LabForecast]
    event_risk: dict[str, float]
    n_samples: int
    n_members: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "patient_id": self.patient_id, "origin": to_iso(self.origin), "horizon_days": self.horizon_days,
            "n_samples": self.n_samples, "n_members": self.n_members, "event_risk": self.event_risk,
            "labs": {c: {k: v for k, v in lf.__dict__.items()} for c, lf in self.labs.items()},
        }


#: What the patient node of the graph holds, shown where it appears among a forecast's drivers.
PATIENT_SUMMARY = ("patient summary at the origin: age, sex, latest level and trend of each forecast lab, "
                   "current daily doses")


@dataclass
class Attribution:
    """A graph node's contribution to a forecast (integrated gradients).

    ``score`` is in standard deviations of the lab across the training cohort (on the
    model's scale for the lab, e.g. log for a log-transformed one): positive pushes the
    forecast up. The patient node (``node_type`` ``patient``) is no record but the summary
    the encoder keeps of the whole history (:data:`PATIENT_SUMMARY`, dated at the origin).
    """

    node_id: str
    node_type: str
    score: float
    code: str | None = None
    time: str | None = None
    display: str | None = None


@dataclass
class Twin:
    """A patient's as-of records and graph features, bound to a fitted model ensemble."""

    store: GraphStore
    patient_id: str
    model: TwinEnsemble
    as_of: datetime
    records: PatientRecords
    extra: list[Node] = field(default_factory=list)

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, store: GraphStore, patient_id: str, model: str | Path | TwinEnsemble,
             as_of: datetime | None = None, device: str = "cpu") -> Twin:
        """Bind ``patient_id``'s graph as of ``as_of`` (default: their latest record) to a model."""
        ens = model if isinstance(model, TwinEnsemble) else TwinEnsemble.load(model, device)
        if as_of is not None:
            return cls(store, patient_id, ens, as_of, load_records(store, patient_id, as_of))
        latest = load_records(store, patient_id)  # one read; the origin is its latest record
        times = [n.time for n in latest.nodes if n.time is not None]
        if not times:
            raise TwinError(f"patient {patient_id!r} has no time-stamped records to forecast from")
        return cls(store, patient_id, ens, max(times), latest.cut(max(times)))

    def graph(self, *, images: bool = True, variants: bool = True) -> Batch:
        """The as-of graph features as a one-graph ``Batch`` (optionally without a modality)."""
        g = build_graph(self.records, self.as_of, self.model.spec, self.model.image_encoder)
        if not images or not variants:
            g = drop_modalities(g, images=not images, variants=not variants)
        return Batch.from_data_list([g])

    def current_plan(self) -> list[DoseAction]:
        """What the patient is on at the origin, continued (the default forecast plan)."""
        return actions_from_records(self.records, self.as_of, self.model.spec.vocab)

    @torch.no_grad()
    def z0(self, member: int = 0) -> torch.Tensor:
        """Posterior mean of the latent initial state ``[latent]`` (one ensemble member)."""
        m = self.model.members[member].eval()
        return m.encode(self.graph().to(self.model.device)).mu[0].cpu()

    # ------------------------------------------------------------------ forecasting
    def forecast(self, horizon_days: float = 365, n_samples: int = 32, step_days: int = 7,
                 plan: list[DoseAction] | None = None, seed: int = 0,
                 on_progress: Callable[[float, str], None] | None = None) -> Forecast:
        """Per-lab median and 5-95% interval every ``step_days`` up to ``horizon_days``, and the
        probability of each event kind by the horizon, under ``plan`` (default: current meds).

        ``on_progress(fraction, message)`` is called between the solve's stages (see
        :func:`twin.predict.predict`); it may raise to stop the forecast there."""
        if horizon_days < 1:
            raise TwinError(f"forecast horizon must be at least 1 day, got {horizon_days}")
        spec = self.model.spec
        doses = dose_schedule(plan if plan is not None else self.current_plan(), spec.vocab, spec.norms,
                              int(math.ceil(horizon_days)) + 1, strict=plan is not None)
        days = np.unique(np.append(np.arange(0, horizon_days + 1, max(step_days, 1)), horizon_days)).astype(np.float32)
        g, enc = self.model.encode(self.records)
        p = predict(self.model, [g], doses[None], torch.from_numpy(days), n_samples=n_samples, seed=seed,
                    encoded=enc, on_progress=on_progress)
        labs = {}
        for j, code in enumerate(spec.vocab.target_labs):
            labs[code] = LabForecast(code, spec.vocab.target_names.get(code, code), spec.vocab.target_units.get(code, ""),
                                     days.tolist(), p.median[0, :, j].tolist(), p.p05[0, :, j].tolist(),
                                     p.p95[0, :, j].tolist(), p.mean[0, :, j].tolist())
        risk = {k: float(p.risk[0, i]) for i, k in enumerate(spec.vocab.event_kinds)}
        return Forecast(self.patient_id, self.as_of, horizon_days, labs, risk, n_samples, len(self.model.members))

    # ------------------------------------------------------------------ assimilation
    def update(self, records: GraphBatch | list[Node], *, persist: bool = False) -> Twin:
        """Assimilate new records of this patient: the origin moves to the latest of them and
        the graph is re-encoded with the same model (no retraining). With ``persist`` the
        batch is also written to the store; otherwise it is kept in this twin only."""
        batch = records if isinstance(records, GraphBatch) else GraphBatch(nodes=list(records))
        own = [n for n in batch.nodes if n.patient_id == self.patient_id]
        foreign = [n.id for n in batch.nodes if n.patient_id not in (None, self.patient_id)]
        if foreign:
            raise TwinError(f"update for patient {self.patient_id!r} got records of other patients: {foreign[:3]}")
        if persist:
            self.store.write(batch)
        times = [n.time for n in own if n.time is not None]
        new_as_of = max([self.as_of, *times])
        if persist:
            self.extra = []
            self.records = load_records(self.store, self.patient_id, new_as_of)
        else:
            self.extra = [n for n in self.extra if n.id not in {m.id for m in own}] + own
            base = load_records(self.store, self.patient_id, new_as_of)
            ids = {n.id for n in self.extra}
            nodes = tuple(n for n in base.nodes if n.id not in ids) + tuple(self.extra)
            self.records = PatientRecords(self.patient_id, nodes, base.edges + tuple(batch.edges), new_as_of, base.genes)
        self.as_of = new_as_of
        return self

    # ------------------------------------------------------------------ explanation
    def explain(self, lab: str | None = None, horizon_days: int = 180, top_k: int = 10,
                steps: int = 24) -> list[Attribution]:
        """Graph nodes that contributed most to the forecast mean of ``lab`` at ``horizon_days``.

        Integrated gradients (Sundararajan et al., 2017) on every node's input embedding,
        from an all-zero baseline, averaged over ensemble members; returns the ``top_k`` nodes
        by absolute attribution (signed score: positive pushes the lab up).
        """
        vocab = self.model.spec.vocab
        code = lab or (vocab.target_labs[0] if vocab.target_labs else None)
        j = vocab.target(code)
        if j is None:
            raise TwinError(f"lab {code!r} is not a forecast target of this model (targets: {', '.join(vocab.target_labs)})")
        g = self.graph().to(self.model.device)
        doses = dose_schedule(self.current_plan(), vocab, self.model.spec.norms, horizon_days + 1, strict=False)[None]
        t_q = torch.tensor([float(horizon_days)], device=self.model.device)
        total: dict[str, torch.Tensor] = {}
        for m in self.model.members:
            m.eval()
            h0 = {t: x.detach() for t, x in m.encoder.embed(g).items()}
            grads = {t: torch.zeros_like(x) for t, x in h0.items()}
            for a in (np.arange(steps) + 0.5) / steps:
                scaled = {t: (x * float(a)).requires_grad_(True) for t, x in h0.items()}
                enc = m.encode(g, h0=scaled)
                z0 = enc.mu
                grid, states = m.solve_latent(enc, z0, doses.to(z0.device), float(horizon_days))
                st = interpolate_states(grid, states, t_q.view(1, 1))
                mean, _, _, _, _ = m.decode(enc, st, z0, cumulative_dose(doses.to(z0.device), t_q.view(1, 1)))
                y = mean[0, 0, j]
                gs = torch.autograd.grad(y, list(scaled.values()), allow_unused=True)
                for (t, _), gr in zip(scaled.items(), gs, strict=True):
                    if gr is not None:
                        grads[t] += gr / steps
            for t, x in h0.items():
                total[t] = total.get(t, torch.zeros(x.shape[0])) + (x * grads[t]).sum(-1).cpu() / len(self.model.members)
        by_id = {n.id: n for n in self.records.nodes}
        out: list[Attribution] = []
        for t, scores in total.items():
            ids = g[t].node_id[0] if g[t].node_id and isinstance(g[t].node_id[0], list) else g[t].node_id
            for nid, sc in zip(ids, scores.tolist(), strict=True):
                n = by_id.get(nid)
                if t == "patient":  # not a record: the encoder's summary of the whole history at the origin
                    out.append(Attribution(nid, t, float(sc), None, to_iso(self.as_of), PATIENT_SUMMARY))
                    continue
                out.append(Attribution(nid, t, float(sc), n.code if n else None, to_iso(n.time) if n and n.time else None,
                                       n.display if n else None))
        out.sort(key=lambda a: -abs(a.score))
        return out[:top_k]

    # ------------------------------------------------------------------ plotting
    def plot(self, path: str | Path, forecast: Forecast | None = None, history_days: int = 730) -> Path:
        """PNG of each target lab's recent history (points) and forecast (median + 5-95% band)."""
        fc = forecast or self.forecast()
        history: dict[str, list[tuple[float, float]]] = {}
        for n in self.records.nodes:
            if (n.type is NodeType.LAB and n.code in fc.labs and n.time is not None and n.value is not None
                    and days_between(n.time, self.as_of) <= history_days):
                history.setdefault(n.code, []).append((days_between(self.as_of, n.time), n.value))
        return plot_forecast(fc, history, path)
