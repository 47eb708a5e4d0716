"""Parse files by kind and write each into a store as one transaction.

Kinds (by extension, then content): FHIR JSON (``.json``: a Bundle, one resource or a JSON
array of resources), FHIR NDJSON (``.ndjson``/``.jsonl``, or a ``.json`` file holding one
resource per line), a Synthea CSV export (a folder with ``patients.csv``), VCF
(``.vcf``/``.vcf.gz``), images (``.npy``/``.dcm``) and a MEDS dataset (a folder with
``data/*.parquet`` shards or ``metadata/dataset.json``; :mod:`graph.ingest.meds`).

:func:`ingest_paths` expands folders and globs. In a folder it takes FHIR and VCF files,
Synthea exports and MEDS datasets; image files are only ingested when named explicitly (they need a patient
id and usually arrive through a Media/ImagingStudy reference instead). Each file, and each
Synthea export as a whole, is one ``store.write`` and so all-or-nothing.

A record's patient must exist when its file is written (stored already, or in the same
file), so within one run the files whose name mentions patients (``Patient.ndjson``,
``Patient-*.json`` of a bulk export split by resource type) are written first; otherwise the
order is the order given (folders sorted by name). A file the store refuses (a record of an
unknown patient, or one that conflicts with another patient's records) is reported with the
record and field that caused it.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from core.errors import RecordError
from graph.ingest.builder import ParsedFile, in_namespace, locate_error
from graph.ingest.fhir import parse_bundle, parse_fhir_resources, parse_json_text, parse_ndjson
from graph.ingest.meds import is_meds_dataset
from graph.ingest.report import FileReport, IngestReport
from graph.store.base import GraphStore

__all__ = ["expand_paths", "ingest_paths", "parse_file", "parse_path"]

_FOLDER_SUFFIXES = (".json", ".ndjson", ".jsonl", ".vcf", ".vcf.gz")
_IMAGE_SUFFIXES = (".npy", ".dcm", ".dicom")


def _read_bytes(p: Path) -> bytes:
    try:
        return p.read_bytes()
    except OSError as exc:
        raise RecordError(f"cannot read file: {exc.strerror or exc}", file=str(p)) from None


def _decode(data: bytes, file: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RecordError(f"not UTF-8 text (byte {exc.start})", file=file) from None


def parse_json_file(p: Path) -> ParsedFile:
    """A ``.json`` file: Bundle, single resource, array of resources, or NDJSON in disguise."""
    name = str(p)
    text = _decode(_read_bytes(p), name)
    stripped = text.lstrip()
    if stripped.startswith("{") and "\n{" in text.strip():
        first = stripped.split("\n", 1)[0].strip()
        if first.endswith("}"):
            try:
                parse_json_text(first, file=name)
                return parse_ndjson(text, source_name=name, base_dir=p.parent)
            except RecordError:
                pass  # not one object per line: parse as a whole below
    doc = parse_json_text(text, file=name)
    if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
        return parse_bundle(doc, source_name=name, base_dir=p.parent)
    if isinstance(doc, list):
        return parse_fhir_resources(doc, source_name=name, base_dir=p.parent)
    return parse_fhir_resources([doc], source_name=name, base_dir=p.parent, format="fhir-resource")


def parse_path(path: str | Path, *, patient_id: str | None = None, time: datetime | None = None) -> ParsedFile:
    """Parse one file or one Synthea CSV export folder (see module docstring for the kinds)."""
    p = Path(path)
    name = p.name.lower()
    if p.is_dir():
        if (p / "patients.csv").is_file():
            from graph.ingest.synthea_csv import parse_synthea_csv

            return parse_synthea_csv(p)
        if is_meds_dataset(p):
            from graph.ingest.meds import parse_meds

            return parse_meds(p)
        raise RecordError("a folder is only a record when it is a Synthea CSV export (has patients.csv) or a MEDS "
                          "dataset (data/*.parquet, metadata/dataset.json)", file=str(p))
    if not p.exists():
        raise RecordError("no such file or directory", file=str(p))
    if name.endswith((".vcf", ".vcf.gz")):
        from graph.ingest.vcf import parse_vcf

        return parse_vcf(p, patient_id=patient_id, time=time)
    if name.endswith(_IMAGE_SUFFIXES):
        from graph.ingest.images import parse_image

        if patient_id is None:
            raise RecordError("an image file needs a patient id", file=str(p))
        return parse_image(p, patient_id=patient_id, time=time)
    if name.endswith((".ndjson", ".jsonl")):
        return parse_ndjson(_decode(_read_bytes(p), str(p)), source_name=str(p), base_dir=p.parent)
    if name.endswith(".json"):
        return parse_json_file(p)
    raise RecordError("unsupported file type (expected .json, .ndjson, .vcf[.gz], .npy, .dcm or a Synthea CSV folder)",
                      file=str(p))


def parse_file(path: str | Path, *, patient_id: str | None = None, time: datetime | None = None) -> ParsedFile:
    """Parse one record file into a batch (no store involved).

    ``patient_id`` is needed for images and for a VCF whose sample column is not the
    patient id; ``time`` dates an image without a DICOM study date (and a VCF's variants).
    Raises :class:`RecordError` naming file, resource and field for any malformed input.
    """
    return parse_path(path, patient_id=patient_id, time=time)


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files and Synthea exports named by ``paths`` (files, folders, globs), in a stable order."""
    out: list[Path] = []
    for raw in paths:
        s = str(raw)
        if any(ch in s for ch in "*?[") and not Path(s).exists():
            hits = sorted(glob.glob(s, recursive=True))
            if not hits:
                raise RecordError("glob matched no files", file=s)
            for h in hits:
                out.extend(_expand_one(Path(h), explicit=Path(h).is_file()))
            continue
        p = Path(s)
        if not p.exists():
            raise RecordError("no such file or directory", file=s)
        out.extend(_expand_one(p, explicit=True))
    return list(dict.fromkeys(out))  # drop repeats, keeping first-seen order


def _is_dataset(p: Path) -> bool:
    """A folder ingested as one unit: a Synthea CSV export or a MEDS dataset."""
    return (p / "patients.csv").is_file() or is_meds_dataset(p)


def _expand_one(p: Path, *, explicit: bool) -> list[Path]:
    if p.is_file():
        return [p] if explicit or p.name.lower().endswith(_FOLDER_SUFFIXES) else []
    if _is_dataset(p):
        return [p]
    found: list[Path] = []
    for root, dirs, files in os.walk(p):
        dirs.sort()
        root_p = Path(root)
        keep = []
        for d in dirs:
            if _is_dataset(root_p / d):
                found.append(root_p / d)
            else:
                keep.append(d)
        dirs[:] = keep
        found.extend(root_p / f for f in sorted(files) if f.lower().endswith(_FOLDER_SUFFIXES))
    return sorted(found)


def ingest_paths(
    store: GraphStore,
    paths: Sequence[str | Path],
    *,
    keep_going: bool = False,
    on_file: Callable[[FileReport], None] | None = None,
    patient_id: str | None = None,
    namespace: str | None = None,
) -> IngestReport:
    """Parse and store every file named by ``paths``; one transaction per file (or CSV export).

    ``namespace`` names the source system whose id space the records use (see
    :func:`~graph.ingest.builder.in_namespace`): records of two EHRs that reuse ids are
    ingested each under its own namespace, so they never meet.

    On a :class:`RecordError` the run stops and re-raises it (with the file named) unless
    ``keep_going``, in which case the error is recorded in the report and the next file is
    tried. Files already written stay written either way.
    """
    report = IngestReport()
    units: list[Path] = []
    for raw in paths:
        try:
            units.extend(u for u in expand_paths([raw]) if u not in units)
        except RecordError as exc:
            if not keep_going:
                raise
            fr = FileReport(path=str(raw), format="unknown", error=exc.to_dict())
            report.files.append(fr)
            if on_file:
                on_file(fr)
    for unit in _patients_first(units):
        fr = _ingest_one(store, unit, patient_id=patient_id, keep_going=keep_going, namespace=namespace)
        report.files.append(fr)
        if on_file:
            on_file(fr)
    return report


def _patients_first(units: list[Path]) -> list[Path]:
    """``units`` with files named for patients first (stable otherwise): patients before their records."""
    return sorted(units, key=lambda u: not (u.is_file() and "patient" in u.name.lower()))


def _ingest_one(store: GraphStore, unit: Path, *, patient_id: str | None, keep_going: bool,
                namespace: str | None) -> FileReport:
    fmt = "unknown"
    try:
        parsed = in_namespace(parse_path(unit, patient_id=patient_id), namespace)
        fmt = parsed.format
        try:
            stats = store.write(parsed.batch)
        except RecordError as exc:  # unknown patient, conflict, schema: name the source record
            raise locate_error(exc, [parsed]) from exc
    except RecordError as exc:
        err = exc.with_context(file=str(unit))
        if not keep_going:
            raise err from exc
        return FileReport(path=str(unit), format=fmt, error=err.to_dict())
    return FileReport(
        path=str(unit),
        format=parsed.format,
        resources=sum(parsed.resources.values()),
        stored=parsed.stored,
        nodes_by_type=parsed.nodes_by_type(),
        skipped=dict(sorted(parsed.skipped.items())),
        stats=stats,
    )
