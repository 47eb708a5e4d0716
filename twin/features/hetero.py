"""The as-of patient graph as a PyG ``HeteroData`` with typed node features.

Every graph has the same node and edge types (possibly with zero nodes), so graphs of
patients with and without images or variants batch together. Per node type:

======================  ==============================================================
``patient``             age, sex, log node count, per target: last standardised value,
                        observed flag, recency, level, log count, trend; current daily
                        dose per treatment; per (target, treatment) the observed
                        response (:func:`response_slopes`)
``lab``                 standardised value, time encoding, is-target flag; concept id
``condition``           time encoding (onset), active flag; concept id
``medication``          time encoding (start), normalised daily dose, active; concept id
``procedure``           time encoding, normalised dose (treatment inputs); concept id
``encounter``           time encoding, inpatient flag, log duration; concept id
``image``               time encoding, image embedding; concept id
``variant``             zygosity, pathogenicity, 1; concept id and gene id
======================  ==============================================================

Time encodings are relative to the origin ``t0`` and every window follows the cohort's time
scales (:class:`twin.spec.TimeScales`: a one-year horizon gives the chronic-disease windows,
daily data short ones); nodes after ``t0`` never appear because the builder only accepts
records already cut at ``t0``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import torch
from torch_geometric.data import HeteroData

from core.errors import TwinError
from graph.schema import Node, NodeType, Rel
from graph.timeutil import days_between
from twin.features.records import PatientRecords, age_years, daily_dose, gene_symbol, sex_of
from twin.features.treatment import actions_from_records, dose_schedule
from twin.features.vocab import Normalisers, Vocabulary, concept_key, event_kind_of

__all__ = ["EVENT_NODE_TYPES", "FeatureSpec", "build_graph", "drop_modalities", "edge_types", "history_length",
           "node_dims", "response_slopes", "time_encoding"]

#: HeteroData node type of each graph node type the model reads (the patient is its own type).
#: Derived from the schema's names (lower case: these strings are keys of saved model weights).
EVENT_NODE_TYPES: dict[NodeType, str] = {t: t.value.lower() for t in (
    NodeType.LAB, NodeType.CONDITION, NodeType.MEDICATION, NodeType.PROCEDURE, NodeType.ENCOUNTER, NodeType.IMAGE,
    NodeType.VARIANT)}
TIME_DIMS = 4
ImageEmbedder = Callable[[Node], "np.ndarray | None"]


@dataclass
class FeatureSpec:
    """What the builder needs besides the records: vocabulary, normalisers, sizes, caps."""

    vocab: Vocabulary
    norms: Normalisers
    image_dim: int = 16  # ImageEncoder().dim: an 8-number autoencoder code + 8 first-order statistics
    max_per_type: int = 48
    max_labs: int = 160


def history_length(vocab: Vocabulary) -> int:
    """Days of dose history before the origin a graph carries (``data["patient"].dose_hist``)."""
    return math.ceil(vocab.cohort.scales.history_days)


def node_dims(spec: FeatureSpec) -> dict[str, int]:
    """Feature width of each HeteroData node type."""
    n_t, n_d = spec.vocab.n_targets, spec.vocab.n_treatments
    return {
        "patient": 4 + 6 * n_t + n_d + n_t * n_d,
        "lab": 2 + TIME_DIMS,
        "condition": 1 + TIME_DIMS,
        "medication": 2 + TIME_DIMS,
        "procedure": 1 + TIME_DIMS,
        "encounter": 2 + TIME_DIMS,
        "image": TIME_DIMS + spec.image_dim,
        "variant": 3,
    }


def edge_types() -> list[tuple[str, str, str]]:
    """Every HeteroData edge type: patient<->events, lab temporal chains, medication<->condition."""
    out: list[tuple[str, str, str]] = []
    for t in EVENT_NODE_TYPES.values():
        out += [("patient", "has", t), (t, "of", "patient")]
    out += [("lab", "next", "lab"), ("lab", "prev", "lab"),
            ("medication", "treats", "condition"), ("condition", "treated_by", "medication")]
    return out


def time_encoding(dt_days: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """``[n, 4]`` encoding of signed days relative to the origin: linear, log, two recency
    kernels; ``scale`` stretches it to the cohort's time scales (1: windows of a year)."""
    a = np.abs(dt_days) / scale
    return np.stack([dt_days / scale / 365.0, np.log1p(a) / 6.0, np.exp(-a / 30.0), np.exp(-a / 365.0)],
                    axis=1).astype(np.float32)


def _recent(nodes: list[Node], k: int) -> list[Node]:
    return nodes[-k:] if len(nodes) > k else nodes


def _trends(labs: list[Node], t0: datetime, vocab: Vocabulary, norms: Normalisers) -> np.ndarray:
    """Least-squares slope of each target (standardised units per horizon) over its values of
    the last ``trend_days``; 0 with fewer than 3 values or under ``trend_min_days`` between
    them. Clipped to +-3: a feature for the encoder, which learns how far to trust it."""
    sc = vocab.cohort.scales
    pts: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for n in labs:
        j = vocab.target(n.code)
        age_d = days_between(n.time, t0)  # type: ignore[arg-type]
        if j is not None and age_d <= sc.trend_days:
            pts[j].append((-age_d / sc.horizon_days, norms.lab(n.code or "", float(n.value))))  # type: ignore[arg-type]
    out = np.zeros(vocab.n_targets, np.float32)
    for j, xy in pts.items():
        x, y = np.array(xy).T
        if len(x) >= 3 and (x.max() - x.min()) * sc.horizon_days >= sc.trend_min_days:
            dx = x - x.mean()  # the least-squares slope in closed form (np.polyfit's, 20x faster)
            out[j] = float(np.clip(dx @ (y - y.mean()) / (dx @ dx), -3.0, 3.0))
    return out


def response_slopes(labs: list[Node], daily: np.ndarray, t0: datetime, vocab: Vocabulary, norms: Normalisers,
                    ridge: float = 1.0) -> np.ndarray:
    """How each target moved with each treatment in this patient's own history, ``[L * D]``.

    For each target, the changes of its standardised value between consecutive observations
    are regressed (ridge ``ridge``) on the elapsed time and on each treatment's dose given in
    between (``daily`` ``[W, D]``: normalised daily doses on the ``W`` days before the origin).
    The slopes, clipped to +-3, tell the encoder how this patient responded before (a tumour
    that shrank after radiotherapy, a lab that fell after a drug was started).
    """
    n_t, n_d = vocab.n_targets, vocab.n_treatments
    out = np.zeros((n_t, n_d), np.float32)
    w = daily.shape[0]
    if not n_d or not w:
        return out.reshape(-1)
    cum = np.concatenate([[np.zeros(n_d)], np.cumsum(daily, axis=0)])  # dose before day index
    per: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for n in labs:
        j = vocab.target(n.code)
        if j is not None:
            per[j].append((-days_between(n.time, t0), norms.lab(n.code or "", float(n.value))))  # type: ignore[arg-type]
    for j, pts in per.items():
        if len(pts) < 3:
            continue
        t, y = np.array(sorted(pts)).T
        ix = np.clip(np.floor(t + 1e-6).astype(int) + w, 0, w)  # doses of the observation's day come after it
        x_dose = cum[ix[1:]] - cum[ix[:-1]]  # [n-1, D] dose given between consecutive observations
        x = np.concatenate([np.diff(t)[:, None] / vocab.cohort.scales.horizon_days, x_dose], axis=1)
        given = x_dose.sum(axis=0) > 0
        if not given.any():
            continue
        a = x.T @ x + ridge * np.eye(1 + n_d)
        beta = np.linalg.solve(a, x.T @ np.diff(y))
        out[j] = np.where(given, np.clip(beta[1:], -3.0, 3.0), 0.0)
    return out.reshape(-1)


def build_graph(
    records: PatientRecords,
    t0: datetime,
    spec: FeatureSpec,
    image_embed: ImageEmbedder | None = None,
) -> HeteroData:
    """HeteroData of ``records`` (which must be cut at or before ``t0``) seen from origin ``t0``.

    Every node type carries ``node_id`` (graph node ids, for explanations). Extra attributes on
    ``data["patient"]``: ``anchor``/``anchor_mask`` ``[1, n_targets]``
    (last standardised value of each target lab and whether one exists), ``level``
    ``[1, n_targets]`` (the recency-weighted mean of the lab's values, weights
    ``exp(-age / level_days)``: a less noisy level than the last value), ``n_obs``
    ``[1, n_targets]`` (``log1p`` of the number of values), ``dose0`` ``[1, n_treatments]``
    (current daily doses) and ``dose_hist`` ``[1, H, n_treatments]`` (normalised daily doses
    on the ``H`` = :func:`history_length` days before the origin, oldest first). Raises :class:`TwinError` for records not cut at t0.
    """
    if records.as_of is None or records.as_of > t0:
        raise TwinError(f"features for patient {records.patient_id} need records cut at the origin {t0} "
                        f"(got records as of {records.as_of}); read them with as_of=t0")
    vocab, norms = spec.vocab, spec.norms
    sc = vocab.cohort.scales
    by_type: dict[str, list[Node]] = defaultdict(list)
    for n in records.nodes:
        t = EVENT_NODE_TYPES.get(n.type)
        if t is not None and (n.time is not None or n.type is NodeType.VARIANT):
            by_type[t].append(n)
    # labs: the most recent ones, at most max_labs, every target code kept
    labs = [n for n in by_type["lab"] if n.value is not None and math.isfinite(n.value)]
    by_type["lab"] = _recent(labs, spec.max_labs)
    for t in ("condition", "medication", "procedure", "encounter", "image", "variant"):
        by_type[t] = _recent(by_type[t], spec.max_per_type)

    data = HeteroData()
    dims = node_dims(spec)
    patient = records.patient
    age = age_years(patient, t0) if patient is not None else None
    sex = sex_of(patient) if patient is not None else None

    # anchors: last value of each target lab before t0
    n_t = vocab.n_targets
    anchor = np.zeros(n_t, np.float32)
    amask = np.zeros(n_t, np.float32)
    recency = np.zeros(n_t, np.float32)
    wsum, wval, count = np.zeros(n_t), np.zeros(n_t), np.zeros(n_t, np.float32)
    for n in labs:
        j = vocab.target(n.code)
        if j is not None:
            v = norms.lab(n.code or "", float(n.value))  # type: ignore[arg-type]
            age_d = max(days_between(n.time, t0), 0.0)  # type: ignore[arg-type]
            anchor[j] = v
            amask[j] = 1.0
            recency[j] = math.exp(-age_d / sc.recency_days)
            w = math.exp(-age_d / sc.level_days)
            wsum[j] += w
            wval[j] += w * v
            count[j] += 1.0
    level = np.divide(wval, wsum, out=np.zeros(n_t), where=wsum > 0).astype(np.float32)
    n_obs = np.log1p(count).astype(np.float32)
    trend = _trends(labs, t0, vocab, norms)
    # daily doses of the treatments: the past (response slopes, exposure at the origin) and day 0
    n_hist, n_past = history_length(vocab), math.ceil(max(sc.trend_days, sc.history_days))
    grid = dose_schedule(actions_from_records(records, t0, vocab), vocab, norms, n_past + 1, strict=False,
                         first_day=-n_past).numpy()
    dose0, past = grid[-1], grid[:-1]
    responses = response_slopes(labs, past, t0, vocab, norms)
    px = np.concatenate([
        np.array([((age if age is not None else norms.age_mean) - norms.age_mean) / norms.age_std,
                  float(sex == "male"), float(sex == "female"), math.log1p(len(records.nodes)) / 5.0], np.float32),
        anchor, amask, recency, level, n_obs, trend, dose0, responses,
    ])
    data["patient"].x = torch.from_numpy(px).view(1, -1)
    data["patient"].anchor = torch.from_numpy(anchor).view(1, -1)
    data["patient"].anchor_mask = torch.from_numpy(amask).view(1, -1)
    data["patient"].level = torch.from_numpy(level).view(1, -1)
    data["patient"].n_obs = torch.from_numpy(n_obs).view(1, -1)
    data["patient"].dose0 = torch.from_numpy(dose0.astype(np.float32)).view(1, -1)
    data["patient"].dose_hist = torch.from_numpy(np.ascontiguousarray(past[-n_hist:], np.float32)).unsqueeze(0)
    data["patient"].node_id = [patient.id if patient is not None else f"Patient/{records.patient_id}"]

    for t, nodes in ((t, by_type[t]) for t in EVENT_NODE_TYPES.values()):
        dt = np.array([days_between(t0, n.time) if n.time is not None else 0.0 for n in nodes], np.float64)
        te = time_encoding(dt, sc.scale) if nodes else np.zeros((0, TIME_DIMS), np.float32)
        if t == "lab":
            extra = np.array([[norms.lab(n.code or "", float(n.value)), float(vocab.target(n.code) is not None)]  # type: ignore[arg-type]
                              for n in nodes], np.float32).reshape(-1, 2)
            x = np.concatenate([extra[:, :1], te, extra[:, 1:]], axis=1)
        elif t == "condition":
            x = np.concatenate([te, np.array([[float(n.end is None)] for n in nodes], np.float32).reshape(-1, 1)], 1)
        elif t == "medication":
            extra = np.array([[norms.dose(n.code or "", daily_dose(n)) if vocab.treatment(n.code) is not None
                               else math.log1p(daily_dose(n)) / 5.0, float(n.end is None)] for n in nodes],
                             np.float32).reshape(-1, 2)
            x = np.concatenate([te, extra], 1)
        elif t == "procedure":
            dose = np.array([[norms.dose(n.code or "", daily_dose(n)) if vocab.treatment(n.code) is not None else 0.0]
                             for n in nodes], np.float32).reshape(-1, 1)
            x = np.concatenate([te, dose], 1)
        elif t == "encounter":
            extra = np.array([[float(event_kind_of(n) == "hospitalisation"),
                               math.log1p(max(days_between(n.time, n.end), 0.0)) if n.end and n.time else 0.0]
                              for n in nodes], np.float32).reshape(-1, 2)
            x = np.concatenate([te, extra], 1)
        elif t == "image":
            embs = []
            for n in nodes:
                e = image_embed(n) if image_embed is not None else None
                embs.append(np.zeros(spec.image_dim, np.float32) if e is None else np.asarray(e, np.float32))
            emb = np.stack(embs) if embs else np.zeros((0, spec.image_dim), np.float32)
            x = np.concatenate([te, emb], 1)
        else:  # variant
            x = np.array([[_zygosity(n), _pathogenic(n), 1.0] for n in nodes], np.float32).reshape(-1, 3)
            data[t].gid = torch.tensor([vocab.gene(gene_symbol(n, records.genes)) for n in nodes], dtype=torch.long)
        assert x.shape[1] == dims[t], (t, x.shape, dims[t])
        data[t].x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        data[t].cid = torch.tensor([vocab.concept(concept_key(n)) for n in nodes], dtype=torch.long)
        data[t].num_nodes = len(nodes)
        data[t].node_id = [n.id for n in nodes]
    if "gid" not in data["variant"]:
        data["variant"].gid = torch.zeros(0, dtype=torch.long)

    idx = {t: {n.id: i for i, n in enumerate(by_type[t])} for t in EVENT_NODE_TYPES.values()}
    for t in EVENT_NODE_TYPES.values():
        n_nodes = len(by_type[t])
        zeros = torch.zeros(n_nodes, dtype=torch.long)
        ar = torch.arange(n_nodes, dtype=torch.long)
        data["patient", "has", t].edge_index = torch.stack([zeros, ar])
        data[t, "of", "patient"].edge_index = torch.stack([ar, zeros])
    # temporal chains of labs of the same code
    last: dict[str, int] = {}
    chain: list[tuple[int, int]] = []
    for i, n in enumerate(by_type["lab"]):
        if n.code in last:
            chain.append((last[n.code], i))
        last[n.code or ""] = i
    ch = torch.tensor(chain, dtype=torch.long).view(-1, 2).t()
    data["lab", "next", "lab"].edge_index = ch
    data["lab", "prev", "lab"].edge_index = ch.flip(0)
    treats = [(idx["medication"][e.src], idx["condition"][e.dst]) for e in records.edges
              if e.rel is Rel.TREATS and e.src in idx["medication"] and e.dst in idx["condition"]]
    tr = torch.tensor(treats, dtype=torch.long).view(-1, 2).t()
    data["medication", "treats", "condition"].edge_index = tr
    data["condition", "treated_by", "medication"].edge_index = tr.flip(0)
    return data


def _zygosity(n: Node) -> float:
    z = str(n.props.get("zygosity", "")).lower()
    return 1.0 if z.startswith("hom") else 0.5 if z.startswith("het") else 0.75


def _pathogenic(n: Node) -> float:
    s = str(n.props.get("significance", n.props.get("clinical_significance", ""))).lower()
    if "benign" in s:
        return 0.0
    return 1.0 if "pathogenic" in s or "risk" in s else 0.5


def drop_modalities(data: HeteroData, *, images: bool = False, variants: bool = False) -> HeteroData:
    """A copy of ``data`` without its image and/or variant nodes (and their edges)."""
    out = data.clone()
    for t, drop in (("image", images), ("variant", variants)):
        if not drop:
            continue
        store = out[t]
        store.x = store.x[:0]
        store.cid = store.cid[:0]
        if "gid" in store:
            store.gid = store.gid[:0]
        store.num_nodes = 0
        store.node_id = []
        empty = torch.zeros(2, 0, dtype=torch.long)
        out["patient", "has", t].edge_index = empty
        out[t, "of", "patient"].edge_index = empty.clone()
    return out
