"""Small grey-scale PNG previews of a patient's image files, for the viewer's timeline.

An ``Image`` node has pixels here when its file is one this server received: an upload under
the setting ``upload_dir`` (``POST /v1/records`` keeps image parts there by content hash). A
path named by a record itself (a FHIR ``Media`` URL, a file next to a bundle ingested by the
CLI) is never opened, so no record can make the service read other files. The preview is the 2-D image (extra axes averaged, a DICOM's first frame), at most
:data:`MAX_SIDE` pixels a side, its 1st-99th intensity percentiles stretched to 0-255: enough to
recognise a study, not a diagnostic view. The PNG is written here (``zlib``), so no imaging
library is needed.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from core import TwinError
from graph import Node

__all__ = ["MAX_SIDE", "MAX_SOURCE_BYTES", "has_pixels", "thumbnail_png"]

#: Longest side of a preview, in pixels.
MAX_SIDE = 128
#: Largest image file a preview is made from (a bigger one is refused, naming the limit).
MAX_SOURCE_BYTES = 256 * 1024 * 1024


_SUFFIXES = (".npy", ".dcm", ".dicom")


def _source(node: Node, upload_dir: Path) -> Path | None:
    root = upload_dir.resolve()
    for key in ("file_path", "file"):
        value = node.props.get(key)
        if not isinstance(value, str) or not Path(value).is_absolute():
            continue
        path = Path(value).resolve()
        if path.is_relative_to(root) and path.suffix.lower() in _SUFFIXES and path.is_file():
            return path
    return None


def has_pixels(node: Node, upload_dir: Path) -> bool:
    """Whether a preview of ``node`` can be made here (its image file was uploaded to ``upload_dir``)."""
    return _source(node, upload_dir) is not None


def _pixels(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        return np.load(path, mmap_mode="r", allow_pickle=False)
    import pydicom

    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    return arr[0] if int(ds.get("NumberOfFrames", 1) or 1) > 1 else arr


def thumbnail_png(node: Node, upload_dir: Path) -> bytes:
    """A PNG preview of image node ``node``; :class:`TwinError` naming the image if it cannot be made."""
    path = _source(node, upload_dir)
    if path is None:
        raise TwinError(f"image {node.id!r} has no pixel file on this server")
    if path.stat().st_size > MAX_SOURCE_BYTES:
        raise TwinError(f"image {node.id!r} is larger than {MAX_SOURCE_BYTES // 2**20} MiB; no preview is made")
    try:
        arr = np.asarray(_pixels(path), dtype=np.float64)
    except Exception as exc:  # any unreadable or undecodable file: the preview is refused, naming the image
        raise TwinError(f"image {node.id!r} cannot be decoded for a preview ({type(exc).__name__})") from None
    while arr.ndim > 2:  # channels first or last, or a volume: average the smallest axis
        arr = arr.mean(axis=int(np.argmin(arr.shape)))
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise TwinError(f"image {node.id!r} is not a 2-D image (shape {arr.shape})")
    step = max(1, -(-max(arr.shape) // MAX_SIDE))  # ceil: the longest side ends at most MAX_SIDE
    arr = arr[::step, ::step]
    finite = arr[np.isfinite(arr)]
    lo, hi = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 0.0))
    scaled = np.zeros(arr.shape) if hi <= lo else (np.nan_to_num(arr, nan=lo) - lo) / (hi - lo)
    return _png(np.clip(np.rint(scaled * 255), 0, 255).astype(np.uint8))


def _png(grey: np.ndarray) -> bytes:
    """An 8-bit grey-scale PNG (RFC 2083) of ``grey``, one unfiltered scanline per row."""
    h, w = grey.shape

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(row) for row in np.ascontiguousarray(grey))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
