"""Turn an HTTP upload into one graph batch via :mod:`graph.ingest`, and write it atomically.

The parsers do all the record work; this module only adapts request bodies to them:
JSON → :func:`~graph.ingest.parse_bundle`, NDJSON → :func:`~graph.ingest.parse_ndjson`,
multipart parts → :func:`~graph.ingest.parse_file` on a spooled copy (VCF) or on a
content-addressed copy under ``upload_dir`` (images, which Image nodes keep referring to).
All parts of one request are merged into a single ``store.write``: the whole upload lands, or
nothing does, and that includes image files: a file this upload put under ``upload_dir`` is
removed again when the upload is refused (while parsing any part, or by the store), unless a
stored node or another upload in flight uses the same content. Parsed parts are named by the
uploaded file name and errors never quote a server path.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, fields, replace
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

__all__ = ["ImagePart", "UploadPart", "WrittenUpload", "parse_json_upload", "parse_ndjson_upload", "parse_parts", "write_upload"]

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


@dataclass
class ImagePart(ParsedFile):
    """A parsed image part and its content-addressed file under ``upload_dir`` (``created``:
    this upload wrote it, so a refused upload removes it again)."""

    image: Path | None = None
    created: bool = False


#: Image files claimed by uploads in flight in this process (path -> number of uploads).
_claims: Counter[Path] = Counter()
_claims_lock = threading.Lock()


def _release(parsed: list[ParsedFile], store: GraphStore | None, *, written: bool) -> None:
    """Drop this upload's claims; unless it was written, remove the files it created that no
    other upload in flight claims and no stored node refers to."""
    images = [p for p in parsed if isinstance(p, ImagePart) and p.image is not None]
    with _claims_lock:
        for p in images:
            assert p.image is not None
            _claims[p.image] -= 1
            if _claims[p.image] <= 0:
                del _claims[p.image]
        if written:
            return
        for p in images:
            assert p.image is not None
            if p.created and p.image not in _claims and not _stored(store, p):
                with suppress(OSError):
                    p.image.unlink(missing_ok=True)


def _stored(store: GraphStore | None, p: ParsedFile) -> bool:
    if store is None:
        return False
    try:
        return bool(store.get_nodes([n.id for n in p.batch.nodes]))
    except Exception:  # noqa: BLE001 - when in doubt, keep the file
        return True


def parse_parts(
    parts: list[UploadPart], *, upload_dir: Path, patient_id: str | None, time: datetime | None
) -> list[ParsedFile]:
    """Parse each multipart file by its extension; errors name the uploaded file name.

    Image files are written under ``upload_dir``; when any part is refused, those this call
    wrote are removed again. Pass the result to :func:`write_upload`, which does the same
    when the store refuses the upload.
    """
    if not parts:
        raise RecordError("a multipart upload needs at least one file part named 'files'", field="files")
    out: list[ParsedFile] = []
    try:
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
                with _image_file(part, name, upload_dir, patient_id) as (path, created):
                    parsed = _parse_named(path, name, patient_id, time)
                    base = {f.name: getattr(parsed, f.name) for f in fields(parsed) if f.init}
                    out.append(ImagePart(**base, image=path, created=created))
            else:
                out.append(_parse_spooled(part, name, patient_id, time))
    except BaseException:
        _release(out, None, written=False)
        raise
    return out


def _renamed(exc: RecordError, name: str, path: Path) -> RecordError:
    """``exc`` naming the uploaded file, with the server-side path taken out of its reason."""
    reason = exc.reason
    for p in (str(path), str(path.parent)):
        reason = reason.replace(p, name)
    return RecordError(reason, file=name, resource=exc.resource, field=exc.field)


def _parse_named(path: Path, name: str, patient_id: str | None, time: datetime | None) -> ParsedFile:
    try:
        parsed = parse_file(path, patient_id=patient_id, time=time)
    except RecordError as exc:
        raise _renamed(exc, name, path) from None
    return replace(parsed, source=name)


def _parse_spooled(part: UploadPart, name: str, patient_id: str | None, time: datetime | None) -> ParsedFile:
    with tempfile.TemporaryDirectory(prefix="twin-upload-") as tmp:
        path = Path(tmp) / (_SAFE.sub("_", Path(name).name) or "upload.vcf")
        path.write_bytes(part.data)
        return _parse_named(path, name, patient_id, time)


@contextmanager
def _image_file(part: UploadPart, name: str, upload_dir: Path, patient_id: str | None) -> Iterator[tuple[Path, bool]]:
    """The content-addressed file of an image part, claimed for this upload (the claim and a
    file this call created are given up again if the body raises)."""
    if patient_id is None:
        raise RecordError("an image upload needs the form field 'patient_id'", file=name, field="patient_id")
    suffix = Path(name.lower()).suffix
    digest = hashlib.sha256(part.data).hexdigest()
    upload_dir.mkdir(parents=True, exist_ok=True)
    path = upload_dir / f"{digest}{suffix}"  # content-addressed: a repeated upload is the same file and node
    with _claims_lock:
        _claims[path] += 1
        created = not path.exists()
        if created:
            tmp = upload_dir / f".{digest}.{uuid.uuid4().hex}.part"
            try:
                tmp.write_bytes(part.data)
                tmp.replace(path)
            except BaseException:
                _claims[path] -= 1
                with suppress(OSError):
                    tmp.unlink(missing_ok=True)
                raise
    try:
        yield path, created
    except BaseException:
        _release([ImagePart("", "", GraphBatch(), image=path, created=created)], None, written=False)
        raise


def write_upload(store: GraphStore, parsed: list[ParsedFile], name: str) -> WrittenUpload:
    """Write all parsed parts as one transaction (all or nothing; idempotent on repeat).

    When the store refuses the upload, image files that :func:`parse_parts` wrote for it are
    removed again.
    """
    batch = GraphBatch()
    for p in parsed:
        batch.nodes.extend(p.batch.nodes)
        batch.edges.extend(p.batch.edges)
    written = False
    try:
        stats = store.write(batch)
        written = True
    except RecordError:
        raise
    except ValueError as exc:  # schema or value violation against what is already stored
        raise RecordError(f"upload conflicts with the store: {exc}", file=name) from exc
    finally:
        _release(parsed, store, written=written)
    return WrittenUpload(parsed=parsed, stats=stats)
