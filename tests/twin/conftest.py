"""Shared fixtures: a toy cohort in a real SQLite store and a model trained on it once."""

from __future__ import annotations

from pathlib import Path

import pytest

from graph.store.sqlite import SQLiteStore
from tests.twin.toy_cohort import write_toy_cohort


@pytest.fixture(scope="session")
def toy_store(tmp_path_factory: pytest.TempPathFactory) -> SQLiteStore:
    d = tmp_path_factory.mktemp("toy")
    store = SQLiteStore(d / "toy.db")
    write_toy_cohort(store, 30, seed=0, image_dir=d / "img")
    return store


@pytest.fixture(scope="session")
def toy_model(toy_store: SQLiteStore, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from twin import TrainConfig, train

    out = tmp_path_factory.mktemp("models") / "toy" / "model.pt"  # a registry holding model "toy"
    train(toy_store, TrainConfig(epochs=6, members=2, progress=False, image_epochs=5), out)
    return out
