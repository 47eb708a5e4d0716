"""The application layer: registry naming, training in a separate process, one set of defaults."""

from __future__ import annotations

import pytest

from core import ConfigError, ModelError, TwinError
from service import ModelRegistry, train_config, train_isolated
from twin import TrainConfig


def test_registry_names_and_errors(tmp_path) -> None:  # noqa: ANN001
    reg = ModelRegistry(tmp_path)
    assert reg.path_for("default") == tmp_path / "default" / "model.pt"
    for bad in ("../etc", "A", "", "x/y"):
        with pytest.raises(ModelError, match="invalid model name"):
            reg.path_for(bad)
    with pytest.raises(ModelError, match=r"no trained model named 'x'.*models: none.*twin train --name x"):
        reg.get("x")
    assert reg.list() == []


def test_training_defaults_come_from_train_config_only() -> None:
    from api.schemas import TrainRequest

    req, cfg = TrainRequest(), TrainConfig()
    for name in ("epochs", "members", "batch_size", "origins_per_patient", "horizon_days", "patience", "seed"):
        assert getattr(req, name) == getattr(cfg, name), name
    with pytest.raises(ConfigError, match="unknown training setting"):
        train_config(epoch=3)


def test_isolated_training_reports_child_errors(tmp_path) -> None:  # noqa: ANN001
    """The child process opens the store itself; its TwinError comes back with its message."""
    from graph import open_store

    with open_store(f"sqlite:///{tmp_path / 'empty.db'}"):
        pass
    seen: list[tuple[float, str]] = []
    with pytest.raises(TwinError, match="at least 2 patients"):
        train_isolated(f"sqlite:///{tmp_path / 'empty.db'}", ModelRegistry(tmp_path / "models"), "m",
                       train_config(epochs=1, members=1, progress=False), on_progress=lambda f, m: seen.append((f, m)))
    with pytest.raises(ConfigError, match="persistent store"):
        train_isolated("memory://", ModelRegistry(tmp_path / "models"), "m", train_config())
