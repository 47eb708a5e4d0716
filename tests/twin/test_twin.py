"""The Twin object and the CLI: forecast, update (assimilation), explain, plot, reload."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from core.errors import TwinError
from graph.schema import Node, NodeType
from graph.store.sqlite import SQLiteStore
from twin.features import DoseAction
from twin.model.checkpoint import TwinEnsemble
from twin.twin import Twin


def test_forecast_bands_and_risk(toy_store: SQLiteStore, toy_model: Path) -> None:
    tw = Twin.load(toy_store, "toy4", toy_model)
    fc = tw.forecast(horizon_days=180, n_samples=8)
    assert set(fc.labs) == {"N9", "T1", "T2"} and fc.n_members == 2
    for lf in fc.labs.values():
        assert lf.days[0] == 0 and lf.days[-1] == 180 and len(lf.median) == len(lf.days)
        assert all(a <= m <= b for a, m, b in zip(lf.p05, lf.median, lf.p95, strict=True))
    assert 0.0 <= fc.event_risk["hospitalisation"] <= 1.0
    json.dumps(fc.to_dict())
    # the same twin under a different plan gives a different forecast, an unknown drug is refused
    other = tw.forecast(horizon_days=180, n_samples=8, plan=[DoseAction("D1", 3000.0)])
    assert other.labs["T1"].mean != fc.labs["T1"].mean
    with pytest.raises(TwinError, match="not a treatment input"):
        tw.forecast(plan=[DoseAction("NOPE", 1.0)])


def test_checkpoint_reload_gives_identical_forecasts(toy_store: SQLiteStore, toy_model: Path, tmp_path: Path) -> None:
    ens = TwinEnsemble.load(toy_model)
    copy = ens.save(tmp_path / "copy.pt")
    a = Twin.load(toy_store, "toy7", ens).forecast(horizon_days=90, n_samples=4, seed=3)
    b = Twin.load(toy_store, "toy7", copy).forecast(horizon_days=90, n_samples=4, seed=3)
    assert a.to_dict() == b.to_dict()


def test_update_reencodes_without_touching_the_store(toy_store: SQLiteStore, toy_model: Path) -> None:
    tw = Twin.load(toy_store, "toy2", toy_model)
    before_z, before_origin = tw.z0(), tw.as_of
    n_before = toy_store.counts().total_nodes
    new = Node(id="Observation/toy2-update", type=NodeType.LAB, patient_id="toy2", time=tw.as_of + timedelta(days=20),
               code="T1", system="urn:test", value=12.5, unit="1")
    tw.update([new])
    assert tw.as_of == new.time > before_origin
    assert not (tw.z0() == before_z).all()
    assert toy_store.counts().total_nodes == n_before
    with pytest.raises(TwinError, match="other patients"):
        tw.update([Node(id="Observation/x", type=NodeType.LAB, patient_id="toy3", code="T1", value=1.0)])


def test_explain_and_plot(toy_store: SQLiteStore, toy_model: Path, tmp_path: Path) -> None:
    tw = Twin.load(toy_store, "toy1", toy_model)
    attributions = tw.explain("T1", horizon_days=90, top_k=5, steps=8)
    ids = {n.id for n in tw.records.nodes}
    assert 0 < len(attributions) <= 5
    assert all(a.node_id in ids for a in attributions)
    assert [abs(a.score) for a in attributions] == sorted((abs(a.score) for a in attributions), reverse=True)
    with pytest.raises(TwinError, match="not a forecast target"):
        tw.explain("ZZZ")
    png = tw.plot(tmp_path / "p" / "toy1.png", tw.forecast(horizon_days=60, n_samples=4))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_patient(toy_store: SQLiteStore, toy_model: Path) -> None:
    with pytest.raises(TwinError, match="no records"):
        Twin.load(toy_store, "nobody", toy_model)


def test_cli_forecast_and_train(toy_store: SQLiteStore, toy_model: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    registry = ["--models", str(toy_model.parents[1])]
    res = runner.invoke(app, ["forecast", "toy5", "--model", "toy", *registry, "--store", toy_store.url,
                              "--horizon", "12w", "--samples", "4", "--json", "--plot", str(tmp_path / "f.png")])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["ok"] and doc["horizon_days"] == 84 and Path(doc["plot"]).is_file()
    bad = runner.invoke(app, ["forecast", "toy5", "--model", "toy", *registry, "--store", toy_store.url,
                              "--horizon", "soon", "--json"])
    assert bad.exit_code == 1 and "write a number of days or a duration" in bad.stdout
    missing = runner.invoke(app, ["forecast", "toy5", "--model", "nope", *registry, "--store", toy_store.url, "--json"])
    assert missing.exit_code == 1
    assert "no trained model named 'nope'" in missing.stdout and "models: toy" in missing.stdout
    res = runner.invoke(app, ["train", "--name", "cli", "--models", str(tmp_path / "reg"), "--store", toy_store.url,
                              "--epochs", "1", "--members", "1", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["checkpoint"] == "cli" and (tmp_path / "reg" / "cli" / "model.pt").is_file()
    assert doc["cohort"] == {"store": "sqlite:toy.db", "patients": 30} and doc["trained_at"]
    listed = json.loads(runner.invoke(app, ["models", "--models", str(tmp_path / "reg"), "--json"]).stdout)
    assert [m["name"] for m in listed["models"]] == ["cli"] and listed["models"][0]["cohort"]["patients"] == 30


def test_trained_model_learns_the_drug_effect(toy_store: SQLiteStore, toy_model: Path) -> None:
    """The toy cohort's drug D1 lowers T1 by 0.6-1.5 units over ~20 days (and T2 = 2 T1 + 3 with
    it): the trained twin predicts that starting D1 lowers both, for patients never on it."""
    ens = TwinEnsemble.load(toy_model)
    untreated = [p for p in toy_store.patient_ids()
                 if not any(n.code == "D1" for n in Twin.load(toy_store, p, ens).records.nodes)]
    assert len(untreated) >= 3
    effects: dict[str, list[float]] = {"T1": [], "T2": []}
    for pid in untreated:
        tw = Twin.load(toy_store, pid, ens)
        off = tw.forecast(horizon_days=180, n_samples=0, plan=[])
        on = tw.forecast(horizon_days=180, n_samples=0, plan=[DoseAction("D1", 1000.0)])
        for lab, eff in effects.items():
            eff.append(on.labs[lab].mean[-1] - off.labs[lab].mean[-1])
    assert np.mean(effects["T1"]) < -0.15, effects["T1"]  # a treatment-blind model gives ~0
    assert np.mean(effects["T2"]) < -0.3, effects["T2"]
    assert sum(e < 0 for e in effects["T1"]) >= 0.8 * len(untreated)
