"""Image files (``.npy`` arrays, DICOM) as ``Image`` nodes that reference the file.

Pixels stay in the file; the node holds ``props["file"]`` (the path as given), modality,
shape and dtype. The id hashes the patient and the file's bytes, so re-ingesting the same
file for the same patient is idempotent wherever the file lives.

Time is required: the DICOM ``StudyDate``/``StudyTime`` (else ``SeriesDate``/
``AcquisitionDate``), or the ``time`` argument. File modification times are never used.
From DICOM only technical attributes are read (no PatientName/PatientID/dates of birth).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import RecordError
from graph.ingest.builder import BatchBuilder, ParsedFile
from graph.ingest.fields import DICOM_DCM
from graph.schema import Node, NodeType, Prop
from graph.timeutil import utc

__all__ = ["parse_image"]


def _digest(p: Path, patient_id: str) -> str:
    h = hashlib.sha1(patient_id.encode("utf-8") + b"\0")
    try:
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:
        raise RecordError(f"cannot read image: {exc.strerror or exc}", file=str(p)) from None
    return h.hexdigest()[:24]


def _npy(p: Path) -> dict[str, Any]:
    import numpy as np

    try:
        arr = np.load(p, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise RecordError(f"not a readable .npy array: {exc}", file=str(p)) from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf" or arr.ndim < 2:
        raise RecordError(f"expected a numeric image array of 2+ dimensions, got {getattr(arr, 'shape', '?')}",
                          file=str(p))
    return {"shape": list(arr.shape), "dtype": str(arr.dtype), "format": "npy"}


def _dicom_time(ds: Any, p: Path) -> datetime | None:
    for date_tag, time_tag in (("StudyDate", "StudyTime"), ("SeriesDate", "SeriesTime"),
                               ("AcquisitionDate", "AcquisitionTime"), ("ContentDate", "ContentTime")):
        d = str(ds.get(date_tag, "") or "").strip()
        if not d:
            continue
        t = str(ds.get(time_tag, "") or "").strip().split(".")[0]
        t = (t + "000000")[:6] if t else "000000"
        try:
            return datetime.strptime(d + t, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        except ValueError:
            raise RecordError(f"invalid DICOM {date_tag}/{time_tag}: {d!r} {t!r}", file=str(p), field=date_tag) from None
    return None


def _dicom(p: Path) -> tuple[dict[str, Any], datetime | None]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as exc:
        raise RecordError(f"not a readable DICOM file: {exc}", file=str(p)) from None
    props: dict[str, Any] = {"format": "dicom"}
    rows, cols = ds.get("Rows"), ds.get("Columns")
    if rows and cols:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        props["shape"] = [frames, int(rows), int(cols)] if frames > 1 else [int(rows), int(cols)]
    for tag, key in (("Modality", "modality"), ("BodyPartExamined", "body_site"), ("SOPClassUID", "sop_class")):
        v = ds.get(tag)
        if v:
            props[key] = [str(v)] if key in ("modality", "body_site") else str(v)
    return props, _dicom_time(ds, p)


def parse_image(path: str | Path, *, patient_id: str, time: datetime | None = None) -> ParsedFile:
    """One image file -> one ``Image`` node of ``patient_id`` (see module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise RecordError("no such file", file=str(p))
    name = p.name.lower()
    if name.endswith(".npy"):
        props, file_time = _npy(p), None
    elif name.endswith((".dcm", ".dicom")):
        props, file_time = _dicom(p)
    else:
        raise RecordError("unsupported image type (expected .npy or .dcm)", file=str(p))
    when = file_time or (utc(time) if time is not None else None)
    if when is None:
        raise RecordError("an image needs a time: a DICOM study date or an explicit time", file=str(p), field="time")
    modality = (props.get("modality") or [None])[0]
    nid = f"ImageFile/{_digest(p, patient_id)}"
    node = Node(id=nid, type=NodeType.IMAGE, patient_id=patient_id, time=when,
                code=modality, system=DICOM_DCM if modality else None,
                props={**props, Prop.FILE: str(path), "source_type": "file"}, source=f"file:{nid.split('/', 1)[1]}")
    b = BatchBuilder()
    b.origin = (None, "patient_id")
    b.event(node)
    return ParsedFile(str(p), f"image-{props['format']}", b.batch(), Counter({"Image file": 1}), Counter(), b.origins)
