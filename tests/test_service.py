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
    for name in ("epochs", "members", "batch_size", "origins_per_patient", "patience", "early_stopping", "seed"):
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


def test_request_cost_model() -> None:
    from service import OverBudget, check_cost, request_cost
    from service.limits import FORECAST_POINT_WEIGHT, SOLVE_OVERHEAD_TRAJECTORIES

    f = request_cost("forecast", plans=1, samples=10, members=3, horizon_days=70, step_days=7, solver_step_days=7)
    assert (f.trajectories, f.solves, f.solver_steps, f.output_points) == (30, 3, 10, 12)
    assert f.units == (30 + 3 * SOLVE_OVERHEAD_TRAJECTORIES) * 10 + FORECAST_POINT_WEIGHT * 30 * 12
    # a scenario shares its samples across members: fewer samples than members means fewer solves
    s = request_cost("scenarios", plans=4, samples=2, members=3, horizon_days=70, step_days=7, solver_step_days=7)
    assert (s.trajectories, s.solves) == (8, 2)
    # linear in what the client controls
    double = request_cost("scenarios", plans=8, samples=2, members=3, horizon_days=70, step_days=7,
                          solver_step_days=7)
    overhead = s.solves * SOLVE_OVERHEAD_TRAJECTORIES * s.solver_steps
    assert double.units - overhead == 2 * (s.units - overhead)
    assert check_cost(f, f.units) is f and check_cost(f, None) is f
    with pytest.raises(OverBudget, match=r"over the ceiling of 1,000.*fewer n_samples.*use a job") as exc:
        check_cost(f, 1000, "use a job")
    assert exc.value.cost is f and exc.value.ceiling == 1000
    with pytest.raises(TwinError):
        request_cost("forecast", plans=1, samples=0, members=1, horizon_days=7, step_days=1, solver_step_days=7)


def test_cancel_token_and_checkpoints() -> None:
    from service import Cancelled, CancelToken, checkpoint

    token, seen = CancelToken(), []
    report = checkpoint(lambda f, m: seen.append(f), token)
    report(0.5, "half")
    token.cancel("the client disconnected")
    token.cancel("later reasons are ignored")
    with pytest.raises(Cancelled, match="the client disconnected"):
        report(0.6, "more")
    assert seen == [0.5] and token.cancelled


def test_isolated_training_stops_when_cancelled(tmp_path) -> None:  # noqa: ANN001
    import time

    from graph import open_store
    from service import Cancelled, CancelToken

    with open_store(f"sqlite:///{tmp_path / 'empty.db'}"):
        pass
    token = CancelToken()
    token.cancel("cancelled on request")
    t = time.monotonic()
    with pytest.raises(Cancelled):
        train_isolated(f"sqlite:///{tmp_path / 'empty.db'}", ModelRegistry(tmp_path / "models"), "m",
                       train_config(epochs=1, members=1, progress=False), cancel=token)
    assert time.monotonic() - t < 15
    assert ModelRegistry(tmp_path / "models").list() == []
