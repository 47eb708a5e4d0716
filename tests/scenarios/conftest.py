"""Fixtures: a few twins of the toy cohort (tests/twin/toy_cohort.py) on a real store and a
real, untrained two-member :class:`TwinEnsemble` whose dynamics are randomly initialised so
that treatments move the trajectories."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch

from graph.store.sqlite import SQLiteStore
from twin.features import FeatureSpec, load_records
from twin.features.vocab import build_vocabulary
from twin.image_encoder import ImageEncoder
from twin.model import ModelConfig
from twin.model.checkpoint import TwinEnsemble
from twin.twin import Twin


def _toy_module() -> Any:
    path = Path(__file__).resolve().parents[1] / "twin" / "toy_cohort.py"
    spec = importlib.util.spec_from_file_location("scenario_tests_toy_cohort", path)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


@pytest.fixture(scope="session")
def toy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder holding the toy store (``toy.db``) and the model registry (``models/toy/model.pt``)."""
    return tmp_path_factory.mktemp("scen")


@pytest.fixture(scope="session")
def toy_twins(toy_dir: Path) -> Iterator[list[Twin]]:
    toy = _toy_module()
    store = SQLiteStore(toy_dir / "toy.db")
    toy.write_toy_cohort(store, 10, seed=0)
    recs = [load_records(store, pid) for pid in store.patient_ids()]
    vocab, norms = build_vocabulary(recs)
    spec = FeatureSpec(vocab, norms)
    cfg = ModelConfig(hidden=16, latent=8, static=4, ode_hidden=32)
    torch.manual_seed(0)
    members = []
    for _ in range(2):
        m = TwinEnsemble.build_member(cfg, spec)
        torch.nn.init.normal_(m.dynamics.f[-1].weight, std=0.3)
        m.eval()
        members.append(m)
    ens = TwinEnsemble(members, spec, ImageEncoder(), cfg)
    ens.save(toy_dir / "models" / "toy" / "model.pt")
    t0 = toy.START + timedelta(days=700)
    yield [Twin.load(store, r.patient_id, ens, as_of=t0) for r in recs]
    store.close()


@pytest.fixture(scope="session")
def treated_twin(toy_twins: list[Twin]) -> Twin:
    """A toy twin on drug D1 at the origin."""
    return next(t for t in toy_twins if any(n.code == "D1" for n in t.records.nodes))
