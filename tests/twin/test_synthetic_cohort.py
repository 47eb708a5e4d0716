"""The generated cohort: determinism, modality missingness, confounding, FHIR shape, CLI, ingest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from core.errors import TwinError
from graph.ingest import ingest_paths
from graph.schema import NodeType
from graph.store.base import NodeQuery
from graph.store.sqlite import SQLiteStore
from synthetic import DRUGS, SynthConfig, generate_cohort, load_truth


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("cohort")
    cfg = SynthConfig(patients=120, seed=5, years=2.0, missing_images=0.4, missing_genomics=0.3)
    summary = generate_cohort(cfg, out)
    return out, summary


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    cfg = SynthConfig(patients=15, seed=9, years=1.0)
    generate_cohort(cfg, tmp_path / "a")
    generate_cohort(cfg, tmp_path / "b")
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a == b
    assert any(k.startswith("images/") for k in a) and any(k.startswith("truth/") for k in a)
    generate_cohort(SynthConfig(patients=15, seed=10, years=1.0), tmp_path / "c")
    assert _files(tmp_path / "c") != a


def test_layout_and_modality_missingness(cohort: tuple[Path, object]) -> None:
    out, summary = cohort
    pids = summary.patient_ids  # type: ignore[attr-defined]
    assert sorted(p.stem for p in (out / "fhir").glob("*.json")) == sorted(pids)
    assert sorted(p.stem for p in (out / "truth").glob("*.json")) == sorted(pids)
    truths = [load_truth(out / "truth" / f"{p}.json") for p in pids]
    img_share = np.mean([t.modalities["images"] for t in truths])
    gen_share = np.mean([t.modalities["genomics"] for t in truths])
    assert abs(img_share - 0.6) < 0.12 and abs(gen_share - 0.7) < 0.12
    with_images = {p.name.split("_")[0] for p in (out / "images").glob("*.npy")}
    assert with_images == {t.patient_id for t in truths if t.modalities["images"]}
    doc = json.loads((out / "cohort.json").read_text())
    assert doc["config"]["seed"] == 5 and doc["counts"]["encounters"] > 120


def test_bundles_are_valid_fhir_r4_with_documented_encodings(cohort: tuple[Path, object]) -> None:
    from fhir.resources.R4B.bundle import Bundle

    out, _ = cohort
    seen: set[str] = set()
    for path in sorted((out / "fhir").glob("*.json"))[:40]:
        doc = json.loads(path.read_text())
        Bundle.model_validate(doc)  # standard R4 resources (R4B models: Media still exists)
        ids = {e["fullUrl"] for e in doc["entry"]}
        for e in doc["entry"]:
            r = e["resource"]
            seen.add(r["resourceType"])
            assert e["fullUrl"] == f"urn:uuid:{r['id']}"
            assert e["request"] == {"method": "POST", "url": r["resourceType"]}
            for key in ("subject", "encounter"):
                if key in r:
                    assert r[key]["reference"] in ids
            if r["resourceType"] == "MedicationRequest":
                assert r["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["unit"] == "mg"
                period = r["dispenseRequest"]["validityPeriod"]
                assert ("end" in period) == (r["status"] == "stopped")
                assert r["medicationCodeableConcept"]["coding"][0]["code"] in {d.code for d in DRUGS}
            if r["resourceType"] == "Media":
                assert r["partOf"][0]["reference"] in ids
                assert r["content"]["contentType"] == "application/x-npy"
                assert (path.parent / r["content"]["url"]).resolve().is_file()
            if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "69548-6":
                comp = {c["code"]["coding"][0]["code"]: c["valueCodeableConcept"]["coding"][0] for c in r["component"]}
                assert comp["48018-6"]["code"].startswith("HGNC:") and comp["48018-6"]["display"]
                assert comp["53034-5"]["code"] in {"LA6706-1", "LA6705-3"}
    assert seen >= {"Patient", "Encounter", "Observation", "Condition", "MedicationRequest", "Procedure",
                    "ImagingStudy", "Media"}


def test_ingests_with_zero_errors_and_modalities_in_proportion(cohort: tuple[Path, object], tmp_path: Path) -> None:
    out, summary = cohort
    counts = summary.counts  # type: ignore[attr-defined]
    with SQLiteStore(tmp_path / "g.db") as store:
        report = ingest_paths(store, [out / "fhir"])
        doc = report.to_dict()
        assert doc["totals"]["failed_files"] == 0 and not doc["errors"]
        nodes = store.counts().nodes
        assert nodes["Patient"] == len(summary.patient_ids)  # type: ignore[attr-defined]
        assert nodes["Encounter"] == counts["encounters"]
        assert nodes["Lab"] == counts["lab_values"]
        assert nodes["Condition"] == counts["conditions"]
        assert nodes["Medication"] == counts["medication_requests"]
        assert nodes["Procedure"] == counts["procedures"]
        assert nodes["Image"] == counts["images"]
        assert nodes["Variant"] == counts["variant_observations"]
        share = summary.modality_share  # type: ignore[attr-defined]
        for node_type, key in ((NodeType.IMAGE, "images"), (NodeType.VARIANT, "genomics_with_variant"),
                               (NodeType.MEDICATION, "medications"), (NodeType.PROCEDURE, "procedures")):
            having = {n.patient_id for n in store.find_nodes(NodeQuery(types=(node_type,)))}
            assert len(having) / len(summary.patient_ids) == pytest.approx(share[key])  # type: ignore[attr-defined]
        img = store.find_nodes(NodeQuery(types=(NodeType.IMAGE,), limit=1))[0]
        assert np.load(img.props["file_path"]).shape == (32, 32)


@pytest.mark.parametrize(("confounding", "check"), [(0.0, "independent"), (1.0, "dependent")])
def test_confounding_strength_is_measurable(tmp_path: Path, confounding: float, check: str) -> None:
    s = generate_cohort(SynthConfig(patients=400, seed=3, years=2.0, confounding=confounding), tmp_path)
    # AUC of the true baseline driver marker for "started the drug"; drugs with >= 25 starters
    aucs = {k: v for k, v in s.confounding_auc.items() if 25 <= s.treated_share[k] * 400 <= 375}
    assert {"metformin", "lisinopril"} <= set(aucs)
    if check == "independent":
        assert all(abs(v - 0.5) < 0.1 for v in aucs.values()), aucs
    else:
        assert all(v > 0.75 for v in aucs.values()), aucs


def test_config_validation() -> None:
    with pytest.raises(TwinError, match="confounding"):
        SynthConfig(confounding=1.5)
    with pytest.raises(TwinError, match="patients"):
        SynthConfig(patients=0)


def test_cli_synth(tmp_path: Path) -> None:
    from cli import app

    res = CliRunner().invoke(app, ["synth", "--patients", "4", "--seed", "1", "--years", "0.5", "--out",
                                   str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["ok"] and doc["config"]["patients"] == 4
    assert len(list((tmp_path / "fhir").glob("*.json"))) == 4
    bad = CliRunner().invoke(app, ["synth", "--patients", "4", "--confounding", "2", "--out", str(tmp_path), "--json"])
    assert bad.exit_code == 1 and "confounding" in bad.output


def test_public_surface_is_listed_and_sorted() -> None:
    import synthetic as synth

    assert synth.__all__ == sorted(synth.__all__)
    assert {"SynthConfig", "generate_cohort", "load_truth", "simulate", "DRUGS", "TARGET_LABS", "Plan", "Action"} <= set(
        synth.__all__)
    assert all(hasattr(synth, name) for name in synth.__all__)
    assert len(synth.DRUGS) >= 4 and len({d.code for d in synth.DRUGS}) == len(synth.DRUGS)
