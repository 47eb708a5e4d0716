"""``scripts/install`` says what it does at each step and passes pip's failure on (pip stubbed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STUB = """#!/usr/bin/env bash
echo "$@" >> "$(dirname "$0")/calls"
if [[ " $* " == *" -e "* ]]; then
  echo "Collecting torch>=2.2"
  echo "  Downloading torch-2.5.0-cp311-none-linux_x86_64.whl (906 MB)"
  echo "Installing collected packages: torch, patient-twin"
  echo "Successfully installed patient-twin-0.1 torch-2.5.0"
  echo "ERROR: no matching distribution" >&2
  exit "${STUB_RC:-0}"
fi
"""


@pytest.fixture()
def copy(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "install", tmp_path / "scripts" / "install")
    stub = tmp_path / ".venv" / "bin" / "python"
    stub.parent.mkdir(parents=True)
    stub.write_text(STUB)
    stub.chmod(0o755)
    return tmp_path


def _install(root: Path, *args: str, rc: int = 0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(root / "scripts" / "install"), *args], capture_output=True, text=True,
                          env={**os.environ, "STUB_RC": str(rc)}, timeout=60)


def test_install_prints_each_step_and_the_packages_it_fetches(copy: Path) -> None:
    r = _install(copy, "dev")
    assert r.returncode == 0, r.stderr
    steps = [line for line in r.stderr.splitlines() if line.startswith("[install ")]
    assert [s.split("]")[0] for s in steps] == ["[install 1/3", "[install 2/3", "[install 3/3", "[install done"]
    assert "reusing .venv" in steps[0] and "patient-twin[dev]" in steps[2]
    assert r.stdout.splitlines() == ["Collecting torch>=2.2", "Installing collected packages: torch, patient-twin",
                                     "Successfully installed patient-twin-0.1 torch-2.5.0"]
    calls = (copy / ".venv" / "bin" / "calls").read_text().splitlines()
    assert calls[-1] == "-m pip install --progress-bar off -e .[dev]"  # the long step is not --quiet


def test_a_failing_pip_fails_the_install_with_its_error_shown(copy: Path) -> None:
    r = _install(copy, rc=1)
    assert r.returncode == 1
    assert "ERROR: no matching distribution" in r.stderr
    assert "[install done" not in r.stderr
