"""What an ingest run did, per file and in total (for the CLI's table and ``--json``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from graph.store.base import WriteStats

__all__ = ["FileReport", "IngestReport"]


@dataclass
class FileReport:
    """One file (or Synthea CSV export): what was parsed and what the store write changed.

    ``resources`` were read, ``stored`` of them became nodes and the rest are in ``skipped``
    (by type and reason). ``error`` is ``RecordError.to_dict()`` when the file was rejected
    (then ``stats`` is ``None`` and nothing of the file was stored).
    """

    path: str
    format: str
    resources: int = 0
    stored: int = 0
    nodes_by_type: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    stats: WriteStats | None = None
    error: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "resources": self.resources,
            "stored": self.stored,
            "nodes_by_type": dict(self.nodes_by_type),
            "skipped": dict(self.skipped),
            "stats": asdict(self.stats) if self.stats is not None else None,
            "error": self.error,
        }


@dataclass
class IngestReport:
    """All files of one :func:`~graph.ingest.ingest_paths` run, with totals."""

    files: list[FileReport] = field(default_factory=list)

    @property
    def resources(self) -> int:
        return sum(f.resources for f in self.files if f.error is None)

    @property
    def nodes_by_type(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for f in self.files:
            if f.error is None:
                total.update(f.nodes_by_type)
        return dict(sorted(total.items()))

    @property
    def skipped(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for f in self.files:
            if f.error is None:
                total.update(f.skipped)
        return dict(sorted(total.items()))

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [f.error for f in self.files if f.error is not None]

    @property
    def totals(self) -> dict[str, int]:
        """Files ok/failed; resources read from the stored files, split into ``stored`` and
        ``skipped``; ``rejected``: one per refused file or record (each names its resource in
        :attr:`errors`; nothing of a refused file is stored); the summed :class:`WriteStats`."""
        ok = [f for f in self.files if f.error is None]
        stats = [f.stats for f in ok if f.stats is not None]
        return {
            "files": len(ok),
            "failed_files": len(self.files) - len(ok),
            "resources": sum(f.resources for f in ok),
            "stored": sum(f.stored for f in ok),
            "skipped": sum(sum(f.skipped.values()) for f in ok),
            "rejected": len(self.files) - len(ok),
            "nodes": sum(sum(f.nodes_by_type.values()) for f in ok),
            "nodes_added": sum(s.nodes_added for s in stats),
            "nodes_updated": sum(s.nodes_updated for s in stats),
            "edges_added": sum(s.edges_added for s in stats),
            "edges_pending": stats[-1].edges_pending if stats else 0,
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready document: totals, node counts by type, skipped types, errors, files."""
        return {
            "totals": self.totals,
            "nodes_by_type": self.nodes_by_type,
            "skipped": self.skipped,
            "errors": self.errors,
            "files": [f.to_dict() for f in self.files],
        }
