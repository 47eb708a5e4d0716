"""Turn an HTTP upload into one graph batch via :mod:`graph.ingest`, and write it atomically.

The parsers do all the record work; this module only adapts request bodies to them:
JSON → :func:`~graph.ingest.parse_bundle`, NDJSON → :func:`~graph.ingest.parse_ndjson`,
multipart parts → :func:`~graph.ingest.parse_file` on a spooled copy (VCF) or on a
content-addressed copy under ``upload_dir`` (images, which Image nodes keep referring to).
All parts of one request are merged into a single ``store.write``: the whole upload lands, or
nothing does.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core import RecordError
from graph import (
    GraphBatch,
    GraphStore,
    ParsedFile,
    WriteStats,
    parse_bundle,
    parse_file,
    parse_json_text,
    parse_ndjson,
)

__all__ = ["UploadPart", "WrittenUpload", "parse_json_upload", "parse_ndjson_upload", "parse_parts", "write_upload"]

_IMAGE_SUFFIXES = (".npy", ".dcm", ".dicom")
_PART_SUFFIXES = (".json", ".ndjson", ".jsonl", ".vcf", ".vcf.gz", *_IMAGE_SUFFIXES)
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class UploadPart:
    """One file of a multipart upload."""

    filename: str
    data: bytes


@dataclass
class WrittenUpload:
    """The parsed upload and what writing it changed."""

    parsed: list[ParsedFile]
    stats: WriteStats

    @property
    def resources(self) -> int:
        return sum(sum(p.resources.values()) for p in self.parsed)

    @property
    def patients(self) -> list[str]:
        return sorted({n.patient_id for p in self.parsed for n in p.batch.nodes if n.patient_id})

    @property
    def nodes_by_type(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for p in self.parsed:
            total.update(p.nodes_by_type())
        return dict(sorted(total.items()))

    @property
    def skipped(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for p in self.parsed:
            total.update(p.skipped)
        return dict(sorted(total.items()))


def _text(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RecordError(f"not UTF-8 text (byte {exc.start})", file=name) from None


def parse_json_upload(data: bytes, name: str) -> ParsedFile:
    """A FHIR Bundle sent as JSON."""
    return parse_bundle(parse_json_text(_text(data, name), file=name), source_name=name)


def parse_ndjson_upload(data: bytes, name: str) -> ParsedFile:
    """FHIR resources sent as NDJSON (one resource per line)."""
    return parse_ndjson(_text(data, name), source_name=name)


def parse_parts(
    parts: list[UploadPart], *, upload_dir: Path, patient_id: str | None, time: datetime | None
) -> list[ParsedFile]:
    """Parse each multipart file by its extension; errors name the uploaded file name."""
    if not parts:
        raise RecordError("a multipart upload needs at least one file part named 'files'", field="files")
    out: list[ParsedFile] = []
    for part in parts:
        name = part.filename or "upload"
        lower = name.lower()
        if not lower.endswith(_PART_SUFFIXES):
            raise RecordError(f"unsupported file type; expected one of {', '.join(_PART_SUFFIXES)}", file=name)
        if lower.endswith(".json"):
            out.append(parse_json_upload(part.data, name))
        elif lower.endswith((".ndjson", ".jsonl")):
            out.append(parse_ndjson_upload(part.data, name))
        elif lower.endswith(_IMAGE_SUFFIXES):
            out.append(_parse_image(part, name, upload_dir, patient_id, time))
        else:
            out.append(_parse_spooled(part, name, patient_id, time))
    return out


def _renamed(exc: RecordError, name: str) -> RecordError:
    return RecordError(exc.reason, file=name, resource=exc.resource, field=exc.field)


def _parse_spooled(part: UploadPart, name: str, patient_id: str | None, time: datetime | None) -> ParsedFile:
    with tempfile.TemporaryDirectory(prefix="twin-upload-") as tmp:
        path = Path(tmp) / (_SAFE.sub("_", Path(name).name) or "upload.vcf")
        path.write_bytes(part.data)
        try:
            return parse_file(path, patient_id=patient_id, time=time)
        except RecordError as exc:
            raise _renamed(exc, name) from None


def _parse_image(
    part: UploadPart, name: str, upload_dir: Path, patient_id: str | None, time: datetime | None
) -> ParsedFile:
    if patient_id is None:
        raise RecordError("an image upload needs the form field 'patient_id'", file=name, field="patient_id")
    suffix = Path(name.lower()).suffix
    digest = hashlib.sha256(part.data).hexdigest()
    upload_dir.mkdir(parents=True, exist_ok=True)
    path = upload_dir / f"{digest}{suffix}"  # content-addressed: a repeated upload is the same file and node
    if not path.exists():
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(part.data)
        tmp.replace(path)
    try:
        return parse_file(path, patient_id=patient_id, time=time)
    except RecordError as exc:
        raise _renamed(exc, name) from None


def write_upload(store: GraphStore, parsed: list[ParsedFile], name: str) -> WrittenUpload:
    """Write all parsed parts as one transaction (all or nothing; idempotent on repeat)."""
    batch = GraphBatch()
    for p in parsed:
        batch.nodes.extend(p.batch.nodes)
        batch.edges.extend(p.batch.edges)
    try:
        stats = store.write(batch)
    except RecordError:
        raise
    except ValueError as exc:  # schema or value violation against what is already stored
        raise RecordError(f"upload conflicts with the store: {exc}", file=name) from exc
    return WrittenUpload(parsed=parsed, stats=stats)
