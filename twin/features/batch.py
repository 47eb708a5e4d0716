"""Training/eval examples (graph at an origin + future labels + doses) and their collation."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import torch
from torch_geometric.data import Batch, HeteroData

from twin.features.hetero import FeatureSpec, ImageEmbedder, build_graph, drop_modalities
from twin.features.records import PatientRecords
from twin.features.targets import Targets, build_targets
from twin.features.treatment import actions_from_records, dose_schedule

__all__ = ["Example", "ExampleBatch", "build_example", "collate"]


@dataclass
class Example:
    """One patient seen from one origin: its as-of graph, the actual doses after the origin
    (``[horizon+1, n_treatments]``), and what happened (labels)."""

    patient_id: str
    t0: datetime
    graph: HeteroData
    doses: torch.Tensor
    targets: Targets


@dataclass
class ExampleBatch:
    """Collated examples: a PyG ``Batch`` of B graphs, doses ``[B, T, D]``, padded observations
    ``obs_t/obs_lab/obs_y/obs_mask`` ``[B, M]`` and events ``event_time/event_flag`` ``[B, K]``."""

    graphs: Batch
    doses: torch.Tensor
    obs_t: torch.Tensor
    obs_lab: torch.Tensor
    obs_y: torch.Tensor
    obs_mask: torch.Tensor
    event_time: torch.Tensor
    event_flag: torch.Tensor

    def to(self, device: torch.device | str) -> ExampleBatch:
        return ExampleBatch(*(getattr(self, f).to(device) for f in (
            "graphs", "doses", "obs_t", "obs_lab", "obs_y", "obs_mask", "event_time", "event_flag")))

    @property
    def size(self) -> int:
        return int(self.doses.shape[0])


def build_example(full: PatientRecords, t0: datetime, spec: FeatureSpec, horizon_days: float,
                  image_embed: ImageEmbedder | None = None) -> Example:
    """Example of origin ``t0`` from a patient's full records: the graph sees ``full.cut(t0)``
    only; doses and labels come from the full records."""
    graph = build_graph(full.cut(t0), t0, spec, image_embed)
    doses = dose_schedule(actions_from_records(full, t0, spec.vocab), spec.vocab, spec.norms,
                          math.ceil(horizon_days) + 1, strict=False)
    return Example(full.patient_id, t0, graph, doses, build_targets(full, t0, spec.vocab, spec.norms, horizon_days))


def collate(examples: list[Example], *, drop_image_p: float = 0.0, drop_variant_p: float = 0.0,
            rng: random.Random | None = None) -> ExampleBatch:
    """Batch examples; with probabilities ``drop_*_p`` remove a graph's images/variants
    (modality dropout, drawn from ``rng``)."""
    graphs = []
    for ex in examples:
        g = ex.graph
        if rng is not None and (drop_image_p > 0 or drop_variant_p > 0):
            di, dv = rng.random() < drop_image_p, rng.random() < drop_variant_p
            if di or dv:
                g = drop_modalities(g, images=di, variants=dv)
        graphs.append(g)
    b = len(examples)
    m = max([len(ex.targets.t) for ex in examples] + [1])
    k = len(examples[0].targets.event_time) if examples else 0
    obs_t = np.zeros((b, m), np.float32)
    obs_lab = np.zeros((b, m), np.int64)
    obs_y = np.zeros((b, m), np.float32)
    obs_mask = np.zeros((b, m), bool)
    for i, ex in enumerate(examples):
        n = len(ex.targets.t)
        obs_t[i, :n], obs_lab[i, :n], obs_y[i, :n], obs_mask[i, :n] = ex.targets.t, ex.targets.lab, ex.targets.y, True
    return ExampleBatch(
        graphs=Batch.from_data_list(graphs),
        doses=torch.stack([ex.doses for ex in examples]),
        obs_t=torch.from_numpy(obs_t), obs_lab=torch.from_numpy(obs_lab), obs_y=torch.from_numpy(obs_y),
        obs_mask=torch.from_numpy(obs_mask),
        event_time=torch.from_numpy(np.stack([ex.targets.event_time for ex in examples]).reshape(b, k)),
        event_flag=torch.from_numpy(np.stack([ex.targets.event_flag for ex in examples]).reshape(b, k)),
    )
