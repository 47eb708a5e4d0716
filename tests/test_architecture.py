"""The layers hold: public surfaces resolve and are sorted; the upper layers use only them.

The layer order itself (core <- graph <- twin <- scenarios <- service <- api <- cli, synthetic
used only by the CLI) is checked by import-linter's contracts in pyproject.toml, which
``scripts/test`` runs; these tests check what import-linter cannot.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "graph", "twin", "scenarios", "service", "api", "synthetic")
#: Packages whose modules may import the packages below them only through their ``__init__``.
SURFACE_USERS = ("service", "api", "cli")
LOWER = ("core", "graph", "twin", "scenarios", "service", "api")


def test_every_public_name_resolves_and_all_is_sorted() -> None:
    # a fresh interpreter, so nothing imported by other tests hides a missing import
    code = (
        "import importlib, json\n"
        f"out = {{}}\n"
        f"for p in {PACKAGES!r}:\n"
        "    m = importlib.import_module(p)\n"
        "    assert m.__all__ == sorted(m.__all__), p\n"
        "    missing = [n for n in m.__all__ if not hasattr(m, n)]\n"
        "    assert not missing, (p, missing)\n"
        "    out[p] = len(m.__all__)\n"
        "print(json.dumps(out))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    sizes = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(sizes) == set(PACKAGES) and all(n > 0 for n in sizes.values())


def test_the_readme_imports_work() -> None:
    code = ("from twin import Twin, TrainConfig, train, load_model\nfrom graph import open_store, ingest_paths, timeline, "
            "cohort, HasCondition, LabValue, OnMedication, CarriesVariant\nfrom scenarios import TreatmentPlan, simulate, "
            "rank\nfrom service import ModelRegistry\nprint('ok')")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]


def test_light_surfaces_do_not_load_torch() -> None:
    """``twin query`` and friends must not pay for the model code: graph, service and TrainConfig stay torch-free."""
    code = "import sys, graph, service, cli; from twin import TrainConfig; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "False"


def _deep_imports(pkg: str) -> list[str]:
    bad = []
    for path in sorted((REPO / pkg).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                top, _, rest = node.module.partition(".")
                if top in LOWER and top != pkg and rest:
                    bad.append(f"{path.relative_to(REPO)}:{node.lineno} from {node.module}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    top, _, rest = alias.name.partition(".")
                    if top in LOWER and top != pkg and rest:
                        bad.append(f"{path.relative_to(REPO)}:{node.lineno} import {alias.name}")
    return bad


@pytest.mark.parametrize("pkg", SURFACE_USERS)
def test_upper_layers_import_only_public_surfaces(pkg: str) -> None:
    assert _deep_imports(pkg) == []


def test_deep_import_detector_catches_a_back_door(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "x.py").write_text("from graph.store.sqlite import SQLiteStore\nfrom graph import open_store\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert _deep_imports("cli") == ["cli/x.py:1 from graph.store.sqlite"]
