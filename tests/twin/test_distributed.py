"""Data-parallel training (``train(..., distributed=True)``) with 2 processes on CPU (gloo)
against single-process training of the same configuration and seed."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as tmp_mp

from core.errors import ConfigError
from graph.store.sqlite import SQLiteStore
from twin import TrainConfig, train
from twin.model import ModelConfig
from twin.model.checkpoint import TwinEnsemble

#: Largest absolute parameter difference allowed between 2-process and 1-process training. The
#: two runs compute the same gradients up to float32 summation order; after this run's 2 epochs
#: (~40 Adam steps) the largest difference measured was 7e-7 (weights move by ~0.1).
TOLERANCE = 1e-5


def _config() -> TrainConfig:
    # batch 7 does not split evenly over 2 ranks: slices of 3 and 4 examples, and a short last batch
    return TrainConfig(epochs=2, members=1, batch_size=7, origins_per_patient=2, image_epochs=2, progress=False,
                       seed=3, model=ModelConfig(hidden=16, latent=8, static=4, ode_hidden=16))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank(rank: int, world: int, port: int, db: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    with SQLiteStore(db) as store:
        rep = train(store, _config(), out, distributed=True)
    assert rep.processes == world


def test_two_process_training_matches_single_process(toy_store: SQLiteStore, tmp_path: Path) -> None:
    single = tmp_path / "single" / "model.pt"
    rep1 = train(toy_store, _config(), single)
    double = tmp_path / "ddp" / "model.pt"
    tmp_mp.spawn(_rank, args=(2, _free_port(), str(toy_store.path), str(double)), nprocs=2, join=True)
    assert double.is_file() and double.with_suffix(".report.json").is_file()
    a, b = TwinEnsemble.load(single), TwinEnsemble.load(double)
    assert b.report["processes"] == 2 and rep1.processes == 1
    assert b.report["n_train_examples"] == rep1.n_train_examples
    sa, sb = a.members[0].state_dict(), b.members[0].state_dict()
    assert sa.keys() == sb.keys()
    diff = max(float((sa[k] - sb[k]).abs().max()) for k in sa if sa[k].is_floating_point())
    assert diff < TOLERANCE, f"parameters differ by up to {diff:.2e}"
    torch.manual_seed(_config().seed * 1000)  # the member's initialisation, as training seeds it
    init = TwinEnsemble.build_member(_config().model, a.spec).state_dict()
    moved = max(float((sa[k] - init[k]).abs().max()) for k in sa if sa[k].is_floating_point())
    assert moved > 100 * TOLERANCE  # training moved the weights far more than the two runs differ


def test_distributed_outside_torchrun_is_refused(toy_store: SQLiteStore, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(ConfigError, match="launched by torchrun"):
        train(toy_store, _config(), tmp_path / "m.pt", distributed=True)
