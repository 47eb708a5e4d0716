"""MEDS out and in: real FHIR and Synthea CSV records -> graph -> MEDS -> a new graph keeps every event.

Every written file is checked against the ``meds`` package's schemas.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import meds
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core import QueryError, RecordError
from graph import GraphStore, NodeQuery, NodeType, ingest_paths, open_store, write_meds

EXTERNAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "external"
FHIR = sorted((EXTERNAL / "synthea-fhir").glob("*.json"), key=lambda p: p.stat().st_size)[:3]
CSV = EXTERNAL / "synthea-csv" / "breast-cancer-cohort"
SALT = "meds-test-salt"


def _nodes(store: GraphStore) -> dict[str, dict]:
    """Every patient-scoped node by id, every field."""
    return {n.id: asdict(n) for pid in store.patient_ids() for n in store.find_nodes(NodeQuery(patient_id=pid))}


def _edges(store: GraphStore) -> set[tuple[str, str, str]]:
    return {e.key for pid in store.patient_ids() for e in store.find_edges(patient_id=pid)}


@pytest.fixture(scope="module")
def source() -> GraphStore:
    st = open_store("memory://")
    report = ingest_paths(st, [*FHIR, CSV])
    assert not report.errors
    return st


@pytest.fixture(scope="module")
def exported(source: GraphStore, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("meds") / "cohort"
    return out, write_meds(source, out, shard_size=10)


def _shards(root: Path) -> list[Path]:
    return sorted((root / "data").glob("*.parquet"))


def test_every_file_follows_the_meds_schemas(exported: tuple[Path, object], source: GraphStore) -> None:
    root, report = exported
    shards = _shards(root)
    assert len(shards) == 3  # 29 patients, 10 a shard
    tables = [pq.read_table(p) for p in shards]
    for t in tables:
        meds.DataSchema.validate(t)
        assert t.schema.field("subject_id").type == pa.int64() and t.schema.field("time").type == pa.timestamp("us")
        assert t.schema.field("numeric_value").type == pa.float32()
    codes = pq.read_table(root / meds.code_metadata_filepath)
    meds.CodeMetadataSchema.validate(codes)
    meta = json.loads((root / meds.dataset_metadata_filepath).read_text())
    meds.DatasetMetadataSchema.validate(meta)
    assert meta["meds_version"] == meds.__version__ and meta["etl_name"] == "patient-twin"
    data = pa.concat_tables(tables).to_pylist()
    # every code of the data is described; lab names come from the records
    described = {r["code"]: r["description"] for r in codes.to_pylist()}
    assert {r["code"] for r in data} <= set(described)
    hba1c = [r for r in data if r["code"] == "LOINC//4548-4"]
    assert hba1c and described["LOINC//4548-4"].startswith("Hemoglobin A1c")
    assert {r["unit"] for r in hba1c} == {"%"}
    # a subject lives in one shard, contiguously, sorted by time (static rows first)
    seen: set[int] = set()
    for t in tables:
        rows = t.to_pylist()
        order = [r["subject_id"] for r in rows]
        runs = [s for i, s in enumerate(order) if i == 0 or order[i - 1] != s]
        assert len(runs) == len(set(runs)) and not (set(runs) & seen)
        seen |= set(runs)
        for sid in runs:
            times = [r["time"] for r in rows if r["subject_id"] == sid]
            static = [x for x in times if x is None]
            assert times[:len(static)] == static and times[len(static):] == sorted(times[len(static):])
    assert len(seen) == report.subjects == len(source.patient_ids()) == 29  # the figures the README quotes
    assert sum(report.nodes_by_type.values()) == 13_903
    # numeric_value is the float32 of the full-precision value column
    vals = [(r["numeric_value"], r["value"]) for r in data if r["value"] is not None]
    assert vals and all(nv == float(np.float32(v)) for nv, v in vals)
    # the patient rows: birth, gender and death rows as MEDS names them
    codes_used = {r["code"] for r in data}
    assert meds.birth_code in codes_used and "GENDER//female" in codes_used and "GENDER//male" in codes_used
    assert meds.death_code in codes_used
    # the id mapping: every subject to our patient id
    mapping = pq.read_table(root / "metadata/patient_ids.parquet").to_pylist()
    assert sorted(m["patient_id"] for m in mapping) == sorted(source.patient_ids())
    assert {m["subject_id"] for m in mapping} == seen


def test_round_trip_keeps_every_event(exported: tuple[Path, object], source: GraphStore) -> None:
    root, report = exported
    target = open_store("memory://")
    back = ingest_paths(target, [root])
    assert not back.errors and back.files[0].format == "meds"
    before, after = source.counts(), target.counts()
    assert after.nodes == before.nodes  # per node type, shared vocabulary included
    assert after.edges == before.edges  # HAS_*, CODED_AS, RECORDED_IN, TREATS, CARRIES, IN_GENE
    assert {k: v for k, v in before.nodes.items() if k not in ("Concept", "Gene")} == dict(report.nodes_by_type)
    old, new = _nodes(source), _nodes(target)
    assert new == old  # ids, types, patients, times, codes, systems, displays, values, units, properties, sources
    labs = [n for n in new.values() if n["type"] is NodeType.LAB and n["value"] is not None]
    assert len(labs) > 100
    assert _edges(target) == _edges(source)
    again = ingest_paths(target, [root])  # re-ingest adds nothing
    assert again.totals["nodes_added"] == 0 and again.totals["edges_added"] == 0


def test_deidentified_export_carries_no_identifier(tmp_path: Path) -> None:
    source = open_store("memory://")  # de-identification scrubs every string: a small cohort keeps it quick
    assert not ingest_paths(source, FHIR[:2]).errors
    out = tmp_path / "deid"
    report = write_meds(source, out, deidentify_salt=SALT)
    assert report.deidentified and not (out / "metadata/patient_ids.parquet").exists()
    secrets = set(source.patient_ids())
    secrets |= {n.id.split("/", 1)[1] for pid in source.patient_ids() for n in source.find_nodes(NodeQuery(patient_id=pid))}
    secrets = {s for s in secrets if len(s) >= 8}
    text = (out / "metadata/dataset.json").read_text()
    for p in [*_shards(out), out / meds.code_metadata_filepath]:
        table = pq.read_table(p)
        if p.parent.name == "data":
            meds.DataSchema.validate(table)
        text += json.dumps(table.to_pylist(), default=str)
    leaked = [s for s in secrets if s in text]
    assert not leaked, leaked[:3]
    plain = tmp_path / "plain"  # the same check finds the ids in an export that is not de-identified
    write_meds(source, plain)
    plain_text = json.dumps(pq.read_table(plain / "data" / "0.parquet").to_pylist(), default=str)
    assert secrets and all(s in plain_text for s in secrets)
    real_births = {n.props.get("birth_date") for pid in source.patient_ids()
                   for n in source.find_nodes(NodeQuery(patient_id=pid, types=(NodeType.PATIENT,)))}
    assert not any(b and b in text for b in real_births)
    target = open_store("memory://")
    assert not ingest_paths(target, [out]).errors
    assert target.counts().nodes == source.counts().nodes


def _foreign(root: Path, rows: list[dict], unit: bool = True) -> Path:
    (root / "data").mkdir(parents=True)
    schema = meds.DataSchema.schema()
    if unit:
        schema = schema.append(pa.field("unit", pa.string()))
    table = pa.Table.from_pylist(rows, schema=schema)
    meds.DataSchema.validate(table)
    pq.write_table(table, root / "data" / "0.parquet")
    (root / "metadata").mkdir()
    pq.write_table(pa.Table.from_pylist([{"code": "LOINC//4548-4", "description": "Hemoglobin A1c/Hemoglobin.total in Blood",
                                          "parent_codes": None}], schema=meds.CodeMetadataSchema.schema()),
                   root / meds.code_metadata_filepath)
    return root


def _row(sid: int, time: datetime | None, code: str, value: float | None = None, unit: str | None = None,
         text: str | None = None) -> dict:
    return {"subject_id": sid, "time": time, "code": code, "numeric_value": value, "text_value": text, "unit": unit}


def test_reads_another_etls_meds_dataset(tmp_path: Path) -> None:
    t = datetime(2020, 3, 1, 8, 30)
    root = _foreign(tmp_path / "other", [
        _row(7, None, "GENDER//F"),
        _row(7, datetime(1960, 5, 17), "MEDS_BIRTH"),
        _row(7, t, "LOINC//4548-4", 53.0, "mmol/mol"),  # IFCC HbA1c -> NGSP %
        _row(7, t, "LOINC//2345-7", 5.5, "mmol/L"),  # glucose -> mg/dL
        _row(7, t, "RxNorm//860975"),
        _row(7, t, "ICD10CM//E11.9"),
        _row(7, t, "CPT4//99213"),
        _row(7, t, "LAB//50912", 1.1, "mg/dL"),  # a local code with a value is a lab
        _row(7, t, "NOTE//discharge", text="free text"),  # no value, unknown vocabulary: skipped
        _row(7, None, "ETHNICITY//x"),  # static, not a patient property we keep
        _row(7, datetime(2021, 1, 2), "MEDS_DEATH"),
        _row(9, datetime(1990, 1, 1), "MEDS_BIRTH"),
    ])
    store = open_store("memory://")
    report = ingest_paths(store, [root])
    assert not report.errors
    assert sorted(store.patient_ids()) == ["7", "9"]
    p7 = store.get_nodes(["Patient/7"])[0]
    assert p7.props["birth_date"] == "1960-05-17" and p7.props["sex"] == "f" and p7.props["deceased"] is True
    assert p7.end == datetime(2021, 1, 2, tzinfo=UTC)
    labs = {n.code: n for n in store.find_nodes(NodeQuery(patient_id="7", types=(NodeType.LAB,)))}
    assert labs["4548-4"].system == "http://loinc.org" and labs["4548-4"].unit == "%"
    assert labs["4548-4"].display == "Hemoglobin A1c/Hemoglobin.total in Blood"  # from metadata/codes.parquet
    assert labs["4548-4"].value == pytest.approx(53.0 / 10.929 + 2.15, abs=0.01)
    assert labs["2345-7"].value == pytest.approx(5.5 * 18.016, rel=1e-3) and labs["2345-7"].unit == "mg/dL"
    assert labs["50912"].system == "LAB" and labs["50912"].value == pytest.approx(1.1)
    kinds = {n.type: n for n in store.find_nodes(NodeQuery(patient_id="7"))}
    assert kinds[NodeType.MEDICATION].system == "http://www.nlm.nih.gov/research/umls/rxnorm"
    assert kinds[NodeType.MEDICATION].props["dosing"] == "pulse"
    assert kinds[NodeType.CONDITION].system == "http://hl7.org/fhir/sid/icd-10-cm"
    assert kinds[NodeType.CONDITION].code == "E11.9" and kinds[NodeType.PROCEDURE].code == "99213"
    skipped = report.files[0].skipped
    assert skipped["MEDS row(NOTE not an event kind)"] == 1 and skipped["MEDS row(ETHNICITY without a time)"] == 1
    assert sum(v for k, v in skipped.items() if "Patient node" in k) == 4  # GENDER, 2 x MEDS_BIRTH, MEDS_DEATH


def test_bad_meds_input_is_refused_naming_the_row(tmp_path: Path) -> None:
    root = _foreign(tmp_path / "bad", [_row(1, datetime(1970, 1, 1), "MEDS_BIRTH"),
                                       _row(1, datetime(2020, 1, 1), "LOINC//4548-4", 400.0, "%")])
    store = open_store("memory://")
    with pytest.raises(RecordError) as err:
        ingest_paths(store, [root])
    assert err.value.resource == "data/0.parquet row 1" and err.value.field == "numeric_value"
    assert "impossible value" in err.value.reason
    assert store.counts().nodes == {}  # nothing of the dataset stored
    other = tmp_path / "nocode"
    (other / "data").mkdir(parents=True)
    pq.write_table(pa.table({"subject_id": pa.array([1], pa.int64()), "time": pa.array([None], pa.timestamp("us"))}),
                   other / "data" / "0.parquet")
    with pytest.raises(RecordError, match="no column 'code'"):
        ingest_paths(store, [other])


def test_export_refuses_a_folder_holding_a_dataset(exported: tuple[Path, object], source: GraphStore) -> None:
    root, _ = exported
    with pytest.raises(QueryError, match="already holds a dataset"):
        write_meds(source, root)


def test_cli_export_meds_and_ingest(tmp_path: Path) -> None:
    src, dst, out = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "out"
    env = {**os.environ, "TWIN_DEID_SALT": SALT}

    def twin(*args: str, store: Path) -> dict:
        proc = subprocess.run([sys.executable, "-m", "cli", *args, "--json", "--store", f"sqlite:///{store}"],
                              capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return json.loads(proc.stdout)

    twin("ingest", *map(str, FHIR), store=src)
    pid = sorted(open_store(f"sqlite:///{src}").patient_ids())[0]
    cond = next(n.code for n in open_store(f"sqlite:///{src}").find_nodes(NodeQuery(patient_id=pid, types=(NodeType.CONDITION,))))
    doc = twin("export", "meds", str(out), "--where", json.dumps({"has_condition": cond}), store=src)
    assert doc["ok"] and doc["subjects"] >= 1 and doc["shards"] == ["data/0.parquet"]
    back = twin("ingest", str(out), store=dst)
    assert back["ok"] and back["files"][0]["format"] == "meds"
    assert back["store"]["nodes"]["Patient"] == doc["subjects"]
    assert pid in open_store(f"sqlite:///{dst}").patient_ids()
