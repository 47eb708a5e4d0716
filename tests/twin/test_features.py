"""Feature building: shapes, masks, as-of cuts (no leakage) and treatment inputs."""

from __future__ import annotations

import math
import random
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import TwinError
from graph.schema import NodeType
from graph.store.sqlite import SQLiteStore
from graph.timeutil import days_between
from twin.features import (
    DoseAction,
    FeatureSpec,
    actions_from_records,
    build_example,
    build_graph,
    change_origins,
    choose_origins,
    collate,
    dose_schedule,
    drop_modalities,
    edge_types,
    load_records,
    node_dims,
)
from twin.features.vocab import Normalisers, Vocabulary, build_vocabulary
from twin.spec import CohortSpec, Target, Treatment

EXTERNAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "external" / "synthea-fhir"


@pytest.fixture(scope="module")
def cohort(toy_store: SQLiteStore):
    recs = [load_records(toy_store, p) for p in toy_store.patient_ids()]
    vocab, norms = build_vocabulary(recs)
    return recs, FeatureSpec(vocab, norms)


def test_vocabulary_comes_from_data(cohort) -> None:
    _, spec = cohort
    assert spec.vocab.target_labs == ["N9", "T1", "T2"]
    assert spec.vocab.treatments == ["D1"]
    assert spec.vocab.genes == ["<unk>", "GX"]
    assert spec.vocab.event_kinds == ["hospitalisation"]
    assert spec.norms.dose_scale["D1"] == 1000.0
    again = Vocabulary.from_dict(spec.vocab.to_dict())
    assert again.target("T1") == spec.vocab.target("T1") and again.concepts == spec.vocab.concepts
    assert Normalisers.from_dict(spec.norms.to_dict()) == spec.norms


def test_change_origins_sit_just_before_therapy_changes(cohort) -> None:
    from graph.timeutil import days_between

    recs, spec = cohort
    seen = 0
    for rec in recs:
        valid = set(choose_origins(rec, spec.vocab, 10**6, random.Random(0)))
        changes = sorted({t for n in rec.nodes if n.type is NodeType.MEDICATION for t in (n.time, n.end) if t})
        got = change_origins(rec, spec.vocab, 10**6, random.Random(0), window_days=90)
        for t0 in got:
            assert t0 in valid
            assert any(0 < days_between(t0, tc) <= 90 for tc in changes)
            # the latest valid origin before that change: no valid origin between t0 and it
            tc = min(tc for tc in changes if days_between(t0, tc) > 0)
            assert not [t for t in valid if t0 < t < tc]
        seen += len(got)
        assert len(change_origins(rec, spec.vocab, 1, random.Random(0), window_days=90)) <= 1
        assert change_origins(rec, spec.vocab, 0, random.Random(0)) == []
    assert seen > 0, "the toy cohort has therapy changes with measurements before them"


def test_graph_shapes_and_anchor(cohort) -> None:
    recs, spec = cohort
    rec = recs[0]
    t0 = choose_origins(rec, spec.vocab, 1, random.Random(0))[0]
    g = build_graph(rec.cut(t0), t0, spec)
    dims = node_dims(spec)
    for t, d in dims.items():
        assert g[t].x.shape[1] == d
        assert g[t].x.shape[0] == len(g[t].node_id)
    assert set(g.edge_types) == set(edge_types())
    last_t1 = [n for n in rec.nodes if n.type is NodeType.LAB and n.code == "T1" and n.time <= t0][-1]
    j = spec.vocab.target("T1")
    assert g["patient"].anchor[0, j].item() == pytest.approx(spec.norms.lab("T1", last_t1.value), rel=1e-5)
    assert g["patient"].anchor_mask[0, j].item() == 1.0
    # level: the exp(-age / level_days)-weighted mean of every T1 value so far; n_obs its log-count
    sc = spec.vocab.cohort.scales
    past = [n for n in rec.nodes if n.type is NodeType.LAB and n.code == "T1" and n.time <= t0]
    w = np.array([math.exp(-days_between(n.time, t0) / sc.level_days) for n in past])
    v = np.array([spec.norms.lab("T1", n.value) for n in past])
    assert len(past) >= 2 and g["patient"].level[0, j].item() == pytest.approx(float((w * v).sum() / w.sum()), rel=1e-4)
    assert g["patient"].n_obs[0, j].item() == pytest.approx(math.log1p(len(past)), rel=1e-5)
    # trend: least-squares slope (per horizon) of the last trend_days of values, a patient feature
    n_t = spec.vocab.n_targets
    recent = [n for n in past if days_between(n.time, t0) <= sc.trend_days]
    x = np.array([-days_between(n.time, t0) / sc.horizon_days for n in recent])
    y = np.array([spec.norms.lab("T1", n.value) for n in recent])
    expect = (float(np.clip(np.polyfit(x, y, 1)[0], -3, 3))
              if len(x) >= 3 and np.ptp(x) * sc.horizon_days >= sc.trend_min_days else 0.0)
    assert expect != 0.0 and g["patient"].x[0, 4 + 5 * n_t + j].item() == pytest.approx(expect, rel=1e-4)
    # every lab node time encoding is at or before the origin (dt/365 <= 0)
    assert (g["lab"].x[:, 1] <= 0).all()


def test_builder_refuses_uncut_records(cohort) -> None:
    recs, spec = cohort
    t0 = choose_origins(recs[0], spec.vocab, 1, random.Random(0))[0]
    with pytest.raises(TwinError, match="as_of=t0"):
        build_graph(recs[0], t0, spec)


def test_store_as_of_equals_in_memory_cut(toy_store: SQLiteStore, cohort) -> None:
    recs, spec = cohort
    rec = recs[3]
    t0 = choose_origins(rec, spec.vocab, 1, random.Random(1))[0]
    from_store = load_records(toy_store, rec.patient_id, as_of=t0)
    cut = rec.cut(t0)
    assert sorted(n.id for n in from_store.nodes) == sorted(n.id for n in cut.nodes)
    a, b = build_graph(from_store, t0, spec), build_graph(cut, t0, spec)
    for t in node_dims(spec):
        assert torch.equal(a[t].x, b[t].x)


def test_targets_and_collate_masks(cohort) -> None:
    recs, spec = cohort
    rng = random.Random(0)
    exs = [build_example(r, t0, spec, 365) for r in recs[:6] for t0 in choose_origins(r, spec.vocab, 2, rng)]
    for ex in exs:
        assert ((ex.targets.t > 0) & (ex.targets.t <= 365)).all()
        assert ex.doses.shape == (366, spec.vocab.n_treatments)
    b = collate(exs)
    assert b.obs_t.shape == b.obs_mask.shape == b.obs_y.shape
    assert b.obs_mask.sum().item() == sum(len(e.targets.t) for e in exs)
    assert b.doses.shape == (len(exs), 366, 1) and b.event_time.shape == (len(exs), 1)
    for i, e in enumerate(exs):  # padding is masked out, real observations are not
        assert b.obs_mask[i, : len(e.targets.t)].all() and not b.obs_mask[i, len(e.targets.t):].any()


def test_dose_schedule_known_answer() -> None:
    vocab = Vocabulary(cohort=CohortSpec(targets=(Target("X"),), treatments=(Treatment("A"), Treatment("B"))))
    norms = Normalisers(dose_scale={"A": 1000.0, "B": 10.0})
    u = dose_schedule([DoseAction("A", 500, start_day=10, stop_day=20, per_day=2), DoseAction("B", 5, start_day=-3)],
                      vocab, norms, 30)
    assert u.shape == (30, 2)
    assert torch.all(u[10:20, 0] == 1.0) and u[:10, 0].sum() == 0 and u[20:, 0].sum() == 0
    assert torch.all(u[:, 1] == 0.5)
    past = dose_schedule([DoseAction("B", 5, start_day=-3)], vocab, norms, 5, first_day=-5)
    assert past[:, 1].tolist() == [0.0, 0.0, 0.5, 0.5, 0.5]
    with pytest.raises(TwinError, match="not a treatment input"):
        dose_schedule([DoseAction("Z", 1.0)], vocab, norms, 5)
    assert dose_schedule([DoseAction("Z", 1.0)], vocab, norms, 5, strict=False).sum() == 0


def test_current_prescription_continues_and_new_order_supersedes(cohort) -> None:
    recs, spec = cohort
    rec = next(r for r in recs if any(n.type is NodeType.MEDICATION for n in r.nodes))
    med = next(n for n in rec.nodes if n.type is NodeType.MEDICATION)
    after = med.time + timedelta(days=30)
    acts = actions_from_records(rec.cut(after), after, spec.vocab)
    assert len(acts) == 1 and acts[0].stop_day is None and acts[0].start_day == pytest.approx(-30.0)
    u = dose_schedule(acts, spec.vocab, spec.norms, 10)
    assert torch.all(u == 1.0)


def test_drop_modalities(cohort) -> None:
    recs, spec = cohort
    rec = next(r for r in recs if any(n.type is NodeType.IMAGE for n in r.nodes)
               and any(n.type is NodeType.VARIANT for n in r.nodes))
    t0 = max(n.time for n in rec.nodes if n.time is not None)
    g = build_graph(rec.cut(t0), t0, spec)
    assert g["image"].num_nodes == 1 and g["variant"].num_nodes == 1
    d = drop_modalities(g, images=True, variants=True)
    assert d["image"].num_nodes == 0 and d["variant"].num_nodes == 0
    assert d["patient", "has", "image"].edge_index.shape == (2, 0)
    assert g["image"].num_nodes == 1  # the input is not modified


@pytest.mark.skipif(not EXTERNAL.is_dir(), reason="shared external data not present")
def test_external_synthea_bundle_builds_without_code_changes(tmp_path: Path) -> None:
    from graph.ingest import ingest_paths

    store = SQLiteStore(tmp_path / "ext.db")
    files = sorted(EXTERNAL.glob("*.json"))[:3]
    ingest_paths(store, files)
    recs = [load_records(store, p) for p in store.patient_ids()]
    vocab, norms = build_vocabulary(recs, min_target_patients=1)
    spec = FeatureSpec(vocab, norms)
    assert vocab.target_labs
    rng = random.Random(0)
    n = 0
    for r in recs:
        for t0 in choose_origins(r, vocab, 2, rng):
            ex = build_example(r, t0, spec, 365)
            assert ex.graph["patient"].x.shape[1] == node_dims(spec)["patient"]
            n += 1
    assert n > 0
    assert np.isfinite(collate([build_example(recs[0], choose_origins(recs[0], vocab, 1, rng)[0], spec, 365)]).obs_y.numpy()).all()
