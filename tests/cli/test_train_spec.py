"""``twin train`` sets parts of the cohort specification from flags and prints what it trained on."""

from __future__ import annotations

from pathlib import Path

import pytest

import cli
from graph import open_store
from tests.twin.toy_cohort import write_toy_cohort


def test_train_flags_set_the_spec_and_it_is_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = f"sqlite:///{tmp_path / 'toy.db'}"
    with open_store(store) as st:
        write_toy_cohort(st, 8, seed=3, days=400)
    rc = cli.run(["train", "--store", store, "--models", str(tmp_path / "models"), "--name", "spec",
                  "--target", "T1:log1p", "--treatment", "D1:lasting", "--event", "death", "--horizon-days", "90",
                  "--step-days", "3", "--epochs", "1", "--members", "1"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "targets: T1 [T1] (no unit, log1p)" in out  # UCUM "1" (dimensionless) as people read it
    assert "treatments: D1: medication, dose in mg, lasting effect" in out  # set by --treatment D1:lasting
    assert "events: death" in out
    assert "time scales: step 3 d, time unit 12.9 d, horizon 90 d" in out
