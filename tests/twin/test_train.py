"""Training: overfitting a tiny cohort, determinism, checkpoints, reports, config errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import TwinError
from graph.store.sqlite import SQLiteStore
from twin.baselines import lab_history, last_value
from twin.features import FeatureSpec, load_records
from twin.model.checkpoint import TwinEnsemble
from twin.training import TrainConfig, build_examples, evaluate_loss, train


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="val_fraction"):
        TrainConfig(val_fraction=1.0)
    with pytest.raises(ValueError, match="treatment_lr_mult"):
        TrainConfig(treatment_eps=0.0)


def test_tiny_cohort_is_overfit_well_below_last_value(toy_store: SQLiteStore, tmp_path: Path) -> None:
    ids = toy_store.patient_ids()[:8]
    cfg = TrainConfig(epochs=80, members=1, val_fraction=0.0, patience=80, lr=5e-3, progress=False, image_epochs=2,
                      kl_weight=1e-3, drop_image_p=0.0, drop_variant_p=0.0)
    report = train(toy_store, cfg, tmp_path / "tiny.pt", patient_ids=ids)
    ens = TwinEnsemble.load(tmp_path / "tiny.pt")
    recs = [load_records(toy_store, p) for p in ids]
    exs = build_examples(recs, ens.spec, cfg.origins_per_patient, cfg.seed, ens.image_encoder,
                          cfg.change_origins_per_patient)
    assert len(exs) == report.n_train_examples
    model_mse = evaluate_loss(ens.members[0], exs, cfg, torch.device("cpu"))["lab_mse"]
    # the last-value baseline's squared error on the very same observations (standardised units)
    se, n = 0.0, 0
    by_id = {r.patient_id: r for r in recs}
    for ex in exs:
        hist = lab_history(by_id[ex.patient_id].cut(ex.t0), ex.t0, ens.spec.vocab, ens.spec.norms)
        pred = last_value(hist, ex.targets.t)
        se += float(np.sum((pred[np.arange(len(ex.targets.t)), ex.targets.lab] - ex.targets.y) ** 2))
        n += len(ex.targets.t)
    lvcf_mse = se / n
    history = report.members[0]["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.5
    assert model_mse < 0.5 * lvcf_mse, (model_mse, lvcf_mse)


def test_training_is_seeded_and_checkpoint_is_complete(toy_store: SQLiteStore, tmp_path: Path) -> None:
    ids = toy_store.patient_ids()[:10]
    cfg = TrainConfig(epochs=2, members=2, progress=False, image_epochs=2)
    steps: list[tuple[float, str]] = []
    r1 = train(toy_store, cfg, tmp_path / "a.pt", patient_ids=ids, on_progress=lambda f, m: steps.append((f, m)))
    r2 = train(toy_store, cfg, tmp_path / "b", patient_ids=ids)
    for m1, m2 in zip(r1.members, r2.members, strict=True):
        assert m1["best_val_loss"] == pytest.approx(m2["best_val_loss"], rel=1e-4)
    a, b = TwinEnsemble.load(tmp_path / "a.pt"), TwinEnsemble.load(tmp_path / "b" / "model.pt")
    assert len(a.members) == 2
    # same seed, same model: compared by what it computes, not parameter by parameter. CPU BLAS
    # kernels may reorder sums by memory alignment (~1e-8 per step), and Adam turns a gradient that
    # is only that noise (a treatment parameter with no dosed patient in the batch) into a full step
    # of either sign, so such a parameter can differ by 2 lr while every output agrees.
    recs = [load_records(toy_store, p) for p in ids]
    exs = build_examples(recs, a.spec, cfg.origins_per_patient, cfg.seed, a.image_encoder,
                         cfg.change_origins_per_patient)
    for ma, mb in zip(a.members, b.members, strict=True):
        la, lb = (evaluate_loss(m, exs, cfg, torch.device("cpu")) for m in (ma, mb))
        assert la.keys() == lb.keys()
        for k in la:
            assert la[k] == pytest.approx(lb[k], rel=1e-3, abs=1e-4), k
        same_shapes = {k: v.shape for k, v in ma.state_dict().items()} == {k: v.shape for k, v in mb.state_dict().items()}
        assert same_shapes
    assert not torch.equal(a.members[0].state_dict()["decoder.net.0.weight"], a.members[1].state_dict()["decoder.net.0.weight"])
    assert a.spec.vocab.to_dict() == b.spec.vocab.to_dict()
    assert a.train_config["epochs"] == 2 and a.model_config.latent > 0
    report = json.loads((tmp_path / "a.report.json").read_text())
    assert report["n_train_patients"] + report["n_val_patients"] == 10
    assert report["cohort_spec"] == r1.cohort_spec == a.cohort.to_dict()  # the spec is saved and reloaded
    assert [t["code"] for t in report["cohort_spec"]["targets"]] == a.spec.vocab.target_labs
    assert not list(tmp_path.glob(".*.tmp")), "no temporary checkpoint files are left behind"
    # progress: monotone from 0 to 1, one report per epoch of each member, no patient ids in messages
    fracs = [f for f, _ in steps]
    assert fracs[0] == 0.0 and fracs[-1] == 1.0 and fracs == sorted(fracs)
    assert sum("epoch" in m for _, m in steps) == sum(r["epochs_run"] for r in r1.members)
    assert not any(pid in m for _, m in steps for pid in ids)


def test_unusable_inputs_raise_twin_errors(toy_store: SQLiteStore, tmp_path: Path) -> None:
    with pytest.raises(TwinError, match="at least 2 patients"):
        train(toy_store, TrainConfig(progress=False), tmp_path / "x.pt", patient_ids=["toy0"])
    bad = tmp_path / "bad.pt"
    torch.save({"format": "something-else"}, bad)
    with pytest.raises(TwinError, match="expected format"):
        TwinEnsemble.load(bad)
    with pytest.raises(TwinError, match="does not exist"):
        TwinEnsemble.load(tmp_path / "missing.pt")
    if not torch.cuda.is_available():
        with pytest.raises(TwinError, match="CUDA is not available"):
            train(toy_store, TrainConfig(device="cuda", progress=False), tmp_path / "c.pt")


def test_examples_only_use_patients_own_records(toy_store: SQLiteStore) -> None:
    recs = [load_records(toy_store, p) for p in toy_store.patient_ids()[:4]]
    from twin.features.vocab import build_vocabulary

    vocab, norms = build_vocabulary(recs)
    exs = build_examples(recs, FeatureSpec(vocab, norms), 3, seed=0)
    assert exs and all(ex.graph["patient"].node_id == [f"Patient/{ex.patient_id}"] for ex in exs)
