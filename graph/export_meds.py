"""A cohort of the graph as a MEDS dataset (Medical Event Data Standard, the ``meds`` package's schema).

Layout written under ``out``::

    data/0.parquet, data/1.parquet, …   one row per event, subjects contiguous, sorted by time
    metadata/dataset.json               name, ETL, MEDS version, creation time, extra columns
    metadata/codes.parquet              every code with its display name as description
    metadata/patient_ids.parquet        subject_id -> our patient id (not in de-identified exports)

Rows: every patient-scoped node is one row (``code`` per :mod:`graph.meds_codes`, ``numeric_value``
its value as float32, ``text_value`` a non-numeric result) with the extra columns of
:data:`~graph.meds_codes.EXTRA_COLUMNS`, which MEDS allows and which make the dataset read back
into the same nodes (:mod:`graph.ingest.meds`). The patient's node is its ``MEDS_BIRTH`` row;
``GENDER//…`` and ``MEDS_DEATH`` rows are derived (``node_type`` null). Edges are not rows: the
reader rebuilds ``HAS_*``, ``CODED_AS``, ``CARRIES``/``IN_GENE``, and from ``encounter_id`` and
``treats`` the ``RECORDED_IN`` and ``TREATS`` edges (``NEXT`` edges are not exported).

``subject_id`` is 63 bits of the SHA-256 of the patient id (stable across exports). With a
de-identification salt each patient's graph passes through :func:`graph.deidentify` first
(pseudonymous patient and node ids, dates shifted per patient, no free text, no ``source``),
``subject_id`` derives from the pseudonym and no id mapping is written, so no identifier of ours
leaves in the dataset.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import QueryError
from graph.export import deidentify
from graph.meds_codes import BIRTH, DEATH, EXTRA_COLUMNS, GENDER, SUBJECT, meds_code, subject_id_of
from graph.query import Subgraph, patient_graph
from graph.schema import Node, NodeType, Prop, Rel
from graph.store.base import GraphStore
from graph.timeutil import parse_fhir_time

__all__ = ["MedsExport", "PATIENT_IDS_FILE", "write_meds"]

#: The id mapping of a non-de-identified export, relative to the dataset root.
PATIENT_IDS_FILE = "metadata/patient_ids.parquet"


@dataclass
class MedsExport:
    """What :func:`write_meds` wrote: subjects, rows (events by node type) and files."""

    out: Path
    subjects: int = 0
    rows: int = 0
    nodes_by_type: Counter[str] = field(default_factory=Counter)
    shards: list[str] = field(default_factory=list)
    deidentified: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "subjects": self.subjects, "rows": self.rows,
                "nodes_by_type": dict(sorted(self.nodes_by_type.items())), "shards": self.shards,
                "deidentified": self.deidentified}


def _naive(t: datetime | None) -> datetime | None:
    return None if t is None else t.astimezone(UTC).replace(tzinfo=None)


def _date(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return parse_fhir_time(text)
    except (ValueError, OverflowError):
        return None


def _row(sid: int, time: datetime | None, code: str, **extra: Any) -> dict[str, Any]:
    value = extra.get("value")
    return {"subject_id": sid, "time": _naive(time), "code": code,
            "numeric_value": value, "text_value": extra.pop("text_value", None),
            **{c: extra.get(c) for c in EXTRA_COLUMNS}}


def _node_rows(sid: int, n: Node, encounter: str | None, treats: list[str] | None) -> list[dict[str, Any]]:
    props = dict(n.props)
    common = {"node_type": n.type.value, "node_id": n.id, "encounter_id": encounter, "treats": treats,
              "end": _naive(n.end),
              "system": n.system, "display": n.display, "unit": n.unit, "value": n.value,
              "properties": json.dumps(props, sort_keys=True, ensure_ascii=False), "source": n.source}
    if n.type is not NodeType.PATIENT:
        text = props.get("value_string") if n.value is None else None
        return [_row(sid, n.time, meds_code(n.type.value, n.system, n.code, n.display),
                     text_value=text if isinstance(text, str) else None, **common)]
    birth = _date(props.get(Prop.BIRTH_DATE)) or _date(str(props[Prop.BIRTH_YEAR]) if Prop.BIRTH_YEAR in props else None)
    rows = [_row(sid, birth, BIRTH if birth else SUBJECT, **common)]
    if isinstance(props.get(Prop.SEX), str):
        rows.append(_row(sid, None, f"{GENDER}//{props[Prop.SEX]}"))
    death = n.end or _date(props.get(Prop.DECEASED))
    if death is not None:
        rows.append(_row(sid, death, DEATH))
    return rows


def _rows(g: Subgraph) -> list[dict[str, Any]]:
    """Rows of every patient of ``g``: subjects contiguous (by subject_id), each sorted by time."""
    encounter = {e.src: e.dst for e in g.edges if e.rel is Rel.RECORDED_IN}
    treats: dict[str, list[str]] = {}
    for e in sorted(g.edges, key=lambda e: e.dst):
        if e.rel is Rel.TREATS:
            treats.setdefault(e.src, []).append(e.dst)
    by_patient: dict[str, list[Node]] = {}
    for n in g.nodes:
        if n.patient_id is not None:
            by_patient.setdefault(n.patient_id, []).append(n)
    out: list[dict[str, Any]] = []
    far = datetime.max
    for sid, nodes in sorted((subject_id_of(pid), nodes) for pid, nodes in by_patient.items()):
        rows = [r for n in nodes for r in _node_rows(sid, n, encounter.get(n.id), treats.get(n.id))]
        rows.sort(key=lambda r: (r["time"] is not None, r["time"] or far, r["node_type"] is None, r["code"],
                                 r["node_id"] or ""))
        out += rows
    return out


def _schema() -> Any:
    import meds
    import pyarrow as pa

    core = meds.DataSchema.schema()
    types = {"end": pa.timestamp("us"), "value": pa.float64(), "treats": pa.list_(pa.string())}
    extra = [pa.field(c, types.get(c, pa.string())) for c in EXTRA_COLUMNS]
    return pa.schema([*core, *extra])


def _write_table(rows: list[dict[str, Any]], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows, schema=_schema()), path)


def _shards(ids: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


def write_meds(store: GraphStore, out: str | Path, *, patients: Sequence[str] | None = None,
               deidentify_salt: str | None = None, shard_size: int = 1000,
               dataset_name: str = "patient-twin export", etl_version: str = "") -> MedsExport:
    """Write ``patients`` (default: every patient of ``store``) as a MEDS dataset under ``out``.

    ``out`` must not hold a MEDS dataset already (nothing is overwritten). With
    ``deidentify_salt`` the dataset carries no patient id, node id, date or free text of ours
    (see the module docstring). Raises :class:`QueryError` for a bad ``out`` or ``shard_size``.
    """
    import meds
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(out)
    if shard_size < 1:
        raise QueryError(f"shard size must be at least 1, got {shard_size}")
    if (root / meds.data_subdirectory).exists() or (root / "metadata").exists():
        raise QueryError(f"{root} already holds a dataset (data/ or metadata/); choose an empty folder")
    ids = sorted(store.patient_ids() if patients is None else set(patients))
    try:
        (root / meds.data_subdirectory).mkdir(parents=True)
        (root / "metadata").mkdir()
    except OSError as exc:
        raise QueryError(f"cannot create the dataset folders under {root}: {exc.strerror or exc}") from None
    report = MedsExport(root, deidentified=deidentify_salt is not None)
    codes: dict[str, str | None] = {}
    mapping: list[dict[str, Any]] = []
    for k, chunk in enumerate(_shards(ids, shard_size)):
        graphs = [patient_graph(store, pid) for pid in chunk]
        if deidentify_salt is not None:  # per patient: its own ids scrubbed, its own date shift, linear time
            graphs = [deidentify(x, salt=deidentify_salt) for x in graphs]
        else:
            mapping += [{"subject_id": subject_id_of(pid), "patient_id": pid} for pid in chunk]
        g = Subgraph(nodes=[n for x in graphs for n in x.nodes], edges=[e for x in graphs for e in x.edges])
        rows = _rows(g)
        shard = f"{meds.data_subdirectory}/{k}.parquet"
        _write_table(rows, root / shard)
        report.shards.append(shard)
        report.subjects += len(chunk)
        report.rows += len(rows)
        report.nodes_by_type.update(r["node_type"] for r in rows if r["node_type"])
        for r in rows:
            if r["code"] not in codes or (codes[r["code"]] is None and r["display"]):
                codes[r["code"]] = r["display"]
    seen = Counter(m["subject_id"] for m in mapping)
    if any(v > 1 for v in seen.values()):
        raise QueryError("two patient ids map to one MEDS subject_id (SHA-256 collision); export them separately")
    code_rows = [{"code": c, "description": d, "parent_codes": None} for c, d in sorted(codes.items())]
    pq.write_table(pa.Table.from_pylist(code_rows, schema=meds.CodeMetadataSchema.schema()),
                   root / meds.code_metadata_filepath)
    if mapping:
        pq.write_table(pa.Table.from_pylist(mapping, schema=pa.schema([("subject_id", pa.int64()),
                                                                      ("patient_id", pa.string())])),
                       root / PATIENT_IDS_FILE)
    meta = {
        "dataset_name": dataset_name, "etl_name": "patient-twin", "etl_version": etl_version,
        "meds_version": meds.__version__, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "raw_source_id_columns": ["node_id", "encounter_id", "treats", "source"], "code_modifier_columns": ["unit"],
        "other_extension_columns": [c for c in EXTRA_COLUMNS if c not in ("node_id", "encounter_id", "treats", "source", "unit")],
    }
    (root / meds.dataset_metadata_filepath).write_text(json.dumps(meta, indent=1) + "\n")
    return report
